package edge_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// compressedPage answers /app.js and /style.css with compressible bodies
// and anything else with an HTML page that uses them.
func compressedPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "max-age=600")
	switch r.URL.Path {
	case "/app.js":
		w.Header().Set("Content-Type", "text/javascript")
		io.WriteString(w, strings.Repeat("// padding so that the script is worth compressing\n", 100)+
			"document.getElementById('x').textContent = 'script-ran-' + (1+1);\n")
	case "/style.css":
		w.Header().Set("Content-Type", "text/css")
		io.WriteString(w, strings.Repeat("p { margin: 0; padding: 0; }\n", 200))
	default:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!doctype html><html><head><link rel=stylesheet href=/style.css></head><body><p id=x>waiting</p>"+
			strings.Repeat("<!-- padding -->\n", 100)+"<script src=/app.js></script></body></html>")
	}
}

// TestCompressionOverEveryProtocol: the br variant over HTTP/1.1,
// HTTP/2 and HTTP/3, decoded with Go's decoders, stored once per scheme
// and then served as a hit on each.
func TestCompressionOverEveryProtocol(t *testing.T) {
	te := newTLSEnvWith(t, respond(200, page, "Content-Type", "text/html", "Cache-Control", "max-age=60"), compressing)
	tlsConf := &tls.Config{RootCAs: te.pool(), ServerName: testHost}
	h1 := &http.Transport{DisableCompression: true}
	defer h1.CloseIdleConnections()
	h2 := &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true, DisableCompression: true}
	defer h2.CloseIdleConnections()
	h3 := &http3.Transport{TLSClientConfig: tlsConf, DisableCompression: true}
	defer h3.Close()
	for _, p := range []struct {
		name  string
		rt    http.RoundTripper
		url   string
		major int
	}{
		{"HTTP/1.1", h1, te.base + "/page", 1},
		{"HTTP/2", h2, "https://" + te.tlsAddr + "/page", 2},
		{"HTTP/3", h3, "https://" + te.tlsAddr + "/page", 3},
	} {
		for round := range 2 {
			req, _ := http.NewRequest("GET", p.url, nil)
			req.Host = testHost
			req.Header.Set("Accept-Encoding", "gzip, deflate, br, zstd")
			resp, err := p.rt.RoundTrip(req)
			if err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			if resp.ProtoMajor != p.major {
				t.Fatalf("%s: spoke %s", p.name, resp.Proto)
			}
			if resp.Header.Get("Content-Encoding") != "br" || !varies(resp) || decodeBody(t, "br", b) != page {
				t.Fatalf("%s: Content-Encoding %q Vary %q", p.name, resp.Header.Get("Content-Encoding"), resp.Header.Values("Vary"))
			}
			if round == 1 {
				wantCS(t, resp, "hit")
			}
		}
	}
	if n := te.origin.count("/page"); n != 2 {
		t.Fatalf("origin requests %d, want 2 (one per scheme)", n)
	}
}

// TestCompressionWithCurl decodes the edge's answers with curl
// --compressed, over HTTP/1.1 and HTTP/2.
func TestCompressionWithCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is not installed; .ci/run installs it")
		}
		t.Skip("curl not installed")
	}
	te := newTLSEnvWith(t, compressedPage, compressing)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"http1", []string{"--http1.1", te.base + "/style.css"}},
		{"http2", []string{"--http2", "-k", "https://" + te.tlsAddr + "/style.css"}},
	} {
		out, hdrs := filepath.Join(dir, tc.name+".body"), filepath.Join(dir, tc.name+".hdr")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		args := append([]string{"-sS", "--compressed", "-H", "Host: " + testHost, "-o", out, "-D", hdrs}, tc.args...)
		if b, err := exec.CommandContext(ctx, curl, args...).CombinedOutput(); err != nil {
			cancel()
			t.Fatalf("%s: curl: %v\n%s", tc.name, err, b)
		}
		cancel()
		body, _ := os.ReadFile(out)
		head, _ := os.ReadFile(hdrs)
		if !strings.Contains(strings.ToLower(string(head)), "content-encoding: br") {
			t.Fatalf("%s: curl got no br:\n%s", tc.name, head)
		}
		if string(body) != strings.Repeat("p { margin: 0; padding: 0; }\n", 200) {
			t.Fatalf("%s: curl decoded %d bytes, not the stylesheet", tc.name, len(body))
		}
	}
}

// TestCompressionInChromium: a page's resources reach a real browser
// with content-encoding: br, and it decodes them (the script runs).
func TestCompressionInChromium(t *testing.T) {
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
	te := newTLSEnvWith(t, compressedPage, compressing, "127.0.0.1")
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
		"--ignore-certificate-errors-spki-list="+base64.StdEncoding.EncodeToString(spki[:]),
		"--dump-dom", "https://"+te.tlsAddr+"/index.html")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "script-ran-2") {
		t.Fatalf("the compressed script did not run in chromium: %s", out)
	}
	te.mu.Lock()
	served := slices.Clone(te.served)
	te.mu.Unlock()
	for _, want := range []string{"/index.html br", "/app.js br", "/style.css br"} {
		if !slices.Contains(served, want) {
			t.Fatalf("chromium was served %q, lacks %q", served, want)
		}
	}
}
