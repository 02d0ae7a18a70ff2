// Package certstest runs Let's Encrypt's test ACME CA, pebble, inside a
// test's process: edge/certs and edge/node test issuance, renewal and
// shared orders against it, on loopback only.
package certstest

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// Pebble is Let's Encrypt's test CA, in this process: its VA validates
// challenges against 127.0.0.1 (every name resolves there) on the ports
// it was given, and every order it creates is counted by name.
type Pebble struct {
	// Directory is the ACME directory URL.
	Directory string
	// CAFile is a PEM file of the HTTPS certificate of the ACME server,
	// for tls.acme.ca_file.
	CAFile string
	// Roots verify the certificates it issues.
	Roots *x509.CertPool

	logs *logBuffer

	mu     sync.Mutex
	orders map[string]int
}

// Start runs pebble until the test ends, validating http-01 on
// 127.0.0.1:httpPort and tls-alpn-01 on 127.0.0.1:tlsPort, issuing
// certificates valid for validity. It sets PEBBLE_VA_NOSLEEP for the test
// (so the test must not be parallel). Its log is printed if the test
// fails.
func Start(t *testing.T, httpPort, tlsPort int, validity time.Duration) *Pebble {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	p := &Pebble{orders: map[string]int{}, logs: &logBuffer{}}
	logger := log.New(p.logs, "pebble ", log.Lmicroseconds)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pebble's log:\n%s", p.logs.String())
		}
	})

	resolver := startDNS(t)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "test", ValidityPeriod: uint64(validity / time.Second)},
	})
	validator := va.New(logger, httpPort, tlsPort, false, resolver, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	mux := front.Handler()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/order-plz" {
			mux.ServeHTTP(w, r)
			return
		}
		// An order counts when the CA created it (201): pebble
		// refuses some requests' nonces on purpose, and the client
		// sends them again.
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		sw := &statusWriter{ResponseWriter: w}
		mux.ServeHTTP(sw, r)
		if sw.status == http.StatusCreated {
			for _, name := range orderNames(body) {
				p.mu.Lock()
				p.orders[name]++
				p.mu.Unlock()
			}
		}
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p.Directory = srv.URL + wfe.DirectoryPath
	p.CAFile = filepath.Join(t.TempDir(), "pebble-https.pem")
	if err := os.WriteFile(p.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	p.Roots = x509.NewCertPool()
	p.Roots.AddCert(authority.GetRootCert(0).Cert)
	return p
}

// statusWriter keeps the status of the response it writes.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// orderNames are the identifiers of a new-order request (a JWS).
func orderNames(body []byte) []string {
	var jws struct{ Payload string }
	if json.Unmarshal(body, &jws) != nil {
		return nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(jws.Payload)
	if err != nil {
		return nil
	}
	var order struct{ Identifiers []struct{ Value string } }
	if json.Unmarshal(payload, &order) != nil {
		return nil
	}
	var names []string
	for _, id := range order.Identifiers {
		names = append(names, id.Value)
	}
	return names
}

// Ordered is how many orders the CA created for name.
func (p *Pebble) Ordered(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.orders[name]
}

// startDNS answers every A question with 127.0.0.1 and every other with
// no record, over TCP on loopback: pebble's VA resolves with it.
func startDNS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{Listener: ln, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(q)
			for _, qq := range q.Question {
				if qq.Qtype == dns.TypeA {
					m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0}, A: net.IPv4(127, 0, 0, 1)})
				}
			}
			w.WriteMsg(m)
		})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ActivateAndServe()
	}()
	<-started
	t.Cleanup(func() {
		srv.Shutdown()
		<-done
	})
	return ln.Addr().String()
}

// logBuffer collects pebble's log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
