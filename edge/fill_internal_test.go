package edge

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/meridiancdn/meridian/edge/fill"
	"github.com/meridiancdn/meridian/edge/policy"
)

// TestNeedsCleaningFollowsRemoveHopByHop: a fill lends upstream's header
// map to its entry only when needsCleaning says nothing is to be taken
// out, so it must know every field policy.RemoveHopByHop removes, and the
// peer mark.
func TestNeedsCleaningFollowsRemoveHopByHop(t *testing.T) {
	for _, name := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Trailers",
		"Transfer-Encoding", "Upgrade", "Proxy-Authenticate", "Proxy-Authorization", "Http2-Settings",
		"Cache-Control", "Content-Type", "Content-Length", "Content-Encoding", "Etag", "Vary", "Via", "Age",
		"Date", "Expires", "Last-Modified", "Set-Cookie", "Alt-Svc", "Surrogate-Key", "Cache-Status", fill.PeerHeader} {
		h := http.Header{name: {"x"}}
		cleaned := h.Clone()
		policy.RemoveHopByHop(cleaned)
		removed := len(cleaned) == 0 || name == fill.PeerHeader
		if got := needsCleaning(h); got != removed {
			t.Errorf("%s: needsCleaning %v, but removed %v", name, got, removed)
		}
	}
}

// A fill's upstream request, for a client that sent no fields of its own,
// is three allocations: the request with its context, URL and the values
// of the forwarding fields with a new traceparent's (one fillContext),
// and the header map (its slots in it: no more than 8 fields); the
// client's values would be a fourth. For a browser's 11 fields it is six:
// a map of more than 8 fields is four allocations (map, directory, table,
// slots), and the client's values one. (Before upstreamHeader it was five
// and nine: a Connection: keep-alive's name canonicalized to be deleted,
// and a traceparent of its own; before fillContext held the values, four
// and seven.) What it
// carries is checked by the hostile, forwarding and key tests and against
// the old implementation (upstream_test.go); this pins its cost.
func TestUpstreamRequestAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	st := &site{cfg: SiteConfig{CacheKey: CacheKeyConfig{}.withDefaults()}, origin: &url.URL{Scheme: "http", Host: "origin.test"}}
	h := &Handler{cfg: Config{Name: "edge-a"}, via: "1.1 edge-a"}
	r := httptest.NewRequest(http.MethodGet, "http://site.test/obj?x=1", nil)
	r.RemoteAddr = "198.51.100.9:4711"
	r.Header = http.Header{}
	key := st.cacheKey(r)
	var out *http.Request
	if n := testing.AllocsPerRun(100, func() { out = h.upstreamRequest(context.Background(), st, key, r, nil) }); n > 3 {
		t.Errorf("%v allocations, want 3", n)
	}
	if out.URL.String() != "http://origin.test/obj?x=1" || out.Host != "site.test" || len(out.Header["Traceparent"]) != 1 ||
		out.Header.Get("Forwarded") != "for=198.51.100.9;host=site.test;proto=http" || fillInfoOf(out).Key != key || out.Context().Value(sliceKey{}) != nil {
		t.Fatalf("upstream request %s Host %q, header %v, info %+v", out.URL, out.Host, out.Header, fillInfoOf(out))
	}
	r.Header = browserHeader()
	if n := testing.AllocsPerRun(100, func() { out = h.upstreamRequest(context.Background(), st, key, r, nil) }); n > 6 {
		t.Errorf("a browser's fields: %v allocations, want 6", n)
	}
	if len(out.Header) != 10+upstreamFields || out.Header["Connection"] != nil || out.Header.Get("User-Agent") != r.Header.Get("User-Agent") {
		t.Fatalf("a browser's upstream header %v", out.Header)
	}
}

// A fill's request's context says which slice the fill fetches (the one
// its request was built for, or none), whatever a parent context holds.
func TestFillContextSlice(t *testing.T) {
	sub := &sliceReq{}
	parent := context.WithValue(context.Background(), sliceKey{}, &sliceReq{})
	if got := sliceOf(&fillContext{Context: parent}); got != nil {
		t.Errorf("a whole object's fill has slice %p", got)
	}
	if got := sliceOf(&fillContext{Context: parent, sub: sub}); got != sub {
		t.Errorf("a slice's fill has slice %p, want %p", got, sub)
	}
	if got := (&fillContext{Context: parent}).Value(sliceKey{}); got != nil {
		t.Errorf("Value(sliceKey) = %#v, want untyped nil", got)
	}
}

// BenchmarkUpstreamRequest builds a fill's upstream request for a client
// that sends no fields of its own (as wrk in the all-miss bench) and for
// one that sends a browser's.
func BenchmarkUpstreamRequest(b *testing.B) {
	st := &site{cfg: SiteConfig{CacheKey: CacheKeyConfig{}.withDefaults()}, origin: &url.URL{Scheme: "http", Host: "origin.test"}}
	h := &Handler{cfg: Config{Name: "edge-a"}, via: "1.1 edge-a"}
	browser := browserHeader() // a browser's navigation: upstream_test.go
	for _, tc := range []struct {
		name   string
		header http.Header
	}{{"bare", http.Header{}}, {"browser", browser}} {
		b.Run(tc.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, "http://site.test/obj?x=1", nil)
			r.RemoteAddr = "198.51.100.9:4711"
			r.Header = tc.header
			key := st.cacheKey(r)
			b.ReportAllocs()
			for b.Loop() {
				_ = h.upstreamRequest(context.Background(), st, key, r, nil)
			}
		})
	}
}
