package origin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridiancdn/meridian/internal/fakeclock"
	"github.com/meridiancdn/meridian/internal/poll"
)

// testOrigin is a demo origin on a real 127.0.0.1 socket that a test can
// kill and restart on the same address.
type testOrigin struct {
	t    *testing.T
	demo *Demo
	addr string
	url  string

	mu  sync.Mutex
	srv *http.Server
}

func startOrigin(t *testing.T) *testOrigin {
	t.Helper()
	o := &testOrigin{t: t, demo: NewDemo(nil)}
	o.listen("127.0.0.1:0")
	t.Cleanup(func() {
		o.demo.Close()
		o.kill()
	})
	return o
}

func (o *testOrigin) listen(addr string) {
	o.t.Helper()
	var ln net.Listener
	// The old socket may take a moment to let go.
	poll.Until(o.t, time.Second, "listening on "+addr+" again", func() bool {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err == nil
	})
	o.addr = ln.Addr().String()
	o.url = "http://" + o.addr
	srv := &http.Server{Handler: o.demo}
	o.mu.Lock()
	o.srv = srv
	o.mu.Unlock()
	go srv.Serve(ln)
}

// kill closes the listener and every connection: the server is gone.
func (o *testOrigin) kill() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.srv != nil {
		o.srv.Close()
		o.srv = nil
	}
}

// restart serves again on the same address.
func (o *testOrigin) restart() { o.listen(o.addr) }

func newPool(t *testing.T, cfg PoolConfig) *Pool {
	t.Helper()
	p, err := NewPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// bothClients runs f as two subtests: with the lean HTTP/1.1 client where
// the pool would use it (std false), and with http.Transport alone.
func bothClients(t *testing.T, f func(t *testing.T, std bool)) {
	for _, std := range []bool{false, true} {
		name := "lean"
		if std {
			name = "std"
		}
		t.Run(name, func(t *testing.T) { f(t, std) })
	}
}

func servers(os ...*testOrigin) []ServerConfig {
	var out []ServerConfig
	for _, o := range os {
		out = append(out, ServerConfig{URL: o.url})
	}
	return out
}

// fetch sends method target through the pool and reads the whole body.
func fetch(ctx context.Context, p *Pool, method, target string, body io.Reader) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://site.example"+target, body)
	if err != nil {
		return nil, nil, err
	}
	resp, err := p.RoundTrip(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func mustGet(t *testing.T, p *Pool, target string) (*http.Response, []byte) {
	t.Helper()
	resp, b, err := fetch(context.Background(), p, "GET", target, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	return resp, b
}

func kindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

func TestPoolPassThrough(t *testing.T) {
	bothClients(t, func(t *testing.T, std bool) {
		o := startOrigin(t)
		p := newPool(t, PoolConfig{stdTransport: std, Servers: servers(o)})
		const target = "/a%2Fb/c%20d!'()*;x=1/%7Euser?q=%zz&b=1+2;c&&d=%2F"
		resp, b := mustGet(t, p, target+"&echo=1")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		var e Echo
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		if got := e.RawPath; got != "/a%2Fb/c%20d!'()*;x=1/%7Euser" {
			t.Errorf("raw path %q", got)
		}
		if got := e.RawQuery; got != "q=%zz&b=1+2;c&&d=%2F&echo=1" {
			t.Errorf("raw query %q", got)
		}
		if e.Host != "site.example" {
			t.Errorf("Host %q, want the client's", e.Host)
		}
		if e.Header.Get("Accept-Encoding") != "" {
			t.Errorf("transport added Accept-Encoding %q", e.Header.Get("Accept-Encoding"))
		}

		// A server may override the Host header.
		p2 := newPool(t, PoolConfig{stdTransport: std, Servers: []ServerConfig{{URL: o.url, Host: "origin.internal"}}})
		_, b = mustGet(t, p2, "/x?echo=1")
		json.Unmarshal(b, &e)
		if e.Host != "origin.internal" {
			t.Errorf("Host %q, want the override", e.Host)
		}

		// A request with only a path (as an edge handler receives it) gets
		// the server's address as Host.
		req := httptest.NewRequest("GET", "/y?echo=1", nil)
		req.Host = ""
		req.URL.Host = ""
		resp, err := p.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		json.Unmarshal(b, &e)
		if e.Host != o.addr || e.Path != "/y" {
			t.Errorf("path-only request: host %q path %q", e.Host, e.Path)
		}

		// POST bodies arrive whole.
		_, b, err = fetch(context.Background(), p, "POST", "/form", strings.NewReader("hello"))
		if err != nil || json.Unmarshal(b, &e) != nil || e.Method != "POST" || e.BodyLength != 5 {
			t.Errorf("POST: %v %s", err, b)
		}
	})
}

func TestPoolKillUnderLoad(t *testing.T) {
	bothClients(t, func(t *testing.T, std bool) {
		a, b := startOrigin(t), startOrigin(t)
		p := newPool(t, PoolConfig{stdTransport: std,
			Servers: servers(a, b),
			Health:  HealthConfig{Enabled: true, Interval: 20 * time.Millisecond, Timeout: 500 * time.Millisecond},
			Outlier: OutlierConfig{Ejection: 50 * time.Millisecond},
		})
		want := DemoBody("/obj", 2000)
		const workers, perWorker, killAfter = 4, 100, 80
		var done, failed atomic.Int64
		var firstErr atomic.Value
		var wg sync.WaitGroup
		killed := make(chan struct{})
		for range workers {
			wg.Go(func() {
				for range perWorker {
					_, body, err := fetch(context.Background(), p, "GET", "/obj?size=2000", nil)
					if err == nil && !bytes.Equal(body, want) {
						err = errors.New("wrong body")
					}
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err)
					}
					if done.Add(1) == killAfter {
						a.kill()
						close(killed)
					}
				}
			})
		}
		wg.Wait()
		<-killed
		if n := failed.Load(); n > 0 {
			t.Fatalf("%d of %d requests failed, first: %v", n, workers*perWorker, firstErr.Load())
		}
		if a.demo.Requests() == 0 || b.demo.Requests() == 0 {
			t.Errorf("requests a=%d b=%d: both should have served", a.demo.Requests(), b.demo.Requests())
		}
		poll.Until(t, 10*time.Second, "the killed server is marked down", func() bool { return !p.Servers()[0].Healthy })

		a.restart()
		poll.Until(t, 10*time.Second, "the restarted server is back up", func() bool { return p.Servers()[0].Available })
		before := a.demo.Requests()
		for range 10 {
			mustGet(t, p, "/obj?size=2000")
		}
		if a.demo.Requests() == before {
			t.Error("restarted server gets no requests")
		}
	})
}

func TestPoolHealthFallRise(t *testing.T) {
	a, b := startOrigin(t), startOrigin(t)
	p := newPool(t, PoolConfig{
		Servers: servers(a, b),
		// A long interval: this test runs the rounds itself with Check.
		Health: HealthConfig{Enabled: true, Interval: time.Hour, Fall: 3, Rise: 2},
	})
	ctx := context.Background()
	check := func(n int) {
		for range n {
			p.Check(ctx)
		}
	}
	healthy := func() bool { return p.Servers()[0].Healthy }

	a.demo.SetFailing("500")
	check(2)
	if !healthy() {
		t.Fatal("down after 2 failed checks, fall is 3")
	}
	check(1)
	if healthy() {
		t.Fatal("still up after 3 failed checks")
	}
	a.demo.Reset()
	for range 20 {
		mustGet(t, p, "/x")
	}
	if n := a.demo.Requests(); n != 0 {
		t.Errorf("down server got %d requests", n)
	}
	a.demo.SetFailing("")
	check(1)
	if healthy() {
		t.Fatal("up after 1 good check, rise is 2")
	}
	check(1)
	if !healthy() {
		t.Fatal("still down after 2 good checks")
	}

	// Killed: refused probes take it down; restarted on the same address,
	// it comes back.
	a.kill()
	check(3)
	if healthy() {
		t.Fatal("killed server still up after 3 checks")
	}
	a.restart()
	check(2)
	if !healthy() {
		t.Fatal("restarted server still down after 2 checks")
	}

	// A hanging server fails by probe timeout.
	p2 := newPool(t, PoolConfig{
		Servers: servers(a),
		Health:  HealthConfig{Enabled: true, Interval: time.Hour, Timeout: 50 * time.Millisecond, Fall: 1},
	})
	a.demo.SetFailing("hang")
	p2.Check(ctx)
	if p2.Servers()[0].Healthy {
		t.Error("hanging server is healthy")
	}
	a.demo.SetFailing("")

	// Check is a no-op when checks are off.
	p3 := newPool(t, PoolConfig{Servers: servers(a)})
	a.kill()
	p3.Check(ctx)
	if !p3.Servers()[0].Healthy {
		t.Error("Check ran with health checks off")
	}
}

func TestPoolHealthExpectedStatusAndHost(t *testing.T) {
	a := startOrigin(t)
	p := newPool(t, PoolConfig{
		Servers: []ServerConfig{{URL: a.url, Host: "origin.internal"}},
		Health:  HealthConfig{Enabled: true, Interval: time.Hour, Path: "/probe?status=204&echo=1", ExpectedStatus: 204, Fall: 1},
	})
	p.Check(context.Background())
	if !p.Servers()[0].Healthy {
		t.Fatal("204 with expected_status 204 is unhealthy")
	}
	if n := a.demo.RequestsFor("/probe?status=204&echo=1"); n != 1 {
		t.Errorf("probe requests %d, want 1 (stats %+v)", n, a.demo.Stats())
	}
}

func TestPoolWeights(t *testing.T) {
	a, b := startOrigin(t), startOrigin(t)
	p := newPool(t, PoolConfig{Servers: []ServerConfig{{URL: a.url, Weight: 3}, {URL: b.url, Weight: 1}}})
	for range 400 {
		mustGet(t, p, "/w?size=10")
	}
	na, nb := a.demo.Requests(), b.demo.Requests()
	if na+nb != 400 || na < 280 || na > 320 {
		t.Errorf("weights 3:1 gave %d:%d", na, nb)
	}
}

func TestPoolSmoothWeights(t *testing.T) {
	// nginx's example: weights 5,1,1 give a a b a c a a, never five a in a row.
	p := &Pool{now: time.Now}
	for i, w := range []int{5, 1, 1} {
		p.servers = append(p.servers, &server{idx: i, cfg: ServerConfig{Weight: w}, healthy: true, name: string(rune('a' + i))})
	}
	var got strings.Builder
	for range 7 {
		got.WriteString(p.pick(make([]bool, 3)).name)
	}
	if got.String() != "aabacaa" {
		t.Errorf("sequence %s, want aabacaa", got.String())
	}
}

func TestPoolBackup(t *testing.T) {
	a, b := startOrigin(t), startOrigin(t)
	p := newPool(t, PoolConfig{
		Servers: []ServerConfig{{URL: a.url}, {URL: b.url, Backup: true}},
		Health:  HealthConfig{Enabled: true, Interval: time.Hour, Fall: 1, Rise: 1},
	})
	for range 30 {
		mustGet(t, p, "/b")
	}
	if n := b.demo.Requests(); n != 0 {
		t.Fatalf("backup got %d requests while the primary was up", n)
	}
	a.demo.SetFailing("500")
	p.Check(context.Background())
	for range 30 {
		resp, _ := mustGet(t, p, "/b")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d with the primary down", resp.StatusCode)
		}
	}
	if n := b.demo.Requests(); n != 30 {
		t.Errorf("backup got %d of 30 requests with the primary down", n)
	}

	// Killed but not yet marked down: each request fails over to the backup.
	a.demo.SetFailing("")
	p.Check(context.Background())
	a.kill()
	b.demo.Reset()
	for range 10 {
		mustGet(t, p, "/b")
	}
	if n := b.demo.Requests(); n != 10 {
		t.Errorf("backup got %d of 10 requests with the primary dead", n)
	}
}

func TestPoolFailOpen(t *testing.T) {
	a := startOrigin(t)
	p := newPool(t, PoolConfig{
		Servers: servers(a),
		Health:  HealthConfig{Enabled: true, Interval: time.Hour, Fall: 1},
	})
	a.demo.SetFailing("500")
	p.Check(context.Background())
	a.demo.SetFailing("")
	if p.Servers()[0].Healthy {
		t.Fatal("not down")
	}
	// Every server down: still try rather than refuse.
	if resp, _ := mustGet(t, p, "/f"); resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
}

func TestPoolRetryRules(t *testing.T) {
	bothClients(t, func(t *testing.T, std bool) {
		a, b := startOrigin(t), startOrigin(t)
		// b is a backup, so every request tries a first.
		p := newPool(t, PoolConfig{stdTransport: std, Servers: []ServerConfig{{URL: a.url}, {URL: b.url, Backup: true}},
			Outlier: OutlierConfig{ConsecutiveErrors: -1}})
		ctx := context.Background()
		a.demo.SetFailing("reset")

		_, _, err := fetch(ctx, p, "POST", "/p", strings.NewReader("body"))
		if kindOf(err) != KindReset {
			t.Errorf("POST to a resetting server: %v, want a reset error", err)
		}
		if n := b.demo.Requests(); n != 0 {
			t.Errorf("POST retried on another server after it was sent (%d)", n)
		}

		if _, _, err := fetch(ctx, p, "GET", "/g", nil); err != nil {
			t.Errorf("GET not retried: %v", err)
		}
		req, _ := http.NewRequest("POST", "http://site.example/k", strings.NewReader("body"))
		req.Header.Set("Idempotency-Key", "abc")
		if resp, err := p.RoundTrip(req); err != nil {
			t.Errorf("POST with Idempotency-Key not retried: %v", err)
		} else {
			resp.Body.Close()
		}
		if n := b.demo.Requests(); n != 2 {
			t.Errorf("backup served %d, want 2 (GET and keyed POST)", n)
		}

		// Refused: the request was never sent, so even a POST is retried,
		// with its body replayed.
		a.kill()
		_, body, err := fetch(ctx, p, "POST", "/p", strings.NewReader("hello"))
		var e Echo
		if err != nil || json.Unmarshal(body, &e) != nil || e.BodyLength != 5 {
			t.Fatalf("POST to a refusing server: %v %s", err, body)
		}
		// ... but not when the body cannot be replayed.
		req, _ = http.NewRequest("POST", "http://site.example/p", io.NopCloser(strings.NewReader("x")))
		if _, err := p.RoundTrip(req); kindOf(err) != KindRefused {
			t.Errorf("POST with a one-shot body: %v, want refused", err)
		}
	})
}

func TestPoolTryTimeout(t *testing.T) {
	bothClients(t, func(t *testing.T, std bool) {
		a, b := startOrigin(t), startOrigin(t)
		// The try timeout must be long enough for the good server to answer on
		// a loaded machine; the test waits for it once.
		p := newPool(t, PoolConfig{stdTransport: std, Servers: servers(a, b), TryTimeout: time.Second})
		a.demo.SetFailing("hang")
		resp, body := mustGet(t, p, "/t?size=10")
		if resp.StatusCode != 200 || len(body) != 10 {
			t.Fatalf("status %d, %d bytes", resp.StatusCode, len(body))
		}
		if a.demo.Requests() != 1 || b.demo.Requests() != 1 {
			t.Errorf("a=%d b=%d, want the hanging a tried once, then b", a.demo.Requests(), b.demo.Requests())
		}
		// A POST that timed out after it was sent is not retried.
		p2 := newPool(t, PoolConfig{stdTransport: std, Servers: servers(a, b), TryTimeout: 200 * time.Millisecond})
		_, _, err := fetch(context.Background(), p2, "POST", "/t", strings.NewReader("x"))
		if !IsTimeout(err) {
			t.Errorf("POST to hanging server: %v, want timeout", err)
		}
		if b.demo.Requests() != 1 {
			t.Errorf("POST retried after a timeout: b=%d", b.demo.Requests())
		}
	})
}

// try_timeout is there to fail over: a try that no other server could
// take over (one server, retries spent, a request that is not retried)
// waits for its headers as long as timeout allows. Before, a site with
// one origin and timeout: 60s answered 504 after the pool's default
// try_timeout, 10 s, for an origin that takes 20 s.
func TestPoolLastTryWaitsForTimeoutNotTryTimeout(t *testing.T) {
	bothClients(t, func(t *testing.T, std bool) {
		a, b := startOrigin(t), startOrigin(t)
		const slow = "/t?size=10&delay=600ms"
		for _, tc := range []struct {
			name string
			cfg  PoolConfig
		}{
			{"one server", PoolConfig{Servers: servers(a)}},
			{"retries spent", PoolConfig{Servers: servers(a, b), Retries: -1}},
		} {
			tc.cfg.stdTransport, tc.cfg.TryTimeout, tc.cfg.Timeout = std, 100*time.Millisecond, 20*time.Second
			p := newPool(t, tc.cfg)
			resp, body, err := fetch(context.Background(), p, "GET", slow, nil)
			if err != nil || resp.StatusCode != 200 || len(body) != 10 {
				t.Fatalf("%s: %v; want the answer that came within timeout", tc.name, err)
			}
		}
		// A POST is not retried once sent: its one try waits too.
		p := newPool(t, PoolConfig{stdTransport: std, Servers: servers(a, b), TryTimeout: 100 * time.Millisecond, Timeout: 20 * time.Second})
		if _, _, err := fetch(context.Background(), p, "POST", slow, strings.NewReader("x")); err != nil {
			t.Fatalf("POST: %v; want the answer that came within timeout", err)
		}
		// With another server to take over, the try is still cut.
		before := b.demo.Requests()
		p = newPool(t, PoolConfig{stdTransport: std, Servers: servers(a, b), TryTimeout: 100 * time.Millisecond, Timeout: 20 * time.Second})
		a.demo.SetFailing("hang")
		defer a.demo.SetFailing("")
		for range 2 { // the first try may go to either
			if resp, _ := mustGet(t, p, "/t?size=10"); resp.StatusCode != 200 {
				t.Fatalf("failover: status %d", resp.StatusCode)
			}
		}
		if b.demo.Requests()-before != 2 {
			t.Errorf("b answered %d of 2, want both (a hangs, its try cut by try_timeout)", b.demo.Requests()-before)
		}
	})
}

func TestPoolOverallTimeout(t *testing.T) {
	bothClients(t, func(t *testing.T, std bool) {
		a, b := startOrigin(t), startOrigin(t)
		a.demo.SetFailing("hang")
		b.demo.SetFailing("hang")
		p := newPool(t, PoolConfig{stdTransport: std, Servers: servers(a, b), Timeout: 200 * time.Millisecond})
		_, _, err := fetch(context.Background(), p, "GET", "/o", nil)
		if !IsTimeout(err) {
			t.Fatalf("error %v, want timeout", err)
		}
		if !strings.Contains(err.Error(), "within timeout") {
			t.Errorf("error %q does not say which timeout", err)
		}

		// A body that stalls fails after read_timeout...
		b.demo.SetFailing("")
		p2 := newPool(t, PoolConfig{stdTransport: std, Servers: servers(b), Timeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond})
		_, _, err = fetch(context.Background(), p2, "GET", "/o?size=100&bodydelay=1m", nil)
		if !IsTimeout(err) || !strings.Contains(err.Error(), "read_timeout") {
			t.Errorf("stalled body: %v, want a read_timeout timeout", err)
		}

		// The caller's deadline and cancellation.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, _, err := fetch(ctx, p2, "GET", "/o?fail=hang", nil); !IsTimeout(err) {
			t.Errorf("caller deadline: %v, want timeout", err)
		}
		ctx, cancel = context.WithCancel(context.Background())
		go func() {
			poll.Until(t, 10*time.Second, "request arrives", func() bool { return b.demo.RequestsFor("/o?fail=hang") >= 2 })
			cancel()
		}()
		if _, _, err := fetch(ctx, p2, "GET", "/o?fail=hang", nil); kindOf(err) != KindCanceled {
			t.Errorf("caller cancel: %v, want canceled", err)
		}
	})
}

// A body that keeps coming is never cut off, however long it takes in
// all: timeout bounds the headers, read_timeout each wait for more, and
// the time the caller spends between reads counts for neither.
func TestPoolLongBodyIsNotCutOff(t *testing.T) {
	bothClients(t, func(t *testing.T, std bool) {
		const chunks, gap = 12, 50 * time.Millisecond // 600 ms in all
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i < chunks; i++ {
				io.WriteString(w, "0123456789")
				w.(http.Flusher).Flush()
				time.Sleep(gap)
			}
		}))
		defer srv.Close()
		p := newPool(t, PoolConfig{stdTransport: std, Servers: []ServerConfig{{URL: srv.URL}}, Timeout: 200 * time.Millisecond, ReadTimeout: 700 * time.Millisecond})
		req, _ := http.NewRequest("GET", "http://site.example/long", nil)
		resp, err := p.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		buf := make([]byte, 10)
		n := 0
		for {
			m, err := io.ReadFull(resp.Body, buf)
			n += m
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("after %d bytes: %v", n, err)
			}
			if n == 30 {
				time.Sleep(time.Second) // a client slower than read_timeout, once
			}
		}
		if n != chunks*10 {
			t.Fatalf("%d bytes, want %d", n, chunks*10)
		}
	})
}

func TestPoolBrokenResponses(t *testing.T) {
	bothClients(t, func(t *testing.T, std bool) {
		a := startOrigin(t)
		p := newPool(t, PoolConfig{stdTransport: std, Servers: servers(a)})
		ctx := context.Background()

		resp, body, err := fetch(ctx, p, "GET", "/x?fail=truncate&size=1000", nil)
		if kindOf(err) != KindTruncated || resp.ContentLength != 1000 || len(body) != 500 {
			t.Errorf("truncate: %v, %d of %d bytes", err, len(body), resp.ContentLength)
		}
		if _, _, err := fetch(ctx, p, "GET", "/x?fail=reset", nil); kindOf(err) != KindReset {
			t.Errorf("reset: %v (kind %v)", err, kindOf(err))
		}
		if _, _, err := fetch(ctx, p, "GET", "/x?fail=badstatus", nil); kindOf(err) != KindProtocol {
			t.Errorf("bad status line: %v (kind %v)", err, kindOf(err))
		}
		a.kill()
		if _, _, err := fetch(ctx, p, "GET", "/x", nil); kindOf(err) != KindRefused {
			t.Errorf("refused: %v (kind %v)", err, kindOf(err))
		}
		// An error names the pool, the server and the kind.
		if _, _, err := fetch(ctx, p, "GET", "/x", nil); err == nil ||
			!strings.Contains(err.Error(), "origin pool origin: "+a.url+": refused") {
			t.Errorf("error text %q", err)
		}
	})
}

func TestPoolOutlierEjection(t *testing.T) {
	bothClients(t, func(t *testing.T, std bool) {
		a, b := startOrigin(t), startOrigin(t)
		clock := fakeclock.New()
		p := newPool(t, PoolConfig{stdTransport: std,
			Servers: servers(a, b),
			Outlier: OutlierConfig{ConsecutiveErrors: 3, Ejection: 30 * time.Second},
			Now:     clock.Now,
		})
		a.demo.SetFailing("500")
		for range 10 {
			fetch(context.Background(), p, "GET", "/e", nil)
		}
		if n := a.demo.Requests(); n != 3 {
			t.Errorf("failing server got %d requests, want 3 before ejection", n)
		}
		st := p.Servers()[0]
		if st.Available || !st.EjectedUntil.Equal(clock.Now().Add(30*time.Second)) {
			t.Errorf("state after 3 errors: %+v", st)
		}
		clock.Advance(29 * time.Second)
		if p.Servers()[0].Available {
			t.Error("back before the ejection ended")
		}
		clock.Advance(time.Second)
		if st := p.Servers()[0]; !st.Available || !st.EjectedUntil.IsZero() {
			t.Errorf("not back after the ejection: %+v", st)
		}
		a.demo.SetFailing("")
		a.demo.Reset()
		for range 4 {
			mustGet(t, p, "/e")
		}
		if a.demo.Requests() != 2 {
			t.Errorf("recovered server got %d of 4", a.demo.Requests())
		}
	})
}

func TestPoolCircuitBreaker(t *testing.T) {
	bothClients(t, func(t *testing.T, std bool) {
		a := startOrigin(t)
		clock := fakeclock.New()
		p := newPool(t, PoolConfig{stdTransport: std,
			Servers: servers(a),
			Breaker: BreakerConfig{MaxFailures: 2, OpenFor: 10 * time.Second},
			Outlier: OutlierConfig{ConsecutiveErrors: -1},
			Now:     clock.Now,
		})
		a.demo.SetFailing("500")
		for range 2 {
			resp, _ := mustGet(t, p, "/c")
			if resp.StatusCode != 500 {
				t.Fatal(resp.StatusCode)
			}
		}
		_, _, err := fetch(context.Background(), p, "GET", "/c", nil)
		if kindOf(err) != KindUnavailable || a.demo.Requests() != 2 {
			t.Fatalf("open circuit: %v, origin saw %d", err, a.demo.Requests())
		}
		clock.Advance(10 * time.Second)
		// Half-open: one trial; it fails and the circuit opens again.
		if resp, _ := mustGet(t, p, "/c"); resp.StatusCode != 500 {
			t.Fatal(resp.StatusCode)
		}
		if _, _, err := fetch(context.Background(), p, "GET", "/c", nil); kindOf(err) != KindUnavailable {
			t.Fatalf("after failed trial: %v", err)
		}
		clock.Advance(10 * time.Second)
		a.demo.SetFailing("")
		for range 3 {
			mustGet(t, p, "/c")
		}
		if a.demo.Requests() != 6 {
			t.Errorf("origin saw %d requests, want 6", a.demo.Requests())
		}
	})
}

func TestPoolHTTP2(t *testing.T) {
	d := NewDemo(nil)
	srv := httptest.NewUnstartedServer(d)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	p := newPool(t, PoolConfig{
		Servers:         []ServerConfig{{URL: srv.URL}},
		TLSClientConfig: srv.Client().Transport.(*http.Transport).TLSClientConfig,
	})
	resp, b := mustGet(t, p, "/h2?echo=1")
	var e Echo
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 || e.Proto != "HTTP/2.0" {
		t.Errorf("protocol %s / %s, want HTTP/2", resp.Proto, e.Proto)
	}
}

func TestPoolMetrics(t *testing.T) {
	bothClients(t, func(t *testing.T, std bool) {
		a, b := startOrigin(t), startOrigin(t)
		p := newPool(t, PoolConfig{stdTransport: std, Name: "site1", Servers: servers(a, b)})
		p2 := newPool(t, PoolConfig{stdTransport: std, Name: "site2", Servers: servers(a)})
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(p, p2) // two pools share a registry
		b.kill()
		for range 4 {
			mustGet(t, p, "/m")
		}
		mustGet(t, p, "/m?status=404")
		got := gather(t, reg)
		for key, want := range map[string]float64{
			"meridian_origin_requests_total,code=200,pool=site1,server=" + a.url:   4,
			"meridian_origin_requests_total,code=404,pool=site1,server=" + a.url:   1,
			"meridian_origin_requests_total,code=error,pool=site1,server=" + b.url: 2,
			"meridian_origin_response_seconds,pool=site1,server=" + b.url:          2,
			"meridian_origin_errors_total,kind=refused,pool=site1,server=" + b.url: 2,
			"meridian_origin_retries_total,pool=site1":                             2,
			"meridian_origin_server_up,pool=site1,server=" + b.url:                 1,
			"meridian_origin_server_ejected,pool=site1,server=" + b.url:            0,
			"meridian_origin_server_connections,pool=site1,server=" + a.url:        1,
			"meridian_origin_server_connections,pool=site1,server=" + b.url:        0,
			"meridian_origin_circuit_open,pool=site2":                              0,
			"meridian_origin_response_seconds,pool=site1,server=" + a.url:          5,
		} {
			if got[key] != want {
				t.Errorf("%s = %v, want %v", key, got[key], want)
			}
		}
	})
}

func TestPoolCloseTwice(t *testing.T) {
	a := startOrigin(t)
	p, err := NewPool(PoolConfig{Servers: servers(a), Health: HealthConfig{Enabled: true, Interval: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	p.Close()
}

func TestNewPoolRejectsBadConfig(t *testing.T) {
	_, err := NewPool(PoolConfig{Name: "x"})
	if err == nil || !strings.Contains(err.Error(), "servers: empty") {
		t.Errorf("error %v", err)
	}
}

func TestPoolHealthLoopMarksDownWithinFallIntervals(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close() // connections to it are refused from now on

	// Fake time: the default interval (5s) and fall (3) cost nothing, and
	// "within fall×interval" is asserted exactly.
	synctest.Test(t, func(t *testing.T) {
		p, err := NewPool(PoolConfig{Servers: []ServerConfig{{URL: dead}}, Health: HealthConfig{Enabled: true}})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		const interval, fall = 5 * time.Second, 3
		time.Sleep((fall-1)*interval + interval/2)
		synctest.Wait()
		if !p.Servers()[0].Healthy {
			t.Fatalf("down after %d probes, fall is %d", fall-1, fall)
		}
		time.Sleep(interval)
		synctest.Wait()
		if p.Servers()[0].Healthy {
			t.Fatalf("still up after fall×interval (%v)", fall*interval)
		}
	})
}
