package origin

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
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridiancdn/meridian/internal/poll"
)

// gatedOrigin is an origin server on a real 127.0.0.1 socket that sends a
// response's headers at once and holds its body until the test opens the
// gate. It records the most requests it ever had at once and the
// connections they came on.
type gatedOrigin struct {
	srv  *httptest.Server
	url  string
	gate chan struct{}
	once sync.Once

	mu    sync.Mutex
	cur   int             // requests in the handler now
	max   int             // the most at once
	total int             // requests seen
	conns map[string]bool // client addresses seen
}

func startGated(t *testing.T, h2 bool) *gatedOrigin {
	t.Helper()
	g := &gatedOrigin{gate: make(chan struct{}), conns: map[string]bool{}}
	g.srv = httptest.NewUnstartedServer(http.HandlerFunc(g.serve))
	if h2 {
		g.srv.EnableHTTP2 = true
		g.srv.StartTLS()
	} else {
		g.srv.Start()
	}
	g.url = g.srv.URL
	t.Cleanup(g.srv.Close)
	t.Cleanup(g.open) // runs first: no handler is left waiting
	return g
}

func (g *gatedOrigin) serve(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	g.cur++
	g.total++
	g.max = max(g.max, g.cur)
	g.conns[r.RemoteAddr] = true
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.cur--
		g.mu.Unlock()
	}()
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	select {
	case <-g.gate:
		io.WriteString(w, "body of "+r.URL.Path)
	case <-r.Context().Done():
	}
}

// open lets every held and future response finish.
func (g *gatedOrigin) open() { g.once.Do(func() { close(g.gate) }) }

// stats returns the requests in the handler now, the most at once, the
// total and the number of connections seen.
func (g *gatedOrigin) stats() (cur, maxSeen, total, conns int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cur, g.max, g.total, len(g.conns)
}

func (g *gatedOrigin) tlsConfig() *PoolConfig {
	return &PoolConfig{TLSClientConfig: g.srv.Client().Transport.(*http.Transport).TLSClientConfig}
}

// flood sends n concurrent GETs of distinct paths through p and returns a
// function that waits for them all and returns their errors (nil for each
// success whose body came whole).
func flood(p *Pool, n int) (wait func() []error) {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			path := fmt.Sprintf("/flood/%d", i)
			_, body, err := fetch(context.Background(), p, "GET", path, nil)
			if err == nil && string(body) != "body of "+path {
				err = fmt.Errorf("%s: body %q", path, body)
			}
			errs[i] = err
		})
	}
	return func() []error { wg.Wait(); return errs }
}

func noErrors(t *testing.T, errs []error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// idle checks that every slot of every server was given back.
func idle(t *testing.T, p *Pool) {
	t.Helper()
	for _, s := range p.Servers() {
		if s.InFlight != 0 || s.Queued != 0 {
			t.Errorf("%s: %d in flight, %d queued after the requests ended", s.URL, s.InFlight, s.Queued)
		}
	}
}

// A slow origin flooded with 100 distinct requests sees no more at once
// than max_inflight; the rest wait their turn and are all served.
func TestPoolMaxInflight(t *testing.T) {
	const n, limit = 100, 4
	g := startGated(t, false)
	p := newPool(t, PoolConfig{Servers: []ServerConfig{{URL: g.url}},
		MaxInflight: limit, MaxConns: -1, MaxQueue: n, QueueTimeout: time.Minute})
	wait := flood(p, n)
	poll.Until(t, 10*time.Second, "4 at the origin and 96 queued", func() bool {
		cur, _, _, _ := g.stats()
		st := p.Servers()[0]
		return cur == limit && st.InFlight == limit && st.Queued == n-limit
	})
	g.open()
	noErrors(t, wait())
	_, maxSeen, total, _ := g.stats()
	t.Logf("origin saw at most %d requests at once (cap %d), %d in all", maxSeen, limit, total)
	if maxSeen > limit || total != n {
		t.Errorf("origin saw %d at once and %d in all, want at most %d and %d", maxSeen, total, limit, n)
	}
	idle(t, p)
}

// Over HTTP/1.1 a request holds its connection, so max_conns caps the
// requests in flight too, and they wait in the pool's queue (bounded by
// queue_timeout), not inside the transport.
func TestPoolMaxConnsHTTP1(t *testing.T) {
	bothClients(t, func(t *testing.T, std bool) {
		const n, conns = 50, 3
		g := startGated(t, false)
		p := newPool(t, PoolConfig{stdTransport: std, Servers: []ServerConfig{{URL: g.url}}, MaxConns: conns, QueueTimeout: time.Minute})
		if st := p.Servers()[0]; st.MaxInflight != conns {
			t.Errorf("HTTP/1.1 server's cap %d, want max_conns %d", st.MaxInflight, conns)
		}
		wait := flood(p, n)
		poll.Until(t, 10*time.Second, "3 at the origin and the rest queued in the pool", func() bool {
			cur, _, _, _ := g.stats()
			return cur == conns && p.Servers()[0].Queued == n-conns
		})
		g.open()
		noErrors(t, wait())
		_, maxSeen, _, seenConns := g.stats()
		if maxSeen > conns || seenConns > conns {
			t.Errorf("origin saw %d requests at once on %d connections, want at most %d", maxSeen, seenConns, conns)
		}
		idle(t, p)
	})
}

// Over HTTP/2 one connection carries many requests: max_conns caps the
// connections, max_inflight the streams, once the server has answered over
// HTTP/2.
func TestPoolCapsHTTP2(t *testing.T) {
	const n, conns, limit = 60, 1, 8
	g := startGated(t, true)
	cfg := *g.tlsConfig()
	cfg.Servers = []ServerConfig{{URL: g.url}}
	cfg.MaxConns, cfg.MaxInflight, cfg.QueueTimeout = conns, limit, time.Minute
	p := newPool(t, cfg)
	wait := flood(p, n)
	poll.Until(t, 10*time.Second, "8 streams at the origin and the rest queued", func() bool {
		cur, _, _, _ := g.stats()
		st := p.Servers()[0]
		return cur == limit && st.Queued == n-limit && st.MaxInflight == limit
	})
	g.open()
	noErrors(t, wait())
	_, maxSeen, total, seenConns := g.stats()
	if maxSeen > limit || seenConns != conns || total != n {
		t.Errorf("origin saw %d at once on %d connections, %d in all; want at most %d on %d, %d",
			maxSeen, seenConns, total, limit, conns, n)
	}
	idle(t, p)
}

// A request that finds no slot within queue_timeout fails with
// KindOverloaded, and never reaches the origin; a full queue refuses at
// once. Both are counted.
func TestPoolQueueTimeoutAndFull(t *testing.T) {
	bothClients(t, func(t *testing.T, std bool) {
		g := startGated(t, false)
		p := newPool(t, PoolConfig{stdTransport: std, Name: "caps", Servers: []ServerConfig{{URL: g.url}},
			MaxInflight: 1, MaxQueue: 2, QueueTimeout: 100 * time.Millisecond})
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(p)
		ctx := context.Background()

		held, err := p.RoundTrip(mustRequest(t, ctx, "/held"))
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = fetch(ctx, p, "GET", "/waits", nil)
		var e *Error
		if !errors.As(err, &e) || e.Kind != KindOverloaded || !IsOverloaded(err) || IsTimeout(err) ||
			e.Server != g.url || e.Tries != 1 || !strings.Contains(err.Error(), "queue_timeout") {
			t.Fatalf("queued past queue_timeout: %v, want an overloaded error naming the server and queue_timeout", err)
		}

		// Two wait (with a long enough budget), the third is refused at once.
		p2 := newPool(t, PoolConfig{stdTransport: std, Name: "caps2", Servers: []ServerConfig{{URL: g.url}},
			MaxInflight: 1, MaxQueue: 2, QueueTimeout: time.Minute})
		reg.MustRegister(p2)
		held2, err := p2.RoundTrip(mustRequest(t, ctx, "/held2"))
		if err != nil {
			t.Fatal(err)
		}
		wait := flood(p2, 2)
		poll.Until(t, 10*time.Second, "two queued", func() bool { return p2.Servers()[0].Queued == 2 })
		if _, _, err := fetch(ctx, p2, "GET", "/third", nil); !IsOverloaded(err) || !strings.Contains(err.Error(), "max_queue") {
			t.Errorf("third waiter: %v, want overloaded (queue full)", err)
		}
		// A waiter whose caller gives up leaves the queue.
		cctx, cancel := context.WithCancel(ctx)
		p3 := newPool(t, PoolConfig{stdTransport: std, Servers: []ServerConfig{{URL: g.url}}, MaxInflight: 1, QueueTimeout: time.Minute})
		held3, err := p3.RoundTrip(mustRequest(t, ctx, "/held3"))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			poll.Until(t, 10*time.Second, "queued", func() bool { return p3.Servers()[0].Queued == 1 })
			cancel()
		}()
		if _, _, err := fetch(cctx, p3, "GET", "/gives-up", nil); kindOf(err) != KindCanceled {
			t.Errorf("caller gave up in the queue: %v, want canceled", err)
		}
		if st := p3.Servers()[0]; st.Queued != 0 || st.InFlight != 1 {
			t.Errorf("after a waiter left: %+v", st)
		}

		if _, _, total, _ := g.stats(); total != 3 {
			t.Errorf("origin saw %d requests, want the 3 held ones only", total)
		}
		g.open()
		for _, resp := range []*http.Response{held, held2, held3} {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			resp.Body.Close() // twice: the slot goes back once
		}
		noErrors(t, wait())
		idle(t, p)
		idle(t, p2)
		idle(t, p3)

		got := gather(t, reg)
		for key, want := range map[string]float64{
			"meridian_origin_overloaded_total,pool=caps,reason=queue_timeout,server=" + g.url: 1,
			"meridian_origin_overloaded_total,pool=caps2,reason=queue_full,server=" + g.url:   1,
			"meridian_origin_server_inflight,pool=caps,server=" + g.url:                       0,
			"meridian_origin_server_queued,pool=caps,server=" + g.url:                         0,
			"meridian_origin_server_inflight_limit,pool=caps,server=" + g.url:                 1,
			"meridian_origin_requests_total,code=200,pool=caps,server=" + g.url:               1,
		} {
			if got[key] != want {
				t.Errorf("%s = %v, want %v", key, got[key], want)
			}
		}
	})
}

// The queue wait is bounded by the pool's timeout and the caller's
// deadline too, whichever ends first.
func TestPoolQueueWaitBounds(t *testing.T) {
	g := startGated(t, false)
	p := newPool(t, PoolConfig{Servers: []ServerConfig{{URL: g.url}},
		MaxInflight: 1, QueueTimeout: time.Minute, Timeout: 100 * time.Millisecond})
	ctx := context.Background()
	held, err := p.RoundTrip(mustRequest(t, ctx, "/held"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Body.Close()
	_, _, err = fetch(ctx, p, "GET", "/w", nil)
	if !IsOverloaded(err) || !strings.Contains(err.Error(), "within timeout") {
		t.Errorf("pool timeout while queued: %v, want overloaded, naming the timeout", err)
	}
	// Once the pool's timeout has passed in a queue, no other server is
	// tried: there is no time left for an answer.
	free := startGated(t, false)
	free.open()
	pb := newPool(t, PoolConfig{Servers: []ServerConfig{{URL: g.url, Weight: 1000}, {URL: free.url}},
		MaxInflight: 1, QueueTimeout: time.Minute, Timeout: 100 * time.Millisecond})
	heldB, err := pb.RoundTrip(mustRequest(t, ctx, "/held"))
	if err != nil {
		t.Fatal(err)
	}
	defer heldB.Body.Close()
	if _, _, err := fetch(ctx, pb, "GET", "/w", nil); !IsOverloaded(err) {
		t.Errorf("pool timeout while queued, another server free: %v, want overloaded", err)
	}
	if _, _, total, _ := free.stats(); total != 0 {
		t.Errorf("the other server was tried after the timeout (%d requests)", total)
	}
	dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	p2 := newPool(t, PoolConfig{Servers: []ServerConfig{{URL: g.url}}, MaxInflight: 1, QueueTimeout: time.Minute})
	held2, err := p2.RoundTrip(mustRequest(t, ctx, "/held2"))
	if err != nil {
		t.Fatal(err)
	}
	defer held2.Body.Close()
	if _, _, err := fetch(dctx, p2, "GET", "/w", nil); !IsTimeout(err) {
		t.Errorf("caller deadline while queued: %v, want timeout", err)
	}
}

// A retry on another server takes a slot there: failing tries on the
// first server cannot pile requests onto the second beyond its cap.
func TestPoolCapsHoldAcrossRetries(t *testing.T) {
	const n, limit = 20, 2
	a := startOrigin(t)
	a.demo.SetFailing("reset")
	b := startGated(t, false)
	p := newPool(t, PoolConfig{
		Servers:     []ServerConfig{{URL: a.url}, {URL: b.url, Backup: true}},
		Outlier:     OutlierConfig{ConsecutiveErrors: -1},
		MaxInflight: limit, QueueTimeout: time.Minute,
	})
	wait := flood(p, n)
	poll.Until(t, 10*time.Second, "2 at the backup, the rest queued for it", func() bool {
		cur, _, _, _ := b.stats()
		return cur == limit && p.Servers()[1].Queued == n-limit && a.demo.Requests() == n
	})
	b.open()
	noErrors(t, wait())
	if _, maxSeen, total, _ := b.stats(); maxSeen > limit || total != n {
		t.Errorf("backup saw %d at once, %d in all; want at most %d, %d", maxSeen, total, limit, n)
	}
	idle(t, p)
}

// A server whose queue is full passes the request on as a retry would,
// to a server with a free slot; when every server is full, the request
// fails overloaded after trying each.
func TestPoolOverloadMovesOn(t *testing.T) {
	a, b := startGated(t, false), startGated(t, false)
	p := newPool(t, PoolConfig{
		Servers:     []ServerConfig{{URL: a.url, Weight: 1000}, {URL: b.url}},
		MaxInflight: 1, MaxQueue: -1,
	})
	ctx := context.Background()
	heldA, err := p.RoundTrip(mustRequest(t, ctx, "/a"))
	if err != nil {
		t.Fatal(err)
	}
	defer heldA.Body.Close()
	heldB, err := p.RoundTrip(mustRequest(t, ctx, "/b")) // a is full: b
	if err != nil {
		t.Fatal(err)
	}
	defer heldB.Body.Close()
	if _, _, ta, _ := a.stats(); ta != 1 {
		t.Errorf("a saw %d requests, want 1", ta)
	}
	if _, _, tb, _ := b.stats(); tb != 1 {
		t.Errorf("b saw %d requests, want the one a had no room for", tb)
	}
	_, _, err = fetch(ctx, p, "GET", "/c", nil)
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindOverloaded || e.Tries != 2 {
		t.Errorf("every server full: %v, want overloaded after 2 tries", err)
	}
	// The pool's own cap says nothing about the origin: no ejection, no
	// open circuit.
	for _, s := range p.Servers() {
		if !s.Available || s.ConsecutiveFailures != 0 {
			t.Errorf("%s marked after overload: %+v", s.URL, s)
		}
	}
}

// A try that fails, a body-less answer and a POST refused before it was
// sent all give their slots back; the refused POST's body is closed.
func TestPoolSlotsComeBack(t *testing.T) {
	bothClients(t, func(t *testing.T, std bool) {
		a := startOrigin(t)
		p := newPool(t, PoolConfig{stdTransport: std, Servers: servers(a), MaxInflight: 1, QueueTimeout: 10 * time.Millisecond})
		ctx := context.Background()
		a.demo.SetFailing("reset")
		for range 3 {
			if _, _, err := fetch(ctx, p, "GET", "/r", nil); kindOf(err) != KindReset {
				t.Fatalf("reset: %v", err)
			}
		}
		a.demo.SetFailing("")
		for range 3 {
			mustGet(t, p, "/empty?size=0")
			if resp, err := p.RoundTrip(mustRequest(t, ctx, "/h")); err != nil {
				t.Fatal(err)
			} else {
				resp.Body.Close()
			}
		}
		idle(t, p)

		held, err := p.RoundTrip(mustRequest(t, ctx, "/held?size=10"))
		if err != nil {
			t.Fatal(err)
		}
		body := &closeRecorder{Reader: strings.NewReader("x")}
		req, _ := http.NewRequest("POST", "http://site.example/p", body)
		if _, err := p.RoundTrip(req); !IsOverloaded(err) || !body.closed {
			t.Errorf("refused POST: %v, body closed %v", err, body.closed)
		}
		held.Body.Close()
		idle(t, p)
	})
}

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func mustRequest(t *testing.T, ctx context.Context, target string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://site.example"+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// gather returns every series of reg as "name,label=value,..." -> value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.Counter != nil:
				got[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				got[key] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				got[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return got
}
