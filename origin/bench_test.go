package origin

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// BenchmarkPoolRoundTrip measures a GET of a 1 KiB object through a pool of
// two demo origins on loopback, connections reused.
func BenchmarkPoolRoundTrip(b *testing.B) {
	d := NewDemo(nil)
	s1, s2 := httptest.NewServer(d), httptest.NewServer(d)
	defer s1.Close()
	defer s2.Close()
	p, err := NewPool(PoolConfig{Servers: []ServerConfig{{URL: s1.URL}, {URL: s2.URL}}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://bench.example/obj?size=1024", nil)
			resp, err := p.RoundTrip(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// BenchmarkPoolRoundTripSerial measures one GET at a time of a 1 KiB
// object from one demo origin on loopback: the pool's own overhead per
// request shows best without the noise of parallel clients. "cancelable"
// gives each request a context that can be canceled, as the edge's fills
// have: the lean client then watches it for the request's life.
func BenchmarkPoolRoundTripSerial(b *testing.B) {
	s := httptest.NewServer(NewDemo(nil))
	defer s.Close()
	p, err := NewPool(PoolConfig{Servers: []ServerConfig{{URL: s.URL}}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	for _, name := range []string{"background", "cancelable"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ctx, cancel := context.Background(), context.CancelCauseFunc(func(error) {})
				if name == "cancelable" {
					ctx, cancel = context.WithCancelCause(ctx)
				}
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://bench.example/obj?size=1024", nil)
				resp, err := p.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				cancel(nil)
			}
		})
	}
}

// BenchmarkPick measures server selection among eight weighted servers.
func BenchmarkPick(b *testing.B) {
	var cfg PoolConfig
	for i := range 8 {
		cfg.Servers = append(cfg.Servers, ServerConfig{URL: "http://10.0.0." + strconv.Itoa(i+1), Weight: i + 1})
	}
	p, err := NewPool(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	tried := make([]bool, len(cfg.Servers))
	b.ReportAllocs()
	for b.Loop() {
		p.pick(tried)
	}
}
