package edge_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/meridiancdn/meridian/edge"
)

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark
// measures the cache's hit path and not a recorder's buffering.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkHit measures serving a fresh stored object through
// Handler.ServeHTTP, for 1 KiB and 64 KiB bodies.
func BenchmarkHit(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			body := strings.Repeat("x", size)
			origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=3600")
				w.Header().Set("Content-Type", "application/octet-stream")
				w.Header().Set("ETag", `"bench"`)
				io.WriteString(w, body)
			}))
			defer origin.Close()
			h, err := edge.New(edge.Config{Sites: []edge.SiteConfig{{Hosts: []string{"bench.test"}, Origin: origin.URL}}},
				edge.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			req := httptest.NewRequest("GET", "http://bench.test/obj?x=1", nil)
			w := &discardWriter{h: http.Header{}}
			h.ServeHTTP(w, req) // fill
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				clear(w.h)
				h.ServeHTTP(w, req)
			}
			b.StopTimer()
			if !strings.Contains(w.h.Get("Cache-Status"), "hit") {
				b.Fatalf("not a hit: %q", w.h.Get("Cache-Status"))
			}
		})
	}
}
