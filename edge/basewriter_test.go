package edge_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/internal/fakeclock"
)

// baseRecorder is a ResponseRecorder that takes a base header
// (edge.BaseHeaderWriter) and writes it as the interface says: base's
// fields but those the map names, a name with no values removing base's,
// merged into the map at WriteHeader.
type baseRecorder struct {
	*httptest.ResponseRecorder
	base  http.Header
	calls int
	wrote bool
}

func (b *baseRecorder) SetBaseHeader(base http.Header) bool {
	if b.wrote || b.base != nil {
		return false
	}
	b.calls++
	for k := range base {
		delete(b.Header(), k)
	}
	b.base = base
	return true
}

func (b *baseRecorder) WriteHeader(code int) {
	if code >= 200 && !b.wrote {
		b.wrote = true
		h := b.Header()
		for k, vs := range b.base {
			switch own, ok := h[k]; {
			case !ok:
				h[k] = vs
			case len(own) == 0:
				delete(h, k) // base's taken away
			}
		}
	}
	b.ResponseRecorder.WriteHeader(code)
}

func (b *baseRecorder) Write(p []byte) (int, error) {
	if !b.wrote {
		b.WriteHeader(http.StatusOK)
	}
	return b.ResponseRecorder.Write(p)
}

func (b *baseRecorder) Flush() {
	if !b.wrote {
		b.WriteHeader(http.StatusOK)
	}
	b.ResponseRecorder.Flush()
}

// A miss answered through a writer that takes the origin's fields as its
// base (the fast front's, edge.BaseHeaderWriter) gets the answer it gets
// through a plain one, which has them copied: the origin's fields less
// Surrogate-Key, its Via with this cache's appended, Age, Cache-Status,
// Accept-Ranges and Content-Length replaced, Content-Length and
// Content-Type removed from a 304, Content-Length from a 412, the Range
// answers' fields; and the base was taken.
func TestMissOverBaseHeaderAnswersAsCopied(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "max-age=600")
		h.Set("Date", "Mon, 07 Dec 2026 05:00:00 GMT")
		h.Set("Etag", `"v1"`)
		h.Set("Last-Modified", "Sun, 06 Dec 2026 12:00:00 GMT")
		h.Set("Content-Type", "text/plain")
		// What the cache replaces or takes away.
		h.Set("Surrogate-Key", "k1 k2")
		h.Set("Cache-Status", "upstream; hit")
		h.Set("Accept-Ranges", "none")
		h["Via"] = []string{"1.1 shield", "1.1 other"}
		h["X-Multi"] = []string{"a", "b"}
		h.Set("X-Odd", "  padded\t")
		switch {
		case strings.HasPrefix(r.URL.Path, "/notype"):
			h["Content-Type"] = nil
			h.Del("Via")
		case strings.HasPrefix(r.URL.Path, "/404"):
			w.WriteHeader(http.StatusNotFound)
		case strings.HasPrefix(r.URL.Path, "/204"):
			w.WriteHeader(http.StatusNoContent)
			return
		}
		io.WriteString(w, "<html>0123456789</html>")
	}))
	defer origin.Close()
	cases := []struct{ name, method, path, field, value string }{
		{"plain", "GET", "/plain", "", ""},
		{"head", "HEAD", "/plain", "", ""},
		{"no type, no via", "GET", "/notype", "", ""},
		{"304", "GET", "/cond", "If-None-Match", `"v1"`},
		{"412", "GET", "/cond", "If-Match", `"other"`},
		{"range", "GET", "/range", "Range", "bytes=0-3"},
		{"416", "GET", "/range", "Range", "bytes=900-"},
		{"404", "GET", "/404", "", ""},
		{"204", "GET", "/204", "", ""},
	}
	// Both edges read one clock that stands still a minute after the
	// origin's Date: Age and Cache-Status's ttl are the same on both
	// (with time.Now the two misses of a case could fall on either side
	// of a second, and did in CI).
	clock := fakeclock.At(time.Date(2026, 12, 7, 5, 1, 0, 0, time.UTC))
	newEdge := func() *edge.Handler {
		h, err := edge.New(edge.Config{Name: "e1", Sites: []edge.SiteConfig{{Hosts: []string{"site.test"}, Origin: origin.URL}}},
			edge.Options{Now: clock.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}
	copied, based := newEdge(), newEdge()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := c.path + "-" + string(rune('a'+i)) // a miss on each edge
			req := func() *http.Request {
				r := httptest.NewRequest(c.method, "http://site.test"+path, nil)
				if c.field != "" {
					r.Header.Set(c.field, c.value)
				}
				return r
			}
			want := httptest.NewRecorder()
			copied.ServeHTTP(want, req())
			got := &baseRecorder{ResponseRecorder: httptest.NewRecorder()}
			based.ServeHTTP(got, req())
			if got.calls != 1 {
				t.Fatalf("SetBaseHeader called %d times on a miss, want 1", got.calls)
			}
			if got.Code != want.Code || got.Body.String() != want.Body.String() {
				t.Fatalf("over a base: %d %q; copied: %d %q", got.Code, got.Body, want.Code, want.Body)
			}
			gh, wh := got.Result().Header, want.Result().Header
			for _, k := range slices.Sorted(func(yield func(string) bool) {
				for k := range wh {
					yield(k)
				}
				for k := range gh {
					if _, ok := wh[k]; !ok {
						yield(k)
					}
				}
			}) {
				if !slices.Equal(gh[k], wh[k]) {
					t.Errorf("%s: over a base %q, copied %q", k, gh[k], wh[k])
				}
			}
			if v := wh["Surrogate-Key"]; v != nil {
				t.Errorf("Surrogate-Key %q sent to a client", v)
			}
		})
	}
}
