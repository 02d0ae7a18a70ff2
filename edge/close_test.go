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

	"github.com/meridiancdn/meridian/edge"
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
