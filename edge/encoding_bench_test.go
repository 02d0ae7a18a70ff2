package edge_test

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/compress"
)

// benchPage is a 64 KiB HTML-like page with some variety (words drawn
// from a small vocabulary), compressing about as real pages do.
func benchPage(size int) string {
	words := strings.Fields("the edge cache serves stored objects to clients in every region while the origin sleeps " +
		"<div class=\"card\"> </div> <a href=\"/products/item\"> </a> <span> </span> meridian brotli zstd gzip variant")
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	for b.Len() < size {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(' ')
	}
	return b.String()[:size]
}

// BenchmarkCompressedHit compares a hit on a stored br variant with a hit
// on the identity variant of the same 64 KiB page and with a hit on a
// site that does not compress, through ServeHTTP and through the fast
// front's hit contract. SetBytes is the body sent (MB/s is wire
// throughput).
func BenchmarkCompressedHit(b *testing.B) {
	body := benchPage(64 << 10)
	for _, tc := range []struct {
		name     string
		compress bool
		ae       string
	}{
		{"plain-site", false, "gzip, deflate, br, zstd"},
		{"identity", true, ""},
		{"br", true, "gzip, deflate, br, zstd"},
	} {
		origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=3600")
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("ETag", `"bench"`)
			io.WriteString(w, body)
		}))
		h, err := edge.New(edge.Config{Sites: []edge.SiteConfig{{Hosts: []string{"bench.test"}, Origin: origin.URL,
			Compression: compress.Config{Enabled: tc.compress}}}},
			edge.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		req := httptest.NewRequest("GET", "http://bench.test/page", nil)
		if tc.ae != "" {
			req.Header.Set("Accept-Encoding", tc.ae)
		}
		fill := httptest.NewRecorder()
		h.ServeHTTP(fill, req)
		sent := int64(fill.Body.Len())
		b.Run(tc.name+"/ServeHTTP", func(b *testing.B) {
			w := &discardWriter{h: http.Header{}}
			b.SetBytes(sent)
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, req)
			}
			if !strings.Contains(w.h.Get("Cache-Status"), "hit") {
				b.Fatalf("not a hit: %q", w.h.Get("Cache-Status"))
			}
		})
		b.Run(tc.name+"/fast", func(b *testing.B) {
			hr := edge.HitRequest{Host: []byte("bench.test"), Target: []byte("/page"), Remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}}
			if tc.ae != "" {
				hr.AcceptEncoding = []byte(tc.ae)
			}
			var x edge.Hit
			buf := make([]byte, 0, 4096)
			date := []byte("Date: Sat, 01 Jan 2000 00:00:00 GMT\r\n")
			b.SetBytes(sent)
			b.ReportAllocs()
			for b.Loop() {
				if !h.LookupHit(hr, &x) {
					b.Fatal("no hit")
				}
				buf = x.AppendHead(buf[:0], func() []byte { return date })
				h.Delivered(&x, len(x.Body()))
			}
		})
		b.Logf("%s: %d body bytes sent for %d", tc.name, sent, len(body))
		h.Close()
		origin.Close()
	}
}

// BenchmarkCompressCold is the CPU a cold object's compression costs:
// the page compressed once per coding at the default levels (1 MiB in,
// ns/op per MiB).
func BenchmarkCompressCold(b *testing.B) {
	body := benchPage(1 << 20)
	c, err := compress.New(compress.Config{Enabled: true})
	if err != nil {
		b.Fatal(err)
	}
	for _, cd := range []compress.Coding{compress.Gzip, compress.Brotli, compress.Zstd} {
		b.Run(cd.String(), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			var out int64
			for b.Loop() {
				r, err := c.Encode(cd, io.NopCloser(strings.NewReader(body)))
				if err != nil {
					b.Fatal(err)
				}
				out, _ = io.Copy(io.Discard, r)
				r.Close()
			}
			b.ReportMetric(float64(out)/float64(len(body)), "ratio")
		})
	}
}
