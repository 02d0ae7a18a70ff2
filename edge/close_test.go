package edge_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/internal/poll"
)

// countingUpstream answers every fill with a cacheable body and counts the
// requests it gets, and those it gets after closed is set.
type countingUpstream struct {
	calls, late atomic.Int64
	closed      atomic.Bool
}

func (u *countingUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	u.calls.Add(1)
	if u.closed.Load() {
		u.late.Add(1)
	}
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"Cache-Control": {"max-age=60"}, "Content-Type": {"text/plain"}},
		Body:    io.NopCloser(strings.NewReader("body")),
		Request: r, ContentLength: 4}, nil
}

func newClosable(t *testing.T, up *countingUpstream) *edge.Handler {
	t.Helper()
	h, err := edge.New(edge.Config{Sites: []edge.SiteConfig{{Hosts: []string{testHost}, Origin: "http://127.0.0.1:1"}}},
		edge.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Upstream: func(edge.SiteConfig) http.RoundTripper { return up }})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// After Close a miss is answered 503 (shutting-down) at once and goes
// nowhere upstream. See TestCloseRacesFills for the fills that used to
// start after Close.
func TestClosedHandlerStartsNoFill(t *testing.T) {
	up := &countingUpstream{}
	h := newClosable(t, up)
	h.Close()
	for _, path := range []string{"/a", "/b"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "http://"+testHost+path, nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("GET %s after Close: %d %q, want 503", path, rec.Code, rec.Body.String())
		}
		if cs := rec.Header().Get("Cache-Status"); !strings.Contains(cs, "detail=shutting-down") {
			t.Fatalf("GET %s after Close: Cache-Status %q", path, cs)
		}
	}
	if n := up.calls.Load(); n != 0 {
		t.Fatalf("%d requests went upstream after Close", n)
	}
	// A reload after Close starts no timer of its own either (TestMain's
	// leak check would find it).
	if err := h.Reload(edge.Config{Sites: []edge.SiteConfig{{Hosts: []string{testHost}, Origin: "http://127.0.0.1:1"}}}); err != nil {
		t.Fatal(err)
	}
}

// Close racing requests that start fills: every fill it did not refuse
// has ended when it returns, and none starts afterwards (none reaches
// upstream once Close has returned). Fills used to be started with a
// wg.Add that could race Close's Wait, in goroutines that Close no
// longer waited for.
func TestCloseRacesFills(t *testing.T) {
	for round := 0; round < 20; round++ {
		up := &countingUpstream{}
		h := newClosable(t, up)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := 0; i < 25; i++ {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest("GET", fmt.Sprintf("http://%s/r%d/%d/%d", testHost, round, g, i), nil))
					if rec.Code != 200 && rec.Code != http.StatusServiceUnavailable {
						t.Errorf("status %d %q", rec.Code, rec.Body.String())
					}
				}
			}()
		}
		close(start)
		if err := h.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Fatal(err)
		}
		up.closed.Store(true)
		wg.Wait()
		if n := up.late.Load(); n != 0 {
			t.Fatalf("round %d: %d fills reached upstream after Close returned", round, n)
		}
	}
}

// firstWriteSignal is a recorder that says when the handler first wrote
// body bytes.
type firstWriteSignal struct {
	*httptest.ResponseRecorder
	once  sync.Once
	wrote chan struct{}
}

func (w *firstWriteSignal) Write(p []byte) (int, error) {
	n, err := w.ResponseRecorder.Write(p)
	w.once.Do(func() { close(w.wrote) })
	return n, err
}

// Close ends every fill, whatever holds it: a shared fill and a solo
// one (Authorization) waiting on a hanging origin's headers, and a pass
// response whose body the leader is copying after its fill handed it
// over. Each goes through the origin pool's lean client, whose abort
// is registered with the fill's context (no longer a child of the
// handler's): Close returns, every request is answered, and the origin
// sees each of its requests end (its connection closed).
func TestCloseEndsEveryFill(t *testing.T) {
	arrived := make(chan string, 3)
	var ended atomic.Int32
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/pass" {
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("first bytes"))
			w.(http.Flusher).Flush()
		}
		arrived <- r.URL.Path
		<-r.Context().Done() // hangs until the edge lets go
		ended.Add(1)
	}, func(c *edge.Config) { c.Sites[0].Timeout = time.Minute })
	solo := httptest.NewRequest("GET", "http://"+testHost+"/solo", nil)
	solo.Header.Set("Authorization", "Bearer x")
	pass := &firstWriteSignal{ResponseRecorder: httptest.NewRecorder(), wrote: make(chan struct{})}
	var served sync.WaitGroup
	served.Go(func() {
		e.edge.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "http://"+testHost+"/shared", nil))
	})
	served.Go(func() { e.edge.ServeHTTP(httptest.NewRecorder(), solo) })
	served.Go(func() {
		// A body cut short aborts its answer as net/http's handlers do.
		defer func() {
			if p := recover(); p != nil && p != http.ErrAbortHandler {
				panic(p)
			}
		}()
		e.edge.ServeHTTP(pass, httptest.NewRequest("GET", "http://"+testHost+"/pass", nil))
	})
	for range 3 {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("3 fills reaching the origin: not within 10 s")
		}
	}
	waitSignal(t, pass.wrote, "the pass response's first bytes reaching its client")

	closed := make(chan struct{})
	go func() {
		e.edge.Close()
		close(closed)
	}()
	waitSignal(t, closed, "Close returning")
	answered := make(chan struct{})
	go func() {
		served.Wait()
		close(answered)
	}()
	waitSignal(t, answered, "every request answered")
	poll.Until(t, 10*time.Second, "the origin seeing its 3 requests end", func() bool { return ended.Load() == 3 })
}
