package listen_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/listen"
)

// The connection metrics are on the Registerer from Start until
// Shutdown: a second Server on the same registry is refused while the
// first runs (with an error, nothing bound), and starts once it is gone.
func TestServerMetricsRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := edge.Config{Listen: "127.0.0.1:0", Sites: []edge.SiteConfig{{Hosts: []string{testHost}, Origin: "http://127.0.0.1:1"}}}
	opt := listen.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	names := func() string {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, mf := range mfs {
			out = append(out, mf.GetName())
		}
		return strings.Join(out, " ")
	}
	a := listen.NewServer(cfg, h, opt)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if got := names(); !strings.Contains(got, "meridian_edge_connections ") && !strings.HasSuffix(got, "meridian_edge_connections") {
		t.Fatalf("registered: %s", got)
	}
	b := listen.NewServer(cfg, h, opt)
	if err := b.Start(); err == nil || !strings.Contains(err.Error(), "metrics") {
		b.Shutdown(context.Background())
		t.Fatalf("a second server on the same registry: %v", err)
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := names(); strings.Contains(got, "meridian_edge_") {
		t.Fatalf("still registered after Shutdown: %s", got)
	}
	if err := b.Start(); err != nil {
		t.Fatalf("after the first shut down: %v", err)
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Over HTTP/2, an answer's header is held back for its body (h2.go) only
// briefly: a handler that flushes its header and writes its body only
// once the client has seen the header (a stream, a long poll) still gets
// its header to the client.
func TestHTTP2FlushedHeaderReachesTheClient(t *testing.T) {
	certFile, keyFile := listen.WriteCertFiles(t, testHost)
	cfg := edge.Config{Listen: "127.0.0.1:0",
		TLS:   &edge.TLSConfig{Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, DisableHTTP3: true},
		Sites: []edge.SiteConfig{{Hosts: []string{testHost}, Origin: "http://127.0.0.1:1"}}}
	sawHeader := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-sawHeader:
			io.WriteString(w, "body after the header")
		case <-r.Context().Done():
		}
	})
	srv := listen.NewServer(cfg, h, listen.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: testHost, InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+srv.TLSAddr()+"/stream", nil)
	req.Host = testHost
	res, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("no header before the body: %v", err)
	}
	defer res.Body.Close()
	if res.ProtoMajor != 2 {
		t.Fatalf("answered over %s, want HTTP/2", res.Proto)
	}
	close(sawHeader)
	body, err := io.ReadAll(res.Body)
	if err != nil || string(body) != "body after the header" {
		t.Fatalf("body %q, %v", body, err)
	}
}
