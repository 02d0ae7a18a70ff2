package edge_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
)

// A miss's leader runs its fill up to the head on its own goroutine (the
// inline path: startFillInline), where it cannot watch its client. A
// client that leaves while the origin has not answered must still call
// the fill off, and one that leaves while another waits on the same
// fill must leave it running for that one.
func TestInlineLeaderLeavingBeforeHeadersCallsOffOnlyAFillNobodyWaitsOn(t *testing.T) {
	arrived, canceled := make(chan struct{}, 4), make(chan struct{}, 4)
	release := make(chan struct{})
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		if strings.HasPrefix(r.URL.Path, "/shared") {
			select {
			case <-release:
				w.Header().Set("Cache-Control", "max-age=600")
				io.WriteString(w, "for the one who stayed")
				return
			case <-r.Context().Done():
			}
		} else {
			<-r.Context().Done()
		}
		canceled <- struct{}{}
	}, func(c *edge.Config) { c.Sites[0].Timeout = time.Minute })

	// Alone: called off long before the site's one-minute timeout.
	e.getThenLeave("/alone", arrived)
	waitSignal(t, canceled, "the origin seeing the fill called off")
	waitFor(t, func() bool { return e.counter("meridian_edge_fills_abandoned_total") == 1 })

	// With a second client waiting on the same fill: it goes on.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	leaderDone := make(chan struct{})
	go func() {
		defer close(leaderDone)
		req, _ := http.NewRequestWithContext(ctx, "GET", e.base+"/shared", nil)
		req.Host = testHost
		if resp, err := e.client.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitSignal(t, arrived, "the leader's fill reaching the origin")
	type answer struct {
		resp *http.Response
		body string
	}
	joined := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("GET", e.base+"/shared", nil)
		req.Host = testHost
		resp, err := e.client.Do(req)
		if err != nil {
			joined <- answer{}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		joined <- answer{resp, string(b)}
	}()
	waitFor(t, func() bool { return e.edge.WaitingParties() == 2 })
	cancel()
	<-leaderDone
	close(release)
	var a answer
	select {
	case a = <-joined:
	case <-time.After(10 * time.Second):
		t.Fatal("the request that joined was not answered within 10 s")
	}
	if a.resp == nil {
		t.Fatal("the request that joined failed")
	}
	wantStatus(t, a.resp, http.StatusOK)
	if a.body != "for the one who stayed" {
		t.Fatalf("body %q", a.body)
	}
	select {
	case <-canceled:
		t.Fatal("the fill another client waited on was called off when its leader left")
	default:
	}
	if got := e.counter("meridian_edge_fills_abandoned_total"); got != 1 {
		t.Fatalf("fills abandoned = %v, want 1", got)
	}
}

// StopWaiting answers at once a leader that waits for its fill's head on
// its own goroutine (and one that joined it), as it answers requests
// waiting on a worker's fill: 503 with Retry-After and Connection:
// close, not after the site's timeout; the fill is called off.
func TestStopWaitingAnswersALeaderWaitingInlineForTheHead(t *testing.T) {
	arrived, canceled := make(chan struct{}, 2), make(chan struct{}, 2)
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done() // an origin that hangs before its headers
		canceled <- struct{}{}
	}, func(c *edge.Config) { c.Sites[0].Timeout = time.Minute })

	for _, resp := range leaderAndJoinerAtStopWaiting(t, e, "/hang", arrived, "the fill reaching the origin") {
		wantStatus(t, resp, http.StatusServiceUnavailable)
		wantCS(t, resp, "detail=shutting-down")
		if resp.Header.Get("Retry-After") == "" || !resp.Close {
			t.Fatalf("want Retry-After and Connection: close; got %v (close %v)", resp.Header, resp.Close)
		}
	}
	waitSignal(t, canceled, "the origin seeing the fill called off")
}

// An origin's 5xx is read whole before it is shared with the waiters
// (and remembered for the key's backoff). On the inline path the leader
// read that error body on its own goroutine, where StopWaiting could not
// reach it: an origin that sent a 5xx head and then hung its body held
// the leader until read_timeout, while every other waiter was answered.
func TestStopWaitingAnswersALeaderWhoseOriginHangsA5xxBody(t *testing.T) {
	arrived, canceled := make(chan struct{}, 2), make(chan struct{}, 2)
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, "the first part of an error page")
		w.(http.Flusher).Flush()
		arrived <- struct{}{}
		<-r.Context().Done() // and the rest never comes
		canceled <- struct{}{}
	}, func(c *edge.Config) {
		c.Sites[0].Timeout = time.Minute
		c.Sites[0].ReadTimeout = time.Minute
	})

	for _, resp := range leaderAndJoinerAtStopWaiting(t, e, "/hang-error", arrived, "the origin sending its error's head") {
		wantStatus(t, resp, http.StatusServiceUnavailable)
		wantCS(t, resp, "detail=shutting-down")
	}
	e.edge.Close()
	waitSignal(t, canceled, "the origin seeing the fill called off at Close")
}

// leaderAndJoinerAtStopWaiting asks e for path twice, the second time
// once the first (the leader) has reached the origin (arrived, which the
// origin signals as what) and both wait on the fill, calls StopWaiting,
// and returns the two answers, leader's first, failing t if either is
// not answered within 10 s.
func leaderAndJoinerAtStopWaiting(t *testing.T, e *env, path string, arrived <-chan struct{}, what string) []*http.Response {
	t.Helper()
	type answer struct {
		resp *http.Response
		err  error
	}
	get := func(out chan<- answer) {
		req, _ := http.NewRequest("GET", e.base+path, nil)
		req.Host = testHost
		resp, err := e.client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		out <- answer{resp, err}
	}
	leader, joiner := make(chan answer, 1), make(chan answer, 1)
	go get(leader)
	waitSignal(t, arrived, what)
	go get(joiner)
	waitFor(t, func() bool { return e.edge.WaitingParties() == 2 })
	e.edge.StopWaiting()
	var out []*http.Response
	for i, ch := range []chan answer{leader, joiner} {
		var a answer
		select {
		case a = <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("request %d waiting on the fill was not answered within 10 s of StopWaiting", i)
		}
		if a.err != nil {
			t.Fatal(a.err)
		}
		out = append(out, a.resp)
	}
	return out
}

// afterFuncContext is a request context with an AfterFunc method of its
// own, as the fast front's is: it counts the registrations made through
// the method, and runs each f on its own goroutine (context.AfterFunc's).
type afterFuncContext struct {
	context.Context
	registered atomic.Int32
}

func (c *afterFuncContext) AfterFunc(f func()) func() bool {
	c.registered.Add(1)
	return context.AfterFunc(c.Context, f)
}

// An inline leader whose request context has an AfterFunc method (the
// fast front's: see listen.reqContext) registers its leaving through it,
// which spares context.AfterFunc's machinery, and a client that leaves
// still calls the fill off.
func TestInlineLeaderRegistersThroughTheContextsAfterFunc(t *testing.T) {
	arrived, canceled := make(chan struct{}, 1), make(chan struct{}, 1)
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
		canceled <- struct{}{}
	}, func(c *edge.Config) { c.Sites[0].Timeout = time.Minute })
	inner, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx := &afterFuncContext{Context: inner}
	r := httptest.NewRequestWithContext(ctx, "GET", "http://"+testHost+"/leaves", nil)
	served := make(chan struct{})
	go func() {
		defer close(served)
		e.edge.ServeHTTP(httptest.NewRecorder(), r)
	}()
	waitSignal(t, arrived, "the fill reaching the origin")
	cancel()
	waitSignal(t, served, "the handler returning after its client left")
	waitSignal(t, canceled, "the origin seeing the fill called off")
	if n := ctx.registered.Load(); n < 1 {
		t.Fatalf("%d registrations through the context's AfterFunc, want the leader's", n)
	}
}
