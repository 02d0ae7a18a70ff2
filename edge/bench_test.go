package edge_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
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
			req.Header.Set("Accept-Encoding", "gzip, deflate, br, zstd") // as browsers send
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

// BenchmarkStoreMemory reports the Go heap each cached object costs beyond
// its body, after storing 10,000 objects of 1 KiB from a demo-like origin
// (Cache-Control, Content-Type, ETag, Date: the fields such objects have).
func BenchmarkStoreMemory(b *testing.B) {
	const objects, size = 10000, 1024
	body := strings.Repeat("m", size)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("ETag", `"`+r.URL.Path+`"`)
		io.WriteString(w, body)
	}))
	defer origin.Close()
	for i := 0; i < b.N; i++ {
		h, err := edge.New(edge.Config{Sites: []edge.SiteConfig{{Hosts: []string{"bench.test"}, Origin: origin.URL}}},
			edge.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		w := &discardWriter{h: http.Header{}}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for k := 0; k < objects; k++ {
			clear(w.h)
			h.ServeHTTP(w, httptest.NewRequest("GET", fmt.Sprintf("http://bench.test/object/%06d", k), nil))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		n, _, _ := h.StoreStats()
		if n != objects {
			b.Fatalf("%d objects stored", n)
		}
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/objects-size, "B/object-beyond-body")
		h.Close()
	}
}

// BenchmarkMiss measures a fill: every request a new key, 1 KiB from an
// origin on loopback (the request parsing of httptest.NewRequest included).
func BenchmarkMiss(b *testing.B) {
	body := strings.Repeat("x", 1024)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		io.WriteString(w, body)
	}))
	defer origin.Close()
	h, err := edge.New(edge.Config{Sites: []edge.SiteConfig{{Hosts: []string{"bench.test"}, Origin: origin.URL}}},
		edge.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		h.ServeHTTP(w, httptest.NewRequest("GET", fmt.Sprintf("http://bench.test/miss/%d", i), nil))
	}
	b.StopTimer()
	if n, _, _ := h.StoreStats(); n != b.N {
		b.Fatalf("%d stored after %d misses", n, b.N)
	}
}
