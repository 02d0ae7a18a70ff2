package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/origin"
)

// coalescingCache is a toy cache in front of a demo origin: the first
// request for a key fills it (Cache-Status without "collapsed"), the
// others wait for that fill and are marked collapsed, as Meridian does.
type coalescingCache struct {
	origin string
	mu     sync.Mutex
	fills  map[string]chan struct{}
}

func (c *coalescingCache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/warm" {
		return
	}
	c.mu.Lock()
	ch, waiting := c.fills[r.URL.RequestURI()]
	if !waiting {
		ch = make(chan struct{})
		c.fills[r.URL.RequestURI()] = ch
	}
	c.mu.Unlock()
	if waiting {
		<-ch
		w.Header().Set("Cache-Status", "toy; fwd=uri-miss; collapsed")
		return
	}
	resp, err := http.Get(c.origin + r.URL.RequestURI())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		close(ch)
		return
	}
	resp.Body.Close()
	close(ch)
	w.Header().Set("Cache-Status", "toy; fwd=uri-miss; stored")
}

func TestCoalesce(t *testing.T) {
	demo := origin.NewDemo(nil)
	org := httptest.NewServer(demo)
	defer org.Close()
	defer demo.Close()
	cache := httptest.NewServer(&coalescingCache{origin: org.URL, fills: map[string]chan struct{}{}})
	defer cache.Close()

	res, err := Coalesce(context.Background(), CoalesceConfig{
		URL:      cache.URL + "/cold/1?delay=20ms",
		WarmURL:  cache.URL + "/warm",
		Host:     "bench.test",
		Clients:  20,
		StatsURL: org.URL + "/_stats",
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Clients != 20 || res.Errors != 0 || res.Fills != 1 || res.OriginFetches != 1 {
		t.Errorf("clients %d, errors %d, fills %d, origin fetches %d; want 20, 0, 1, 1", res.Clients, res.Errors, res.Fills, res.OriginFetches)
	}
	if res.Leader <= 0 || res.WaiterP50 <= 0 || res.WaiterP99 < res.WaiterP50 {
		t.Errorf("latencies: leader %v, waiters p50 %v p99 %v", res.Leader, res.WaiterP50, res.WaiterP99)
	}
	s := res.Sample()
	if s.Tool != "coalesce" || s.OriginFetches != 1 || s.Clients != 20 || s.LeaderMs != ms(res.Leader) {
		t.Errorf("Sample() = %+v", s)
	}

	// A warm-up that fails stops the measurement.
	if _, err := Coalesce(context.Background(), CoalesceConfig{URL: cache.URL + "/cold/2", WarmURL: org.URL + "/x?status=503", Clients: 2}); err == nil {
		t.Error("failing warm-up: no error")
	}
	for _, cfg := range []CoalesceConfig{{WarmURL: "http://x"}, {URL: "http://x"}, {URL: "http://x", WarmURL: "http://x", Clients: -1}, {URL: "http://x", WarmURL: "http://x", Timeout: -1}} {
		if _, err := Coalesce(context.Background(), cfg); err == nil {
			t.Errorf("Coalesce(%+v): no error", cfg)
		}
	}
}

func TestFillResponse(t *testing.T) {
	for _, tc := range []struct {
		header, value string
		fill          bool
	}{
		{"Cache-Status", "edge; fwd=uri-miss; fwd-status=200; ttl=3599; stored", true},
		{"Cache-Status", "edge; fwd=uri-miss; fwd-status=200; ttl=3599; stored; collapsed", false},
		{"Cache-Status", "edge; hit; ttl=3599", false},
		{"X-Cache-Status", "MISS", true},
		{"X-Cache-Status", "HIT", false},
		{"X-Cache", "MISS", true},
		{"X-Cache", "HIT", false},
		{"X-Other", "MISS", false},
	} {
		resp := &http.Response{Header: http.Header{}}
		resp.Header.Set(tc.header, tc.value)
		if got := FillResponse(resp); got != tc.fill {
			t.Errorf("FillResponse(%s: %s) = %v, want %v", tc.header, tc.value, got, tc.fill)
		}
	}
}

func TestSummarizeCoalesce(t *testing.T) {
	// c is a client that started with the burst, so done equals lat.
	c := func(lat time.Duration, fill, ok bool) *coalesceClient {
		return &coalesceClient{lat: lat * time.Millisecond, done: lat * time.Millisecond, fill: fill, ok: ok}
	}
	// late is a client that sent its request start ms after the burst
	// began (one load core sends them one after another).
	late := func(start, lat time.Duration, fill bool) *coalesceClient {
		return &coalesceClient{lat: lat * time.Millisecond, done: (start + lat) * time.Millisecond, fill: fill, ok: true}
	}
	for _, tc := range []struct {
		name    string
		clients []*coalesceClient
		want    CoalesceResult
	}{
		{"one fill", []*coalesceClient{c(70, false, true), c(55, true, true), c(510, false, true), c(512, false, true)},
			CoalesceResult{Clients: 4, Fills: 1, Leader: 55 * time.Millisecond, WaiterP50: 510 * time.Millisecond, WaiterP99: 512 * time.Millisecond,
				WaitersDoneAfterLeader: 455 * time.Millisecond}},
		{"no coalescing: the fastest fill leads", []*coalesceClient{c(60, true, true), c(52, true, true), c(58, true, true)},
			CoalesceResult{Clients: 3, Fills: 3, Leader: 52 * time.Millisecond, WaiterP50: 58 * time.Millisecond, WaiterP99: 60 * time.Millisecond,
				WaitersDoneAfterLeader: 6 * time.Millisecond}},
		{"no fill header: the fastest leads", []*coalesceClient{c(80, false, true), c(60, false, true), c(0, false, false)},
			CoalesceResult{Clients: 3, Errors: 1, Leader: 60 * time.Millisecond, WaiterP50: 80 * time.Millisecond, WaiterP99: 80 * time.Millisecond,
				WaitersDoneAfterLeader: 20 * time.Millisecond}},
		{"staggered sends: waiters done with the leader, latencies shorter", []*coalesceClient{late(0, 70, true), late(5, 64, false), late(9, 61, false), late(10, 61, false)},
			CoalesceResult{Clients: 4, Fills: 1, Leader: 70 * time.Millisecond, WaiterP50: 61 * time.Millisecond, WaiterP99: 64 * time.Millisecond,
				WaitersDoneAfterLeader: 0}},
		{"all failed", []*coalesceClient{c(1, false, false)}, CoalesceResult{Clients: 1, Errors: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := summarizeCoalesce(tc.clients); got != tc.want {
				t.Errorf("summarizeCoalesce = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestOriginFetches(t *testing.T) {
	demo := origin.NewDemo(nil)
	org := httptest.NewServer(demo)
	defer org.Close()
	defer demo.Close()
	for _, p := range []string{"/a/1", "/a/1?x=1", "/a/12", "/b/1"} {
		resp, err := http.Get(org.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	n, err := OriginFetches(context.Background(), org.URL+"/_stats", "/a/1")
	if err != nil || n != 3 {
		t.Errorf("OriginFetches(/a/1) = %d, %v; want 3 (/a/1, /a/1?x=1, /a/12)", n, err)
	}
	if _, err := OriginFetches(context.Background(), org.URL+"/_stats/reset", "/"); err == nil || !strings.Contains(err.Error(), "405") {
		t.Errorf("OriginFetches of a non-stats URL = %v, want a 405 error", err)
	}
}

func TestCoalesceUncountedFetch(t *testing.T) {
	// A stats endpoint that counts nothing: the origin's table was full.
	stats := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"total":5,"requests":{}}`)
	}))
	defer stats.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	_, err := Coalesce(context.Background(), CoalesceConfig{URL: srv.URL + "/cold", WarmURL: srv.URL + "/warm", Clients: 3, StatsURL: stats.URL})
	if err == nil || !strings.Contains(err.Error(), "counted no request for /cold") {
		t.Errorf("Coalesce with an origin that counted nothing = %v, want an error", err)
	}
}
