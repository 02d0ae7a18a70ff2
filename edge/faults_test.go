package edge_test

import (
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
)

// Faults without amplification (issue 14): a failing origin sees at most
// one request per key per backoff period, a slow one is answered for from
// stale copies early, and an unreachable one from stale copies at all.

func TestFailedFillIsRememberedForItsBackoff(t *testing.T) {
	e := newEnv(t, respond(500, "origin broke"))
	for i := 0; i < 5; i++ {
		r, b := e.get("/fail")
		wantStatus(t, r, 500)
		if b != "origin broke" {
			t.Fatalf("body %q", b)
		}
		if i > 0 {
			wantCS(t, r, "detail=error-backoff")
			if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 {
				t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
			}
		}
	}
	if n := e.origin.count("/fail"); n != 1 {
		t.Fatalf("origin saw %d requests in one backoff period, want 1", n)
	}
	// The backoff doubles with each failure in a row: 1 s, then 2 s.
	e.clock.Advance(time.Second)
	e.get("/fail")
	if n := e.origin.count("/fail"); n != 2 {
		t.Fatalf("origin saw %d requests after the first backoff, want 2", n)
	}
	e.clock.Advance(time.Second)
	e.get("/fail")
	if n := e.origin.count("/fail"); n != 2 {
		t.Fatalf("origin saw %d requests within the doubled backoff, want 2", n)
	}
	// Other keys are not held back, and a success forgets the failures.
	e.clock.Advance(time.Second)
	e.origin.setHandler(respond(200, "fixed", "Cache-Control", "no-store"))
	if r, b := e.get("/fail"); r.StatusCode != 200 || b != "fixed" {
		t.Fatalf("after recovery: %d %q", r.StatusCode, b)
	}
	e.origin.setHandler(respond(500, "again"))
	e.get("/fail")
	e.clock.Advance(time.Second) // the backoff starts again at 1 s
	e.get("/fail")
	if n := e.origin.count("/fail"); n != 5 {
		t.Fatalf("origin saw %d requests, want 5", n)
	}
}

func TestUnreachableOriginIsRememberedAndStaleServed(t *testing.T) {
	e := newEnv(t, respond(200, "cached", "Cache-Control", "max-age=10"))
	e.get("/u")
	e.clock.Advance(time.Minute)
	reset := func(w http.ResponseWriter, r *http.Request) {
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close() // a connection reset before any answer
		}
	}
	e.origin.setHandler(reset)
	// net/http retries a GET once on a fresh connection when a reused one
	// breaks: count the edge's fills, not the origin's requests.
	before := e.counter("meridian_edge_fills_total")
	for i := 0; i < 3; i++ {
		r, b := e.get("/u")
		wantStatus(t, r, 200)
		wantCS(t, r, "fwd=stale", "detail=stale-if-unreachable")
		if b != "cached" {
			t.Fatalf("stale body %q", b)
		}
	}
	if n := e.counter("meridian_edge_fills_total") - before; n != 1 {
		t.Fatalf("unreachable origin asked %v times in one backoff period", n)
	}
	r, _ := e.get("/never-stored")
	wantStatus(t, r, http.StatusBadGateway)
}

func TestStaleServedWhenOriginUnreachableUnlessForbidden(t *testing.T) {
	off := time.Duration(0)
	cases := []struct {
		name      string
		cc        string
		grace     *time.Duration
		wantStale bool
	}{
		{"plain max-age", "max-age=10", nil, true},
		{"must-revalidate", "max-age=10, must-revalidate", nil, false},
		{"proxy-revalidate", "max-age=10, proxy-revalidate", nil, false},
		{"no-cache", "max-age=10, no-cache", nil, false},
		{"s-maxage", "s-maxage=10", nil, false},
		{"turned off", "max-age=10", &off, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, respond(200, "good", "Cache-Control", tc.cc, "ETag", `"g"`), func(c *edge.Config) {
				c.Sites[0].Grace.IfUnreachable = tc.grace
			})
			e.get("/s")
			e.clock.Advance(time.Minute)
			e.origin.srv.CloseClientConnections()
			e.origin.srv.Close()
			r, b := e.get("/s")
			if tc.wantStale {
				wantStatus(t, r, 200)
				wantCS(t, r, "fwd=stale", "detail=stale-if-unreachable")
				if b != "good" {
					t.Fatalf("stale body %q", b)
				}
				return
			}
			wantStatus(t, r, http.StatusBadGateway)
		})
	}
}

func TestSlowOriginGetsStaleAnswerEarlyAndRefreshes(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, respond(200, "old", "Cache-Control", "max-age=10, stale-if-error=600"), func(c *edge.Config) {
		d := 50 * time.Millisecond
		c.Sites[0].Grace.StaleTimeout = &d
		c.Sites[0].Timeout = time.Minute
	})
	e.get("/slow")
	e.clock.Advance(time.Minute)
	e.origin.setHandler(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "new")
	})
	for i := 0; i < 3; i++ {
		r, b := e.get("/slow")
		wantStatus(t, r, 200)
		wantCS(t, r, "fwd=stale", "detail=stale-timeout")
		if b != "old" {
			t.Fatalf("early stale body %q", b)
		}
	}
	// The three requests shared one fill, which nobody waits for any
	// more, yet it goes on and refreshes the entry.
	close(release)
	waitFor(t, func() bool {
		r, b := e.get("/slow")
		return r.Header.Get("Cache-Status") != "" && b == "new"
	})
	if n := e.origin.count("/slow"); n != 2 {
		t.Fatalf("origin saw %d requests, want 2 (the first fill and one refresh)", n)
	}
}

func TestAbandonedFillIsNotRemembered(t *testing.T) {
	arrived := make(chan struct{}, 1)
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
	}, func(c *edge.Config) { c.Sites[0].Timeout = time.Minute })
	e.getThenLeave("/left", arrived)
	waitFor(t, func() bool { return e.counter("meridian_edge_fills_abandoned_total") == 1 })
	// A client that left must not make the edge refuse the key to others.
	e.origin.setHandler(respond(200, "ok", "Cache-Control", "max-age=60"))
	r, b := e.get("/left")
	wantStatus(t, r, 200)
	if b != "ok" {
		t.Fatalf("body %q", b)
	}
}
