package node_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/listen"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/poll"
)

// sniSite is one site of the SNI test with its certificate files.
type sniSite struct {
	host, certFile, keyFile string
}

// issue writes a fresh self-signed certificate for names into the site's
// files, adds it to pool, and returns its serial.
func (s sniSite) issue(t *testing.T, pool *x509.CertPool, names ...string) string {
	t.Helper()
	certPEM, keyPEM, err := listen.SelfSignedCert(names, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool.AddCert(leaf)
	if err := os.WriteFile(s.certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.String()
}

// sniEdge is a node with three sites, each with its own certificate, and
// a client per protocol.
type sniEdge struct {
	t       *testing.T
	n       *node.Node
	cfg     node.Config
	sites   []sniSite
	pool    *x509.CertPool
	serials map[string]string // the certificate each host should get
	h1, h2  *http.Transport
	h3      *http3.Transport
	port    string
}

func startSNIEdge(t *testing.T, reloadInterval time.Duration) *sniEdge {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "origin for "+r.Host)
	}))
	t.Cleanup(origin.Close)
	dir := t.TempDir()
	e := &sniEdge{t: t, pool: x509.NewCertPool(), serials: map[string]string{}}
	cfg := nodeConfig("edge-sni", origin.URL)
	cfg.Cluster = nil
	cfg.Sites = nil
	for _, host := range []string{"a.test", "b.test", "c.test"} {
		s := sniSite{host: host, certFile: filepath.Join(dir, host+".crt"), keyFile: filepath.Join(dir, host+".key")}
		e.serials[host] = s.issue(t, e.pool, host)
		e.sites = append(e.sites, s)
		cfg.Sites = append(cfg.Sites, edge.SiteConfig{Hosts: []string{host}, Origin: origin.URL,
			TLS: edge.SiteTLSConfig{CertFile: s.certFile, KeyFile: s.keyFile}})
	}
	cfg.TLS = &edge.TLSConfig{Listen: "127.0.0.1:0", ReloadInterval: reloadInterval}
	n, err := node.Start(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.n, e.cfg = n, cfg
	addr := n.TLSAddr()
	_, e.port, _ = net.SplitHostPort(addr)
	dialTCP := func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	e.h1 = &http.Transport{DialContext: dialTCP, TLSClientConfig: &tls.Config{RootCAs: e.pool}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	e.h2 = &http.Transport{DialContext: dialTCP, TLSClientConfig: &tls.Config{RootCAs: e.pool}, ForceAttemptHTTP2: true}
	e.h3 = e.newH3()
	t.Cleanup(func() {
		e.h1.CloseIdleConnections()
		e.h2.CloseIdleConnections()
		e.h3.Close()
		n.Shutdown(context.Background())
	})
	return e
}

func (e *sniEdge) newH3() *http3.Transport {
	addr := e.n.TLSAddr()
	return &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: e.pool}, Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
		return quic.DialAddrEarly(ctx, addr, tc, qc)
	}}
}

// reconnect closes every client's connections: the next requests make
// new handshakes.
func (e *sniEdge) reconnect() {
	e.h1.CloseIdleConnections()
	e.h2.CloseIdleConnections()
	e.h3.Close()
	e.h3 = e.newH3()
}

// get fetches / of host over HTTP/proto and returns the serial of the
// certificate its connection was made with (checked to be host's).
func (e *sniEdge) get(proto int, host string) string {
	t := e.t
	t.Helper()
	rt := map[int]http.RoundTripper{1: e.h1, 2: e.h2, 3: e.h3}[proto]
	req, _ := http.NewRequest("GET", "https://"+host+":"+e.port+"/", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s over HTTP/%d: %v", host, proto, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != proto {
		t.Fatalf("%s: spoke %s, want HTTP/%d", host, resp.Proto, proto)
	}
	if resp.StatusCode != 200 || string(body) != "origin for "+host {
		t.Fatalf("%s over HTTP/%d: %d %q", host, proto, resp.StatusCode, body)
	}
	leaf := resp.TLS.PeerCertificates[0]
	if !slices.Equal(leaf.DNSNames, []string{host}) {
		t.Fatalf("%s over HTTP/%d got the certificate of %v", host, proto, leaf.DNSNames)
	}
	return leaf.SerialNumber.String()
}

// checkAll checks that every protocol gets host's expected certificate.
func (e *sniEdge) checkAll(when string, hosts ...string) {
	e.t.Helper()
	for proto := 1; proto <= 3; proto++ {
		for _, host := range hosts {
			if got := e.get(proto, host); got != e.serials[host] {
				e.t.Fatalf("%s: %s over HTTP/%d got serial %s, want %s", when, host, proto, got, e.serials[host])
			}
		}
	}
}

// Three sites with three certificates: a client over HTTP/1.1, HTTP/2 and
// HTTP/3 gets each name's certificate. A certificate replaced on disk is
// served from the next handshake on after a reload (what SIGHUP does;
// the file poll is off here), while a connection opened before keeps
// working; a reload whose certificate does not load is refused, naming
// the site's field, and the running certificates keep serving.
func TestSNIPicksEachSiteCertificateOverEveryProtocol(t *testing.T) {
	e := startSNIEdge(t, -1)
	e.checkAll("at start", "a.test", "b.test", "c.test")

	old := e.serials["b.test"]
	e.serials["b.test"] = e.sites[1].issue(t, e.pool, "b.test")
	e.reconnect()
	// An HTTP/2 connection to b.test, kept open over the reload.
	if got := e.get(2, "b.test"); got != old {
		t.Fatalf("b.test replaced on disk is served before any reload (serial %s): the poll is off", got)
	}
	if _, err := e.n.Reload(e.cfg); err != nil {
		t.Fatal(err)
	}
	if got := e.get(2, "b.test"); got != old {
		t.Fatalf("the HTTP/2 connection opened before the reload was replaced (serial %s, want %s)", got, old)
	}
	e.reconnect()
	e.checkAll("after the reload", "a.test", "b.test", "c.test")

	bad := e.cfg
	bad.Sites = slices.Clone(e.cfg.Sites)
	bad.Sites[0].TLS.KeyFile = e.sites[1].keyFile
	_, err := e.n.Reload(bad)
	if err == nil || !strings.Contains(err.Error(), "sites[0].tls.key_file: "+e.sites[1].keyFile+" does not match") || !strings.Contains(err.Error(), "(site a.test)") {
		t.Fatalf("reload with a mismatched key: %v", err)
	}
	e.reconnect()
	e.checkAll("after the refused reload", "a.test", "b.test", "c.test")

	// Each site's certificate has its expiry in the node's metrics.
	mfs, err := e.n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "meridian_tls_certificate_expiry_timestamp_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := ""
			for _, l := range m.GetLabel() {
				labels += l.GetName() + "=" + l.GetValue() + " "
			}
			if v := m.GetGauge().GetValue(); v <= float64(time.Now().Unix()) {
				t.Errorf("%s: expiry %v, not in the future", labels, v)
			}
			got[labels] = true
		}
	}
	for i, host := range []string{"a.test", "b.test", "c.test"} {
		if want := fmt.Sprintf("name=%s source=sites[%d].tls ", host, i); !got[want] {
			t.Errorf("no expiry series %q among %v", want, got)
		}
	}
}

// A certificate replaced on disk is found by the file poll and served from
// the next handshake on, over every protocol, with no reload; a
// connection opened before keeps working.
func TestPolledCertificateIsServedOverEveryProtocol(t *testing.T) {
	e := startSNIEdge(t, 50*time.Millisecond)
	e.checkAll("at start", "c.test")
	// An HTTP/2 connection of its own, kept open over the change.
	keep := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.pool}, ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", e.n.TLSAddr())
		}}
	defer keep.CloseIdleConnections()
	keepGet := func() string {
		t.Helper()
		resp, err := keep.RoundTrip(must(http.NewRequest("GET", "https://c.test:"+e.port+"/", nil)))
		if err != nil {
			t.Fatalf("the kept connection: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
			t.Fatalf("the kept connection: %s %d", resp.Proto, resp.StatusCode)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	old := keepGet()
	e.serials["c.test"] = e.sites[2].issue(t, e.pool, "c.test")
	poll.Until(t, 20*time.Second, "the replaced c.test certificate is served", func() bool {
		e.reconnect()
		return e.get(1, "c.test") == e.serials["c.test"]
	})
	e.reconnect()
	e.checkAll("after the poll", "a.test", "b.test", "c.test")
	if got := keepGet(); got != old {
		t.Fatalf("the HTTP/2 connection opened before the change: serial %s, want the one it was made with (%s)", got, old)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// A reload reports the certificates re-read, and keeps the TLS settings
// that only a restart applies.
func TestReloadReportsTLS(t *testing.T) {
	certPEM, keyPEM, err := listen.SelfSignedCert([]string{"site.test"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	cfg := nodeConfig("edge-tlsrep", "http://127.0.0.1:1")
	cfg.Cluster = nil
	cfg.TLS = &edge.TLSConfig{Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile}
	n, err := node.Start(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	next := cfg
	tc := *cfg.TLS
	tc.Listen = "127.0.0.1:1"
	tc.ReloadInterval = time.Hour
	next.TLS = &tc
	rep, err := n.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"tls.listen", "tls.reload_interval"}; !slices.Equal(rep.NeedsRestart, want) {
		t.Errorf("needs restart %q, want %q", rep.NeedsRestart, want)
	}
	if !slices.Contains(rep.Applied, "tls: certificate files re-read") {
		t.Errorf("applied %q does not say the certificates were re-read", rep.Applied)
	}
}
