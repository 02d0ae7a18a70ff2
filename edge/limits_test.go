package edge_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/limit"
	"github.com/meridiancdn/meridian/origin"
)

func TestClientRateLimitAppliesToMissesNotHits(t *testing.T) {
	e := newEnv(t, respond(200, "obj", "Cache-Control", "max-age=600"), func(c *edge.Config) {
		c.Sites[0].Limits = limit.Config{RequestsPerSecond: 1, Burst: 2}
	})
	e.get("/hot") // a miss: one token
	for i := 0; i < 10; i++ {
		r, _ := e.get("/hot")
		wantCS(t, r, "hit") // hits take none
	}
	r, _ := e.get("/miss-1") // the second token
	wantStatus(t, r, 200)
	r, _ = e.get("/miss-2")
	wantStatus(t, r, http.StatusTooManyRequests)
	wantCS(t, r, "detail=rate-limited")
	if r.Header.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	if n := e.origin.count("/miss-2"); n != 0 {
		t.Fatalf("a refused request reached the origin %d times", n)
	}
	r, _ = e.do(http.MethodPost, "/form", nil, nil) // pass-through is limited too
	wantStatus(t, r, http.StatusTooManyRequests)
	e.clock.Advance(time.Second) // the bucket refills on the edge's clock
	r, _ = e.get("/miss-2")
	wantStatus(t, r, 200)
}

func TestClientConcurrencyLimit(t *testing.T) {
	arrived, release := make(chan struct{}, 4), make(chan struct{})
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		w.Header().Set("Cache-Control", "no-store")
	}, func(c *edge.Config) {
		c.Sites[0].Limits = limit.Config{MaxConcurrent: 2}
		c.Sites[0].Timeout = time.Minute
	})
	var wg sync.WaitGroup
	for _, p := range []string{"/c1", "/c2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.get(p)
		}()
	}
	waitSignal(t, arrived, "first request")
	waitSignal(t, arrived, "second request")
	r, _ := e.get("/c3")
	wantStatus(t, r, http.StatusTooManyRequests)
	wantCS(t, r, "detail=concurrency-limited")
	close(release)
	wg.Wait()
	r, _ = e.get("/c3")
	wantStatus(t, r, 200)
}

func TestOriginCapsAnswer503AndAreNotRemembered(t *testing.T) {
	arrived, release := make(chan struct{}, 4), make(chan struct{})
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			<-release
		}
		w.Header().Set("Cache-Control", "max-age=60")
	}, func(c *edge.Config) {
		c.Sites[0].Pool = origin.PoolConfig{MaxInflight: 1, MaxConns: 1, QueueTimeout: 50 * time.Millisecond}
		c.Sites[0].Timeout = time.Minute
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.get("/slow")
	}()
	waitSignal(t, arrived, "the slow request")
	r, _ := e.get("/other")
	wantStatus(t, r, http.StatusServiceUnavailable)
	wantCS(t, r, "detail=origin-overloaded")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	close(release)
	<-done
	// The origin never saw the refused request: nothing to back off from.
	r, _ = e.get("/other")
	wantStatus(t, r, 200)
}
