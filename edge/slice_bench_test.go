package edge_test

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/internal/cdntest"
)

// BenchmarkSlicedLargeObject runs a large-object workload through a cold
// edge, over loopback sockets: 8 clients at once send 200 requests for
// a 64 MiB object (larger than max_object_bytes), nine in ten a random
// range of up to 2 MiB (a player seeking), one in ten the whole object.
// It reports the origin's body bytes per client body byte and per object
// byte, unsliced (the object is never stored: every request goes to the
// origin) and sliced with slice_bytes of 1 and 4 MiB.
//
//	go test -run '^$' -bench SlicedLargeObject -benchtime 3x ./edge/
func BenchmarkSlicedLargeObject(b *testing.B) {
	const size, requests, clients = 64 << 20, 200, 8
	for _, sb := range []int64{0, 1 << 20, 4 << 20} {
		name := "unsliced"
		if sb > 0 {
			name = fmt.Sprintf("slice=%dMiB", sb>>20)
		}
		b.Run(name, func(b *testing.B) {
			var origin, client float64
			for range b.N {
				o, c := slicedWorkload(b, sb, size, requests, clients)
				origin += float64(o)
				client += float64(c)
			}
			b.ReportMetric(origin/client, "origin-bytes/client-byte")
			b.ReportMetric(origin/float64(b.N)/size, "origin-bytes/object-byte")
			b.ReportMetric(client/float64(b.N)/(1<<20), "client-MiB/op")
		})
	}
}

// slicedWorkload runs the workload once through a new edge and returns
// the origin's and the clients' body bytes.
func slicedWorkload(b *testing.B, sliceBytes, size int64, requests, clients int) (originBytes, clientBytes int64) {
	lo := cdntest.StartLargeOrigin(b)
	lo.Set("/movie.mp4", cdntest.LargeObject{Size: size, Version: "v1", CacheControl: "max-age=3600"})
	h, err := edge.New(edge.Config{
		Cache: edge.CacheConfig{MaxBytes: 256 << 20},
		Sites: []edge.SiteConfig{{Hosts: []string{"bench.test"}, Origin: lo.URL, SliceBytes: sliceBytes}},
	}, edge.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer func() { srv.Close(); h.Close() }()
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}

	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			for k := w; k < requests; k += clients {
				req, _ := http.NewRequest("GET", srv.URL+"/movie.mp4", nil)
				req.Host = "bench.test"
				if rng.IntN(10) != 0 {
					off := rng.Int64N(size)
					req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+rng.Int64N(2<<20)))
				}
				resp, err := c.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode >= 300 {
					b.Errorf("status %d, %v", resp.StatusCode, err)
					return
				}
				mu.Lock()
				clientBytes += n
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// Slices read in part complete in the background: count them.
	for deadline := time.Now().Add(30 * time.Second); lo.Pending() > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	return lo.BodyBytes(), clientBytes
}
