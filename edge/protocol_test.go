package edge_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/listen"
)

// tlsEnv is an edge with plain, TLS (HTTP/2) and QUIC (HTTP/3) listeners
// that records the protocol of each request it serves.
type tlsEnv struct {
	*env
	certPEM []byte
	tlsAddr string
	mu      sync.Mutex
	protos  []string
	served  []string // "path content-encoding" of each answer
}

func newTLSEnv(t *testing.T, h http.HandlerFunc, hosts ...string) *tlsEnv {
	t.Helper()
	return newTLSEnvWith(t, h, nil, hosts...)
}

// newTLSEnvWith is newTLSEnv with the edge's config adjusted by mutate
// (nil: as newTLSEnv has it).
func newTLSEnvWith(t *testing.T, h http.HandlerFunc, mutate func(*edge.Config), hosts ...string) *tlsEnv {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM, err := listen.SelfSignedCert([]string{"127.0.0.1", testHost}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)

	te := &tlsEnv{certPEM: certPEM}
	base := newEnv(t, h, func(c *edge.Config) {
		c.Sites[0].Hosts = append(c.Sites[0].Hosts, hosts...)
		if mutate != nil {
			mutate(c)
		}
	})
	cfg := base.cfg
	cfg.TLS = &edge.TLSConfig{Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile}
	recorder := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		te.mu.Lock()
		te.protos = append(te.protos, r.Proto)
		te.mu.Unlock()
		base.edge.ServeHTTP(w, r)
		te.mu.Lock()
		te.served = append(te.served, r.URL.Path+" "+w.Header().Get("Content-Encoding"))
		te.mu.Unlock()
	})
	srv := listen.NewServer(cfg, recorder, listen.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	te.env = base
	te.tlsAddr = srv.TLSAddr()
	return te
}

func (te *tlsEnv) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(te.certPEM)
	return p
}

func fetch(t *testing.T, rt http.RoundTripper, url string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = testHost
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestSameObjectOverHTTP1HTTP2HTTP3(t *testing.T) {
	te := newTLSEnv(t, respond(200, "proto-body", "Cache-Control", "max-age=60"))
	tlsConf := &tls.Config{RootCAs: te.pool(), ServerName: testHost}

	h1 := &http.Transport{}
	defer h1.CloseIdleConnections()
	r1, b1 := fetch(t, h1, te.base+"/obj")
	wantCS(t, r1, "stored")

	h2 := &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true}
	defer h2.CloseIdleConnections()
	r2, b2 := fetch(t, h2, "https://"+te.tlsAddr+"/obj")
	if r2.ProtoMajor != 2 {
		t.Fatalf("TLS listener spoke %s, want HTTP/2", r2.Proto)
	}
	// The scheme is part of the key: HTTPS has its own entry, which
	// HTTP/2 and HTTP/3 share.
	wantCS(t, r2, "stored")
	altSvc := r2.Header.Get("Alt-Svc")
	if !strings.Contains(altSvc, `h3=":`) {
		t.Fatalf("no Alt-Svc for HTTP/3: %q", altSvc)
	}

	h3 := &http3.Transport{TLSClientConfig: tlsConf}
	defer h3.Close()
	r3, b3 := fetch(t, h3, "https://"+te.tlsAddr+"/obj")
	if r3.ProtoMajor != 3 {
		t.Fatalf("QUIC listener spoke %s, want HTTP/3", r3.Proto)
	}
	wantCS(t, r3, "hit")
	if b1 != "proto-body" || b2 != b1 || b3 != b1 {
		t.Fatalf("bodies differ: %q %q %q", b1, b2, b3)
	}
	if n := te.origin.count("/obj"); n != 2 {
		t.Fatalf("origin count %d, want 2 (one per scheme)", n)
	}
}

// TestChromiumOverHTTP3 fetches through the edge with a client that is not
// built on quic-go: headless Chromium forced onto QUIC.
func TestChromiumOverHTTP3(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test skipped in -short")
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed; .ci/run installs it")
		}
		t.Skip("chromium not installed")
	}
	te := newTLSEnv(t, respond(200, "<html><body><p id=x>served-over-quic</p></body></html>",
		"Cache-Control", "max-age=60", "Content-Type", "text/html"), "127.0.0.1")
	block, _ := pem.Decode(te.certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium,
		"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(),
		"--enable-quic", "--origin-to-force-quic-on="+te.tlsAddr,
		"--ignore-certificate-errors-spki-list="+base64.StdEncoding.EncodeToString(spki[:]),
		"--dump-dom", "https://"+te.tlsAddr+"/page")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "served-over-quic") {
		t.Fatalf("chromium DOM lacks the page: %s", out)
	}
	te.mu.Lock()
	defer te.mu.Unlock()
	found := false
	for _, p := range te.protos {
		if p == "HTTP/3.0" {
			found = true
		}
	}
	if !found {
		t.Fatalf("chromium's requests came over %v, not HTTP/3", te.protos)
	}
}
