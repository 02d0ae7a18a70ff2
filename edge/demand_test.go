package edge_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
)

// Work follows demand (issue 13): a fill that every client has left is
// called off, unless it is nearly done and will be stored.

// getAndClose sends GET target on a raw connection, reads the response
// header and n bytes of the body, and closes the connection.
func getAndClose(t *testing.T, addr, target string, n int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, testHost)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("response %v, %v", resp, err)
	}
	if _, err := io.CopyN(io.Discard, resp.Body, int64(n)); err != nil {
		t.Fatalf("body: %v", err)
	}
}

// getThenLeave sends GET target and closes the connection once arrived
// says the request reached the origin.
func (e *env) getThenLeave(target string, arrived <-chan struct{}) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequestWithContext(ctx, "GET", e.base+target, nil)
		req.Host = testHost
		if resp, err := e.client.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitSignal(e.t, arrived, "the fill reaching the origin")
	cancel()
	<-done
}

// waitSignal waits, bounded, for ch.
func waitSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not within 10 s", what)
	}
}

func TestFillCalledOffWhenEveryClientLeavesBeforeHeaders(t *testing.T) {
	arrived, canceled := make(chan struct{}, 1), make(chan struct{}, 1)
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done() // an origin that takes its time
		canceled <- struct{}{}
	}, func(c *edge.Config) { c.Sites[0].Timeout = time.Minute })
	e.getThenLeave("/slow?x=1", arrived)
	// With nobody left to answer, the edge calls its request off long
	// before the site's one-minute timeout.
	waitSignal(t, canceled, "the origin seeing the fill called off")
	waitFor(t, func() bool { return e.counter("meridian_edge_fills_abandoned_total") == 1 })
}

func TestFillCalledOffMidBodyUnlessNearlyDone(t *testing.T) {
	const size = 1 << 20
	cases := []struct {
		name     string
		sent     int  // bytes the origin sends before it waits
		finished bool // the fill goes on and stores the object
	}{
		{"a tenth", size / 10, false},
		{"nine tenths", size * 9 / 10, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			release, gone := make(chan struct{}), make(chan struct{}, 1)
			var once sync.Once
			finish := func() { once.Do(func() { close(release) }) }
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=600")
				w.Header().Set("Content-Length", strconv.Itoa(size))
				w.WriteHeader(200)
				w.Write(make([]byte, tc.sent))
				w.(http.Flusher).Flush()
				select {
				case <-release:
					w.Write(make([]byte, size-tc.sent))
				case <-r.Context().Done():
					gone <- struct{}{}
				}
			}, func(c *edge.Config) { c.Sites[0].Timeout = time.Minute })
			defer finish()
			getAndClose(t, e.srv.Addr(), "/big", tc.sent)
			if tc.finished {
				// The client is gone, yet the fill must go on: give it a
				// moment to (wrongly) be called off, then let it finish.
				select {
				case <-gone:
					t.Fatal("a fill past finish_abandoned was called off")
				case <-time.After(200 * time.Millisecond):
				}
				finish()
				waitFor(t, func() bool { n, _, _ := e.edge.StoreStats(); return n == 1 })
				r, b := e.get("/big")
				wantCS(t, r, "hit")
				if len(b) != size {
					t.Fatalf("stored body %d bytes", len(b))
				}
				return
			}
			waitSignal(t, gone, "the origin seeing the fill called off")
			if n, _, _ := e.edge.StoreStats(); n != 0 {
				t.Fatalf("%d entries stored from a called-off fill", n)
			}
			// The next client starts a fill of its own.
			finish()
			r, b := e.get("/big")
			wantStatus(t, r, 200)
			if len(b) != size || e.origin.count("/big") != 2 {
				t.Fatalf("second client: %d bytes, origin saw %d requests", len(b), e.origin.count("/big"))
			}
		})
	}
}

func TestCollapsedWaiterKeepsTheFillAfterTheLeaderLeaves(t *testing.T) {
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	var canceled atomic.Bool
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
			w.Header().Set("Cache-Control", "max-age=600")
			io.WriteString(w, "shared")
		case <-r.Context().Done():
			canceled.Store(true)
		}
	}, func(c *edge.Config) { c.Sites[0].Timeout = time.Minute })
	// The leader leaves once its fill has reached the origin.
	e.getThenLeave("/shared", arrived)
	type result struct {
		status int
		body   string
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", e.base+"/shared", nil)
		req.Host = testHost
		resp, err := e.client.Do(req)
		if err != nil {
			done <- result{}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{resp.StatusCode, string(b)}
	}()
	// The waiter may have joined before the leader left or after: either
	// way exactly one fill serves it.
	select {
	case <-arrived: // the leader's fill was called off; the waiter's own fill came
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	r := <-done
	if r.status != 200 || r.body != "shared" {
		t.Fatalf("waiter got %d %q", r.status, r.body)
	}
	if n := e.origin.count("/shared"); n > 2 {
		t.Fatalf("origin saw %d requests", n)
	}
}

func TestInflightBudgetRefusesNewMissesButServesHits(t *testing.T) {
	const size = 600 << 10
	release := make(chan struct{})
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		if r.URL.Path == "/cached" {
			io.WriteString(w, "hot object")
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.WriteHeader(200)
		w.Write(make([]byte, 1024))
		w.(http.Flusher).Flush()
		select {
		case <-release:
			w.Write(make([]byte, size-1024))
		case <-r.Context().Done():
		}
	}, func(c *edge.Config) {
		c.Cache.MaxInflightBytes = 1 << 20
		c.Cache.InflightWait = 50 * time.Millisecond
		c.Sites[0].Timeout = time.Minute
	})
	e.get("/cached")
	// The first large fill holds 600 KiB of the 1 MiB budget while its
	// origin holds back the body.
	first := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("GET", e.base+"/large-1", nil)
		req.Host = testHost
		resp, err := e.client.Do(req)
		if err != nil {
			first <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		first <- strconv.Itoa(len(b))
	}()
	waitFor(t, func() bool { return e.origin.count("/large-1") == 1 })
	r, _ := e.get("/large-2")
	wantStatus(t, r, http.StatusServiceUnavailable)
	wantCS(t, r, "detail=inflight-full")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	r, b := e.get("/cached")
	wantCS(t, r, "hit")
	if b != "hot object" {
		t.Fatalf("hit body %q", b)
	}
	if got := e.counter("meridian_edge_inflight_rejected_total"); got != 1 {
		t.Fatalf("inflight_rejected_total = %v", got)
	}
	close(release)
	if got := <-first; got != strconv.Itoa(size) {
		t.Fatalf("first fill: %s", got)
	}
	// Once the first body is stored its bytes are the store's: the
	// budget has room again.
	r, _ = e.get("/large-2")
	wantStatus(t, r, 200)
}

// A body of unknown length (chunked, or recoded on the way) learns its
// size only as it arrives, once its 200 is on the way to its clients: an
// in-flight budget it outgrows must never cut it short. Alone, it may
// pass the budget by up to max_object_bytes and is stored; larger than
// that, it streams through uncached, bounded, and whole.
func TestUnknownLengthBodyLargerThanInflightBudgetIsWhole(t *testing.T) {
	cases := []struct {
		name   string
		size   int
		stored bool
	}{
		{"storable", 600 << 10, true},
		{"larger than max_object_bytes", 3 << 20, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=600")
				w.WriteHeader(200) // no Content-Length: chunked
				w.Write(make([]byte, tc.size))
			}, func(c *edge.Config) {
				c.Cache.MaxBytes = 2 << 20
				c.Cache.MaxObjectBytes = 1 << 20
				c.Cache.MaxInflightBytes = 16 << 10 // smaller than a first chunk
				c.Cache.InflightWait = 20 * time.Millisecond
			})
			for i := range 2 {
				r, b := e.get("/big")
				wantStatus(t, r, 200)
				if len(b) != tc.size {
					t.Fatalf("request %d: body %d bytes, want %d", i, len(b), tc.size)
				}
			}
			if n, _, _ := e.edge.StoreStats(); (n == 1) != tc.stored {
				t.Fatalf("%d entries stored", n)
			}
			if want := map[bool]int{true: 1, false: 2}[tc.stored]; e.origin.count("/big") != want {
				t.Fatalf("origin saw %d requests, want %d", e.origin.count("/big"), want)
			}
		})
	}
}

// A fill of unknown length that outgrows the in-flight budget mid-body
// while another fill holds room, its 200 already sent, reaches its client
// whole: getting no room in time, it goes on as a stream, uncached, in
// the memory it holds. The other, alone again, is stored.
func TestUnknownLengthBodyWithoutRoomStreamsWhole(t *testing.T) {
	const size, first = 600 << 10, 100 << 10
	release := make(chan struct{})
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.WriteHeader(200) // no Content-Length: chunked
		if r.URL.Path == "/held" {
			w.Write(make([]byte, first))
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			w.Write(make([]byte, size-first))
			return
		}
		w.Write(make([]byte, size))
	}, func(c *edge.Config) {
		c.Cache.MaxBytes = 4 << 20
		c.Cache.MaxObjectBytes = 1 << 20
		c.Cache.MaxInflightBytes = 512 << 10 // the held fill's first part and a bit
		c.Cache.InflightWait = 20 * time.Millisecond
		c.Sites[0].Timeout = time.Minute
	})
	req, _ := http.NewRequest("GET", e.base+"/held", nil)
	req.Host = testHost
	held, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Body.Close()
	// Its client has the first part: the fill holds room for it.
	if _, err := io.CopyN(io.Discard, held.Body, first); err != nil {
		t.Fatal(err)
	}
	getOther := func() {
		t.Helper()
		r, b := e.get("/other")
		wantStatus(t, r, 200)
		if len(b) != size {
			t.Fatalf("other: body %d bytes, want %d", len(b), size)
		}
	}
	getOther()
	// It streamed for want of room, not for being unstorable: the key is
	// not hit-for-miss, so a Range miss asks for the whole object (to
	// store it), not for the range alone.
	if r, _ := e.get("/other", "Range", "bytes=0-9"); r.StatusCode != 200 && r.StatusCode != 206 {
		t.Fatalf("range: status %d", r.StatusCode)
	}
	if rg := e.origin.lastRequest().Header.Get("Range"); rg != "" {
		t.Fatalf("the origin was asked for Range %q: the key became hit-for-miss", rg)
	}
	getOther()
	if n := e.origin.count("/other"); n != 3 {
		t.Fatalf("origin saw %d requests for the streamed body, want 3", n)
	}
	if got := e.counter("meridian_edge_streamed_fills_total"); got != 3 {
		t.Fatalf("streamed_fills_total = %v, want 3", got)
	}
	close(release)
	if n, err := io.Copy(io.Discard, held.Body); err != nil || n != size-first {
		t.Fatalf("held: rest %d bytes, %v", n, err)
	}
	// With room again, each is stored.
	for _, path := range []string{"/held", "/other", "/other"} {
		if r, b := e.get(path); len(b) != size {
			t.Fatalf("%s: %d bytes (Cache-Status %q)", path, len(b), r.Header.Get("Cache-Status"))
		}
	}
	r, _ := e.get("/held")
	wantCS(t, r, "hit")
	r, _ = e.get("/other")
	wantCS(t, r, "hit")
	if n := e.origin.count("/other"); n != 4 {
		t.Fatalf("origin saw %d requests for /other in all, want 4", n)
	}
}

// A request for a key found uncacheable (hit-for-miss) fetches on its own,
// for its client alone: when the client goes, before the answer's header
// or in the middle of its body, its request upstream goes too.
func TestHitForMissEndsWithItsClient(t *testing.T) {
	const size = 1 << 20
	for _, beforeHeader := range []bool{true, false} {
		t.Run(fmt.Sprintf("before header %v", beforeHeader), func(t *testing.T) {
			arrived, gone := make(chan struct{}, 1), make(chan struct{}, 1)
			var first atomic.Bool
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "private")
				if first.CompareAndSwap(false, true) {
					io.WriteString(w, "not for the cache") // the key becomes hit-for-miss
					return
				}
				if !beforeHeader {
					w.Header().Set("Content-Length", strconv.Itoa(size))
					w.WriteHeader(200)
					w.Write(make([]byte, 1024))
					w.(http.Flusher).Flush()
				}
				arrived <- struct{}{}
				<-r.Context().Done() // never released: only a call-off ends it
				gone <- struct{}{}
			}, func(c *edge.Config) { c.Sites[0].Timeout = time.Minute })
			r, _ := e.get("/u")
			wantCS(t, r, "!stored")
			if beforeHeader {
				e.getThenLeave("/u", arrived)
			} else {
				getAndClose(t, e.srv.Addr(), "/u", 1024)
			}
			waitSignal(t, gone, "the origin seeing the hit-for-miss request called off")
			if n := e.origin.count("/u"); n != 2 {
				t.Fatalf("origin saw %d requests, want 2", n)
			}
			waitFor(t, func() bool { return e.metric("meridian_edge_inflight_bytes") == 0 })
		})
	}
}
