package edge_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
)

// Tables for issue 15's items 3, 6 and 7 (storable 5xx, one origin
// request per ranged pass-through, no-cache="field" kept on the miss), over
// real sockets on both HTTP/1.1 fronts, asserting what the client got and
// what the origin received. They widen the single cases of
// rfc_storage_test.go.

// TestLastMile5xxStorage (item 3): any final status is stored when
// explicit freshness allows it (RFC 9111 §3); heuristic freshness only
// for the statuses of RFC 9110 §15.1 (501 among them) or a public
// response (RFC 9111 §4.2.2). What is not stored is asked of the origin
// again once the key's error backoff has passed.
func TestLastMile5xxStorage(t *testing.T) {
	const lm = "Thu, 01 Jan 2026 00:00:00 GMT" // heuristic freshness: weeks
	tests := []struct {
		name   string
		status int
		fields []string
		stored bool
	}{
		{"500 max-age", 500, []string{"Cache-Control", "max-age=100"}, true},
		{"502 s-maxage", 502, []string{"Cache-Control", "s-maxage=100"}, true},
		{"503 Expires", 503, []string{"Expires", "Fri, 27 Nov 2026 13:00:00 GMT"}, true},
		{"504 CDN-Cache-Control", 504, []string{"CDN-Cache-Control", "max-age=100"}, true},
		{"599 max-age", 599, []string{"Cache-Control", "max-age=100"}, true},
		{"501 heuristic", 501, []string{"Last-Modified", lm}, true},
		{"500 public heuristic", 500, []string{"Cache-Control", "public", "Last-Modified", lm}, true},
		{"500 heuristic is not", 500, []string{"Last-Modified", lm}, false},
		{"503 no freshness", 503, nil, false},
		// An Expires field, even invalid, allows storing (RFC 9111 §3);
		// invalid, it is already expired: stored stale (ttl=0), never
		// reused without the origin (checked below).
		{"503 invalid Expires", 503, []string{"Expires", "Fri, 27  Nov  2026 13:00:00 GMT"}, false},
		{"500 max-age, no-store", 500, []string{"Cache-Control", "max-age=100, no-store"}, false},
		{"502 max-age, private", 502, []string{"Cache-Control", "max-age=100, private"}, false},
		{"503 no-store, valid CDN-Cache-Control", 503, []string{"Cache-Control", "no-store", "CDN-Cache-Control", "max-age=100"}, true},
		{"503 max-age, invalid CDN-Cache-Control no-store", 503, []string{"Cache-Control", "no-store", "CDN-Cache-Control", "max-age=\"100\""}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int64
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				for i := 0; i+1 < len(tt.fields); i += 2 {
					w.Header().Set(tt.fields[i], tt.fields[i+1])
				}
				w.WriteHeader(tt.status)
				fmt.Fprintf(w, "error page %d", n.Add(1))
			})
			r1, b1 := e.get("/e")
			wantStatus(t, r1, tt.status)
			if b1 != "error page 1" {
				t.Fatalf("first body %q", b1)
			}
			// Past the error backoff (cache.error_backoff, 1s), within
			// every freshness above.
			e.clock.Advance(2 * time.Second)
			r2, b2 := e.get("/e")
			wantStatus(t, r2, tt.status)
			if tt.stored {
				wantCS(t, r1, "stored")
				wantCS(t, r2, "hit")
				if b2 != "error page 1" || e.origin.count("/e") != 1 {
					t.Fatalf("second client got %q after %d origin requests, want the stored page after 1", b2, e.origin.count("/e"))
				}
				return
			}
			if tt.name != "503 invalid Expires" {
				wantCS(t, r1, "!stored")
			}
			wantCS(t, r2, "!hit")
			if b2 != "error page 2" || e.origin.count("/e") != 2 {
				t.Fatalf("second client got %q after %d origin requests, want a new page after 2", b2, e.origin.count("/e"))
			}
		})
	}
}

// TestLastMileStaleIfErrorOver5xx (item 3): a stale copy that may stand
// in answers an origin 5xx, even one with explicit freshness, and the 5xx
// is not stored (the origin is asked again next time); where no stale
// copy may stand in, the 5xx answers and, with explicit freshness, is
// stored.
func TestLastMileStaleIfErrorOver5xx(t *testing.T) {
	tests := []struct {
		name   string
		cc     string // of the stored 200
		grace  time.Duration
		status int
		err    []string // the error's fields
		stale  bool     // the client gets the stale 200
	}{
		{"500 within stale-if-error", "max-age=10, stale-if-error=600", 0, 500, []string{"Cache-Control", "max-age=100"}, true},
		{"502 within stale-if-error", "max-age=10, stale-if-error=600", 0, 502, []string{"Cache-Control", "max-age=100"}, true},
		{"503 within stale-if-error", "max-age=10, stale-if-error=600", 0, 503, []string{"Expires", "Fri, 27 Nov 2026 14:00:00 GMT"}, true},
		{"504 within stale-if-error", "max-age=10, stale-if-error=600", 0, 504, []string{"Cache-Control", "max-age=100"}, true},
		{"500 within the site's grace", "max-age=10", 10 * time.Minute, 500, []string{"Cache-Control", "max-age=100"}, true},
		{"501 heuristic within stale-if-error", "max-age=10, stale-if-error=600", 0, 501, []string{"Last-Modified", "Thu, 01 Jan 2026 00:00:00 GMT"}, true},
		{"500 past stale-if-error", "max-age=10, stale-if-error=30", 0, 500, []string{"Cache-Control", "max-age=100"}, false},
		{"503 must-revalidate copy", "max-age=10, must-revalidate, stale-if-error=600", 0, 503, []string{"Cache-Control", "max-age=100"}, false},
		{"503 no grace", "max-age=10", 0, 503, []string{"Cache-Control", "max-age=100"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, respond(200, "good", "Cache-Control", tt.cc, "ETag", `"g1"`), func(c *edge.Config) {
				c.Sites[0].Grace.IfError = tt.grace
			})
			e.get("/sie")
			e.clock.Advance(time.Minute)
			e.origin.setHandler(respond(tt.status, "broken", tt.err...))
			r, b := e.get("/sie")
			if got := e.origin.lastRequest().Header.Get("If-None-Match"); got != `"g1"` {
				t.Fatalf("revalidation sent If-None-Match %q", got)
			}
			if tt.stale {
				wantStatus(t, r, 200)
				wantCS(t, r, "fwd=stale", fmt.Sprintf("fwd-status=%d", tt.status), "!stored")
				if b != "good" {
					t.Fatalf("body %q, want the stale copy", b)
				}
				// The 5xx was not stored: past the backoff the origin
				// is asked again, and the stale copy answers again.
				e.clock.Advance(2 * time.Second)
				r, b = e.get("/sie")
				wantStatus(t, r, 200)
				if b != "good" || e.origin.count("/sie") != 3 {
					t.Fatalf("third client got %q after %d origin requests, want the stale copy after 3", b, e.origin.count("/sie"))
				}
				return
			}
			wantStatus(t, r, tt.status)
			wantCS(t, r, "stored")
			if b != "broken" {
				t.Fatalf("body %q, want the 5xx's", b)
			}
			r, b = e.get("/sie")
			wantStatus(t, r, tt.status)
			wantCS(t, r, "hit")
			if b != "broken" || e.origin.count("/sie") != 2 {
				t.Fatalf("third client got %q after %d origin requests, want the stored 5xx after 2", b, e.origin.count("/sie"))
			}
		})
	}
}

// TestLastMileRangePassThrough (item 6): a Range request for a response
// that turns out not to be storable costs one origin request, which
// carries no Range (the edge asked for the whole to store it), and the
// client gets its range cut from the 200; several ranges, an unknown
// length or a failing If-Range get the whole 200 (RFC 9110 §14.2).
func TestLastMileRangePassThrough(t *testing.T) {
	body := strings.Repeat("0123456789", 400) // 4000 bytes
	tests := []struct {
		name    string
		cc      string
		max     int64 // cache.max_object_bytes; 0: default
		chunked bool  // the origin sends no Content-Length
		kv      []string
		status  int
		want    string // body; "" with 416
		crange  string // Content-Range
	}{
		{"no-store", "no-store", 0, false, []string{"Range", "bytes=1000-1009"}, 206, body[1000:1010], "bytes 1000-1009/4000"},
		{"private", "private, max-age=600", 0, false, []string{"Range", "bytes=1000-1009"}, 206, body[1000:1010], "bytes 1000-1009/4000"},
		{"Set-Cookie", "max-age=600", 0, false, []string{"Range", "bytes=0-0"}, 206, body[:1], "bytes 0-0/4000"},
		{"above max_object_bytes", "max-age=600", 1024, false, []string{"Range", "bytes=1000-1009"}, 206, body[1000:1010], "bytes 1000-1009/4000"},
		{"suffix range", "no-store", 0, false, []string{"Range", "bytes=-10"}, 206, body[3990:], "bytes 3990-3999/4000"},
		{"open range", "no-store", 0, false, []string{"Range", "bytes=3995-"}, 206, body[3995:], "bytes 3995-3999/4000"},
		{"range past the end is cut", "no-store", 0, false, []string{"Range", "bytes=3990-9999"}, 206, body[3990:], "bytes 3990-3999/4000"},
		{"several ranges get the whole", "no-store", 0, false, []string{"Range", "bytes=0-1,5-6"}, 200, body, ""},
		{"unknown length gets the whole", "no-store", 0, true, []string{"Range", "bytes=0-9"}, 200, body, ""},
		{"failing If-Range gets the whole", "no-store", 0, false, []string{"Range", "bytes=0-9", "If-Range", `"other"`}, 200, body, ""},
		{"matching If-Range", "no-store", 0, false, []string{"Range", "bytes=0-9", "If-Range", `"v1"`}, 206, body[:10], "bytes 0-9/4000"},
		{"unsatisfiable", "no-store", 0, false, []string{"Range", "bytes=4000-"}, 416, "", "bytes */4000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", tt.cc)
				w.Header().Set("ETag", `"v1"`)
				if tt.name == "Set-Cookie" {
					w.Header().Set("Set-Cookie", "s=1") // unqualified: never stored
				}
				if !tt.chunked {
					w.Header().Set("Content-Length", "4000")
				}
				w.Write([]byte(body[:2000]))
				w.(http.Flusher).Flush()
				w.Write([]byte(body[2000:]))
			}, func(c *edge.Config) {
				if tt.max > 0 {
					c.Cache.MaxObjectBytes = tt.max
				}
			})
			r, b := e.get("/rp", tt.kv...)
			wantStatus(t, r, tt.status)
			if tt.status != 416 && b != tt.want {
				t.Fatalf("body %d bytes %.20q, want %d bytes %.20q", len(b), b, len(tt.want), tt.want)
			}
			if got := r.Header.Get("Content-Range"); got != tt.crange {
				t.Fatalf("Content-Range %q, want %q", got, tt.crange)
			}
			if n := e.origin.count("/rp"); n != 1 {
				t.Fatalf("origin saw %d requests for one ranged request", n)
			}
			got := e.origin.lastRequest().Header
			if got.Get("Range") != "" || got.Get("If-Range") != "" {
				t.Fatalf("origin received Range %q, If-Range %q: want the whole asked for", got.Get("Range"), got.Get("If-Range"))
			}
		})
	}
}

// TestLastMileNoCacheFields (item 7): no-cache="field" and
// private="field" (in Cache-Control or a valid CDN-Cache-Control) remove
// the named fields from the stored response only: the miss that filled
// the cache keeps them, the hits do not, and other fields stay.
func TestLastMileNoCacheFields(t *testing.T) {
	tests := []struct {
		name    string
		fields  []string // besides X-Secret and X-Other
		removed []string
	}{
		{"no-cache one field", []string{"Cache-Control", `max-age=60, no-cache="X-Secret"`}, []string{"X-Secret"}},
		{"private one field", []string{"Cache-Control", `max-age=60, private="X-Secret"`}, []string{"X-Secret"}},
		{"no-cache two fields", []string{"Set-Cookie", "s=1", "Cache-Control", `max-age=60, no-cache="X-Secret, Set-Cookie"`}, []string{"X-Secret", "Set-Cookie"}},
		{"no-cache field in any case", []string{"Cache-Control", `max-age=60, no-cache="x-secret"`}, []string{"X-Secret"}},
		{"no-cache and private", []string{"Set-Cookie", "s=1", "Cache-Control", `max-age=60, no-cache="X-Secret", private="Set-Cookie"`}, []string{"X-Secret", "Set-Cookie"}},
		{"CDN-Cache-Control no-cache field", []string{"CDN-Cache-Control", `max-age=60, no-cache="X-Secret"`}, []string{"X-Secret"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kv := append([]string{"X-Secret", "for-the-first-client", "X-Other", "kept"}, tt.fields...)
			e := newEnv(t, versioned(kv...))
			r1, b1 := e.get("/ncf")
			wantStatus(t, r1, 200)
			wantCS(t, r1, "stored")
			if b1 != "v1" {
				t.Fatalf("miss body %q", b1)
			}
			for i := 0; i+1 < len(kv); i += 2 {
				if got := r1.Header.Get(kv[i]); got != kv[i+1] {
					t.Errorf("miss response: %s %q, want %q", kv[i], got, kv[i+1])
				}
			}
			e.clock.Advance(time.Second)
			r2, b2 := e.get("/ncf")
			wantCS(t, r2, "hit")
			if b2 != "v1" || e.origin.count("/ncf") != 1 {
				t.Fatalf("second client got %q after %d origin requests, want the stored v1", b2, e.origin.count("/ncf"))
			}
			for _, f := range tt.removed {
				if v := r2.Header.Values(f); v != nil {
					t.Errorf("hit carries %s %q", f, v)
				}
			}
			if r2.Header.Get("X-Other") != "kept" {
				t.Errorf("hit lost X-Other")
			}
		})
	}
}
