package edge_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/tracing"
)

// BenchmarkHitTracing is BenchmarkHit's 1 KiB hit with tracing off (no
// Tracer: what tracing.otlp_endpoint "" gives, and what BenchmarkHit
// runs), and on with every request's span recorded and batched to an
// exporter that drops it, and on with nothing sampled: what an
// otlp_endpoint costs a hit, and that leaving it off costs nothing
// (compare off with BenchmarkHit before tracing existed).
func BenchmarkHitTracing(b *testing.B) {
	body := strings.Repeat("x", 1<<10)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("ETag", `"bench"`)
		io.WriteString(w, body)
	}))
	defer origin.Close()
	for _, tc := range []struct {
		name   string
		sample float64 // <0: no Tracer
	}{{"off", -1}, {"on-sampled", 1}, {"on-unsampled", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			opts := edge.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			if tc.sample >= 0 {
				tr := tracing.New(tracing.Options{Exporter: tracetest.NewNoopExporter(), SampleRatio: tc.sample, Service: "bench"})
				defer tr.Shutdown(context.Background())
				opts.Tracer = tr
			}
			h, err := edge.New(edge.Config{Sites: []edge.SiteConfig{{Hosts: []string{"bench.test"}, Origin: origin.URL}}}, opts)
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			req := httptest.NewRequest("GET", "http://bench.test/obj?x=1", nil)
			req.Header.Set("Accept-Encoding", "gzip, deflate, br, zstd")
			w := &discardWriter{h: http.Header{}}
			h.ServeHTTP(w, req) // fill
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, req)
			}
			if !strings.Contains(w.h.Get("Cache-Status"), "hit") {
				b.Fatalf("not a hit: %q", w.h.Get("Cache-Status"))
			}
		})
	}
}
