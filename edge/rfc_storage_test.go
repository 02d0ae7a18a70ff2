package edge_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
)

// RFC 9111 last mile (issue 15): storable 5xx, one origin request per
// ranged pass-through, no-cache="field" kept on the miss response.

func TestStatus5xxWithExplicitFreshnessIsStored(t *testing.T) {
	for _, status := range []int{500, 502, 503, 504} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			e := newEnv(t, respond(status, "maintenance page", "Cache-Control", "max-age=100"))
			r, _ := e.get("/m")
			wantStatus(t, r, status)
			wantCS(t, r, "stored")
			r, b := e.get("/m")
			wantStatus(t, r, status)
			wantCS(t, r, "hit")
			if b != "maintenance page" {
				t.Fatalf("hit body %q", b)
			}
			if n := e.origin.count("/m"); n != 1 {
				t.Fatalf("origin saw %d requests", n)
			}
		})
	}
}

func TestStaleIfErrorBeatsAStorable5xx(t *testing.T) {
	e := newEnv(t, respond(200, "good", "Cache-Control", "max-age=10, stale-if-error=600"))
	e.get("/sie5")
	e.clock.Advance(time.Minute)
	e.origin.setHandler(respond(500, "broken", "Cache-Control", "max-age=100"))
	r, b := e.get("/sie5")
	wantStatus(t, r, 200)
	wantCS(t, r, "fwd=stale", "fwd-status=500", "detail=stale-if-error")
	if b != "good" {
		t.Fatalf("body %q", b)
	}
}

func TestRangeOnUnstoredResponseIsOneOriginRequest(t *testing.T) {
	body := strings.Repeat("0123456789", 400) // 4000 bytes
	cases := []struct {
		name string
		cc   string
		max  int64
	}{
		{"no-store", "no-store", 0},
		{"above max_object_bytes", "max-age=600", 1024},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, respond(200, body, "Cache-Control", tc.cc, "Content-Length", "4000"), func(c *edge.Config) {
				if tc.max > 0 {
					c.Cache.MaxObjectBytes = tc.max
				}
			})
			r, b := e.get("/r", "Range", "bytes=1000-1009")
			wantStatus(t, r, http.StatusPartialContent)
			if b != body[1000:1010] || r.Header.Get("Content-Range") != "bytes 1000-1009/4000" {
				t.Fatalf("range %q (%s)", b, r.Header.Get("Content-Range"))
			}
			if n := e.origin.count("/r"); n != 1 {
				t.Fatalf("origin saw %d requests for one ranged request", n)
			}
			if got := e.origin.lastRequest().Header.Get("Range"); got != "" {
				t.Fatalf("first request carried Range %q upstream", got)
			}
			// Now known not to be storable: the Range goes upstream as it
			// is, again in one request.
			e.origin.setHandler(func(w http.ResponseWriter, r *http.Request) {
				http.ServeContent(w, r, "", time.Time{}, strings.NewReader(body))
			})
			r, b = e.get("/r", "Range", "bytes=3990-")
			wantStatus(t, r, http.StatusPartialContent)
			if b != body[3990:] {
				t.Fatalf("second range %q", b)
			}
			if n := e.origin.count("/r"); n != 2 {
				t.Fatalf("origin saw %d requests for two ranged requests", n)
			}
			if got := e.origin.lastRequest().Header.Get("Range"); got != "bytes=3990-" {
				t.Fatalf("second request carried Range %q upstream", got)
			}
		})
	}
}

func TestUnsatisfiableRangeOnUnstoredResponse(t *testing.T) {
	e := newEnv(t, respond(200, "short", "Cache-Control", "no-store"))
	r, _ := e.get("/u416", "Range", "bytes=100-")
	wantStatus(t, r, http.StatusRequestedRangeNotSatisfiable)
	if got := r.Header.Get("Content-Range"); got != "bytes */5" {
		t.Fatalf("Content-Range %q", got)
	}
	if n := e.origin.count("/u416"); n != 1 {
		t.Fatalf("origin saw %d requests", n)
	}
}

func TestNoCacheFieldKeptOnTheMissResponse(t *testing.T) {
	e := newEnv(t, respond(200, "body", "Cache-Control", `max-age=60, no-cache="X-Secret"`, "X-Secret", "for-the-first-client"))
	r, _ := e.get("/ncf")
	if got := r.Header.Get("X-Secret"); got != "for-the-first-client" {
		t.Fatalf("miss response lost X-Secret (%q)", got)
	}
	r, _ = e.get("/ncf")
	wantCS(t, r, "hit")
	if got := r.Header.Get("X-Secret"); got != "" {
		t.Fatalf("hit carries X-Secret %q", got)
	}
}
