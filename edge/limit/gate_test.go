package limit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridiancdn/meridian/internal/poll"
)

func mustGate(t testing.TB, cfg GateConfig) *Gate {
	t.Helper()
	g, err := NewGate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGateConfig(t *testing.T) {
	c := GateConfig{MaxConcurrent: 8}.WithDefaults()
	if c.MaxQueue != 8 || c.QueueTimeout != time.Second || c.Name != "default" {
		t.Errorf("defaults %+v", c)
	}
	if c := (GateConfig{MaxConcurrent: 8, MaxQueue: -1}).WithDefaults(); c.MaxQueue != -1 {
		t.Errorf("no queue: %+v", c)
	}
	for _, tc := range []struct {
		cfg  GateConfig
		want string
	}{
		{GateConfig{MaxConcurrent: -1}, "max_concurrent: negative (-1)"},
		{GateConfig{MaxQueue: -2}, "max_queue: -2: want a count, or -1 for no queue"},
		{GateConfig{QueueTimeout: -time.Second}, "queue_timeout: negative (-1s)"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
		if _, err := NewGate(tc.cfg); err == nil || !strings.HasPrefix(err.Error(), "gate: ") {
			t.Errorf("NewGate(%+v) = %v", tc.cfg, err)
		}
	}
	// The zero gate stands aside.
	next := &blockingHandler{}
	if h := mustGate(t, GateConfig{}).Handler(next); h != http.Handler(next) {
		t.Error("a gate without a cap wraps its handler")
	}
}

// blockingHandler holds each request until the test opens it, and records
// the most it held at once.
type blockingHandler struct {
	open     chan struct{}
	mu       sync.Mutex
	cur, max int
}

func (h *blockingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.cur++
	h.max = max(h.max, h.cur)
	h.mu.Unlock()
	select {
	case <-h.open:
	case <-r.Context().Done():
	}
	h.mu.Lock()
	h.cur--
	h.mu.Unlock()
	io.WriteString(w, "ok")
}

func (h *blockingHandler) current() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cur
}

type result struct {
	status     int
	retryAfter string
	err        error
}

func get(c *http.Client, url string) result {
	resp, err := c.Get(url)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return result{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
}

// Over real sockets: two requests run, one waits and times out into a
// 503, one finds the queue full and gets its 503 at once; every 503 says
// when to retry, and the handler never runs more than two.
func TestGateHandler(t *testing.T) {
	g := mustGate(t, GateConfig{Name: "peer", MaxConcurrent: 2, MaxQueue: 1, QueueTimeout: 100 * time.Millisecond})
	h := &blockingHandler{open: make(chan struct{})}
	srv := httptest.NewServer(g.Handler(h))
	defer srv.Close()
	defer close(h.open) // before srv.Close: no handler left waiting
	c := srv.Client()

	running := make(chan result, 2)
	for range 2 {
		go func() { running <- get(c, srv.URL) }()
	}
	poll.Until(t, 10*time.Second, "two requests in the handler", func() bool { return h.current() == 2 && g.Stats().InFlight == 2 })
	waiting := make(chan result, 1)
	go func() { waiting <- get(c, srv.URL) }()
	poll.Until(t, 10*time.Second, "one waiting", func() bool { return g.Stats().Queued == 1 })
	if r := get(c, srv.URL); r.status != http.StatusServiceUnavailable || r.retryAfter != "1" {
		t.Errorf("queue full: %+v, want 503 with Retry-After: 1", r)
	}
	if r := <-waiting; r.status != http.StatusServiceUnavailable || r.retryAfter != "1" {
		t.Errorf("wait ran out: %+v, want 503 with Retry-After: 1", r)
	}
	if st := g.Stats(); st.RefusedFull != 1 || st.RefusedTimeout != 1 || st.InFlight != 2 || st.Queued != 0 {
		t.Errorf("stats %+v", st)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(g)
	got := gather(t, reg)
	for series, want := range map[string]float64{
		"meridian_limit_gate_inflight,gate=peer":                           2,
		"meridian_limit_gate_queued,gate=peer":                             0,
		"meridian_limit_gate_refused_total,gate=peer,reason=queue_full":    1,
		"meridian_limit_gate_refused_total,gate=peer,reason=queue_timeout": 1,
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v", series, got[series], want)
		}
	}
	h.open <- struct{}{}
	h.open <- struct{}{}
	for range 2 {
		if r := <-running; r.status != http.StatusOK {
			t.Errorf("admitted request: %+v", r)
		}
	}
	if st := g.Stats(); st.InFlight != 0 {
		t.Errorf("after the requests: %+v", st)
	}
}

// A flood of 50 with room to wait is served in full, two at a time.
func TestGateFlood(t *testing.T) {
	const n, limit = 50, 2
	g := mustGate(t, GateConfig{MaxConcurrent: limit, MaxQueue: n, QueueTimeout: time.Minute})
	h := &blockingHandler{open: make(chan struct{})}
	srv := httptest.NewServer(g.Handler(h))
	defer srv.Close()
	results := make(chan result, n)
	for range n {
		go func() { results <- get(srv.Client(), srv.URL) }()
	}
	poll.Until(t, 10*time.Second, "two in, the rest waiting", func() bool { return h.current() == limit && g.Stats().Queued == n-limit })
	close(h.open)
	for range n {
		if r := <-results; r.status != http.StatusOK {
			t.Errorf("%+v", r)
		}
	}
	if h.max > limit {
		t.Errorf("handler ran %d at once, cap %d", h.max, limit)
	}
}

// Waiters are admitted in the order they came; one that gives up leaves.
func TestGateFIFO(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := mustGate(t, GateConfig{MaxConcurrent: 1, MaxQueue: 10, QueueTimeout: time.Hour})
		ctx := context.Background()
		if err := g.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		var order []int
		var mu sync.Mutex
		cctx, cancel := context.WithCancel(ctx)
		errs := make(chan error, 1)
		for i := range 4 {
			c := ctx
			if i == 1 {
				c = cctx
			}
			go func() {
				if err := g.Acquire(c); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
			}()
			synctest.Wait()
		}
		cancel()
		synctest.Wait()
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Errorf("waiter that gave up: %v", err)
		}
		for range 4 {
			g.Release()
			synctest.Wait()
		}
		if fmt.Sprint(order) != "[0 2 3]" {
			t.Errorf("admitted in order %v, want [0 2 3]", order)
		}
		// A wait that runs out, in fake time.
		g.Acquire(ctx)
		start := time.Now()
		if err := g.Acquire(ctx); !errors.Is(err, ErrOverloaded) || time.Since(start) != time.Hour {
			t.Errorf("timed out wait: %v after %v", err, time.Since(start))
		}
	})
}
