package certs_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/certs"
	"github.com/meridiancdn/meridian/edge/certs/certstest"
	"github.com/meridiancdn/meridian/internal/poll"
)

// acmeEdge is the part of an edge ACME needs: a plain listener whose
// handler is wrapped by HTTPChallenge, and an HTTPS listener whose
// tls.Config takes GetCertificate and NextProtos, as listen.Server's.
type acmeEdge struct {
	plainLn, tlsLn net.Listener
	src            *certs.Source
	logs           *logBuffer

	forwarded      atomic.Int64 // plain requests that reached the edge's handler
	alpnChallenges atomic.Int64 // handshakes with acme-tls/1 alone
}

// listenEdge binds an edge's listeners (pebble needs their ports first).
func listenEdge(t *testing.T) *acmeEdge {
	t.Helper()
	e := &acmeEdge{logs: &logBuffer{}}
	var err error
	if e.plainLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if e.tlsLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("edge %s log:\n%s", e.plainLn.Addr(), e.logs.String())
		}
	})
	return e
}

func port(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// serve makes the edge's Source from cfg and serves on its listeners.
func (e *acmeEdge) serve(t *testing.T, cfg certs.Config) {
	t.Helper()
	src, err := certs.New(cfg, certs.Options{Logger: e.logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	e.src = src
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.forwarded.Add(1)
		io.WriteString(w, "from the edge's handler")
	})
	plain := &http.Server{Handler: src.HTTPChallenge(next), ErrorLog: log.New(io.Discard, "", 0)}
	secure := &http.Server{Handler: next, ErrorLog: log.New(io.Discard, "", 0), TLSConfig: &tls.Config{
		NextProtos: append([]string{"h2", "http/1.1"}, src.NextProtos()...),
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == "acme-tls/1" {
				e.alpnChallenges.Add(1)
			}
			return src.GetCertificate(hello)
		},
	}}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); plain.Serve(e.plainLn) }()
	go func() { defer wg.Done(); secure.ServeTLS(e.tlsLn, "", "") }()
	t.Cleanup(func() {
		src.Close()
		plain.Close()
		secure.Close()
		wg.Wait()
	})
	if err := src.Start(e.plainLn.Addr().String(), e.tlsLn.Addr().String()); err != nil {
		t.Fatal(err)
	}
}

// served is the leaf the edge's HTTPS listener serves for name, verified
// against roots; nil while it serves none that verifies.
func (e *acmeEdge) served(name string, roots *x509.CertPool) *x509.Certificate {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.tlsLn.Addr().String(),
		&tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return nil
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// waitServed waits (bounded) until the edge serves a certificate for name
// that verifies and that ok accepts.
func (e *acmeEdge) waitServed(t *testing.T, name string, roots *x509.CertPool, ok func(*x509.Certificate) bool) *x509.Certificate {
	t.Helper()
	var leaf *x509.Certificate
	poll.Until(t, 90*time.Second, fmt.Sprintf("edge %s serves a certificate for %s from the test CA", e.plainLn.Addr(), name), func() bool {
		leaf = e.served(name, roots)
		return leaf != nil && ok(leaf)
	})
	return leaf
}

func anyCert(*x509.Certificate) bool { return true }

func acmeConfig(p *certstest.Pebble, storage string, names ...string) certs.Config {
	return certs.Config{
		Sites: []certs.Site{{Field: "sites[0].tls", Names: names, ACME: true}},
		ACME: certs.ACMEConfig{Directory: p.Directory, CAFile: p.CAFile, Storage: storage, Email: "ops@example.test",
			RenewCheckInterval: time.Second},
		ReloadInterval: -1,
	}
}

// An edge obtains a certificate for its site's name from the CA over each
// challenge, answering it itself: http-01 on its plain listener, which
// does not pass the challenge's path to the edge's handler; tls-alpn-01
// on its HTTPS listener.
func TestACMEIssuesOverEachChallenge(t *testing.T) {
	if testing.Short() {
		t.Skip("ACME issuance against an in-process CA")
	}
	for _, challenge := range []string{"http-01", "tls-alpn-01"} {
		t.Run(challenge, func(t *testing.T) {
			e := listenEdge(t)
			p := certstest.Start(t, port(e.plainLn), port(e.tlsLn), 90*24*time.Hour)
			cfg := acmeConfig(p, t.TempDir(), "www.issue.test")
			cfg.ACME.DisableHTTP01 = challenge == "tls-alpn-01"
			cfg.ACME.DisableTLSALPN01 = challenge == "http-01"
			e.serve(t, cfg)
			if got := e.src.NextProtos(); (challenge == "tls-alpn-01") != (len(got) == 1 && got[0] == "acme-tls/1") {
				t.Fatalf("NextProtos %q with %s", got, challenge)
			}
			leaf := e.waitServed(t, "www.issue.test", p.Roots, anyCert)
			if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "www.issue.test" {
				t.Fatalf("issued for %v", leaf.DNSNames)
			}
			if n := p.Ordered("www.issue.test"); n != 1 {
				t.Errorf("%d orders for the name, want 1", n)
			}
			switch challenge {
			case "http-01":
				if !strings.Contains(e.logs.String(), "served key authentication") || !strings.Contains(e.logs.String(), "http-01") {
					t.Errorf("the edge did not answer the http-01 challenge itself")
				}
				if e.alpnChallenges.Load() != 0 {
					t.Errorf("tls-alpn-01 handshakes with it disabled")
				}
			case "tls-alpn-01":
				if e.alpnChallenges.Load() == 0 {
					t.Errorf("no acme-tls/1 handshake reached the edge")
				}
			}
			// A tls-alpn-01 hello for a name that is not ACME's gets no
			// certificate (and no storage lookup).
			if c, err := e.src.GetCertificate(&tls.ClientHelloInfo{ServerName: "other.test", SupportedProtos: []string{"acme-tls/1"}}); err == nil {
				t.Errorf("an acme-tls/1 hello for other.test got %v", c.Leaf.DNSNames)
			}
			if e.forwarded.Load() != 0 {
				t.Errorf("%d challenge requests reached the edge's handler", e.forwarded.Load())
			}
			if challenge != "http-01" {
				return // with http-01 off, the path is the site's
			}
			// A challenge path for the ACME name with a token nobody
			// knows is answered 404 by the wrapper, not forwarded;
			// other paths and other hosts are the edge's.
			for _, tc := range []struct {
				host, path string
				status     int
				forwarded  bool
			}{
				{"www.issue.test", "/.well-known/acme-challenge/unknown-token", 404, false},
				{"www.issue.test:" + strconv.Itoa(port(e.plainLn)), "/.well-known/acme-challenge/x", 404, false},
				{"www.issue.test", "/page", 200, true},
				{"other.test", "/.well-known/acme-challenge/x", 200, true},
			} {
				before := e.forwarded.Load()
				req, _ := http.NewRequest("GET", "http://"+e.plainLn.Addr().String()+tc.path, nil)
				req.Host = tc.host
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.status || (e.forwarded.Load() > before) != tc.forwarded {
					t.Errorf("%s%s: %d, forwarded %v; want %d, %v", tc.host, tc.path, resp.StatusCode, e.forwarded.Load() > before, tc.status, tc.forwarded)
				}
			}
		})
	}
}

// A certificate is renewed ahead of its expiry: with a short-lived
// certificate the edge orders again, and serves the new one before the
// old one expires.
func TestACMERenewsAheadOfExpiry(t *testing.T) {
	if testing.Short() {
		t.Skip("ACME renewal against an in-process CA")
	}
	e := listenEdge(t)
	const lifetime = 30 * time.Second
	p := certstest.Start(t, port(e.plainLn), port(e.tlsLn), lifetime)
	e.serve(t, acmeConfig(p, t.TempDir(), "renew.test"))
	first := e.waitServed(t, "renew.test", p.Roots, anyCert)
	if got := first.NotAfter.Sub(first.NotBefore); got > lifetime {
		t.Fatalf("the CA issued for %v, want %v", got, lifetime)
	}
	second := e.waitServed(t, "renew.test", p.Roots, func(c *x509.Certificate) bool {
		return c.SerialNumber.Cmp(first.SerialNumber) != 0
	})
	if seen := time.Now(); !seen.Before(first.NotAfter) {
		t.Fatalf("the renewed certificate was served at %v, after the first expired (%v)", seen, first.NotAfter)
	}
	if !second.NotAfter.After(first.NotAfter) {
		t.Fatalf("renewed certificate expires %v, not after the first's %v", second.NotAfter, first.NotAfter)
	}
	if n := p.Ordered("renew.test"); n < 2 {
		t.Fatalf("%d orders, want the first and a renewal", n)
	}
	// The expiry metric follows the renewal: the latest certificate's.
	var got time.Time
	for _, x := range e.src.Expiries() {
		if x.Source == "acme" && x.Name == "renew.test" {
			got = x.NotAfter
		}
	}
	if got.Before(second.NotAfter.Truncate(time.Second)) {
		t.Fatalf("Expiries reports renew.test until %v, want the renewed %v (all: %v)", got, second.NotAfter, e.src.Expiries())
	}
}

// Three edges of a region sharing one ACME storage ask the CA once per
// name, whichever of them answers the CA's validation, and all three
// serve the certificates.
func TestACMERegionOrdersOncePerName(t *testing.T) {
	if testing.Short() {
		t.Skip("ACME issuance against an in-process CA")
	}
	edges := []*acmeEdge{listenEdge(t), listenEdge(t), listenEdge(t)}
	// The CA validates at the first edge's ports, as a load balancer
	// would send it to any one of them.
	p := certstest.Start(t, port(edges[0].plainLn), port(edges[0].tlsLn), 90*24*time.Hour)
	storage := t.TempDir()
	names := []string{"one.region.test", "two.region.test"}
	for _, e := range edges {
		e.serve(t, acmeConfig(p, storage, names...)) // each starts obtaining at once
	}
	for _, e := range edges {
		for _, name := range names {
			leaf := e.waitServed(t, name, p.Roots, anyCert)
			if leaf.DNSNames[0] != name {
				t.Fatalf("edge %s served %v for %s", e.plainLn.Addr(), leaf.DNSNames, name)
			}
		}
	}
	for _, name := range names {
		if n := p.Ordered(name); n != 1 {
			t.Errorf("%s: %d orders from a region of 3 edges, want 1", name, n)
		}
	}
}
