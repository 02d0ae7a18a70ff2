package edge

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

// FuzzParseHead checks the fast front's header reader against net/http:
// whatever it accepts as a request it may answer itself (a complete,
// bodiless GET or HEAD) net/http must read the same way — same method,
// target and Host, no body — so that no request means one thing to the
// fast front and another to net/http behind it.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"GET /obj HTTP/1.1\r\nHost: site.test\r\n\r\n",
		"HEAD /a?b=c%20d HTTP/1.1\r\nHost: site.test:8080\r\nConnection: close\r\n\r\n",
		"GET /obj HTTP/1.1\r\nHost: site.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /obj HTTP/1.1\r\nHost: site.test\r\nX-A: b\r\n c\r\n\r\n",
		"GET /obj HTTP/1.1\nHost: site.test\n\n",
		"GET /obj HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET /o%zz HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1\r\n\r\n",
		"GET /obj HTTP/1.1\r\nhost: A.Test.\r\nCache-Control: no-cache\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	// An edge whose site forwards misses: what it would send upstream for
	// a request is compared with what the fast front keyed.
	h, err := New(Config{Sites: []SiteConfig{{Hosts: []string{"site.test", "a.test"}, Origin: "http://origin.test:8080"}}},
		Options{Upstream: func(SiteConfig) http.RoundTripper { return http.DefaultTransport }})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { h.Close() })
	f.Fuzz(func(t *testing.T, p []byte) {
		end, _, verdict := scanHead(p, 0, 1<<16)
		if verdict != headDone {
			return
		}
		var req request
		if parseHead(p[:end], &req) != headDone || !req.bodyless {
			return
		}
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(p[:end])))
		if err != nil {
			t.Fatalf("fast reader accepts what net/http refuses (%v): %q", err, p[:end])
		}
		method := "GET"
		if req.head {
			method = "HEAD"
		}
		if r.Method != method || r.RequestURI != string(req.target) || r.Host != string(req.host) ||
			r.ContentLength != 0 || len(r.TransferEncoding) > 0 || r.ProtoMinor != 1 {
			t.Fatalf("read differently: net/http %s %q host %q len %d te %v; fast %s %q host %q", r.Method, r.RequestURI, r.Host,
				r.ContentLength, r.TransferEncoding, method, req.target, req.host)
		}
		if req.plain && (r.Header["Range"] != nil || r.Header["If-None-Match"] != nil || r.Header["If-Modified-Since"] != nil ||
			r.Header["If-Match"] != nil || r.Header["If-Unmodified-Since"] != nil || r.Header["Authorization"] != nil) {
			t.Fatalf("plain, but net/http sees conditionals or credentials: %q", p[:end])
		}
		if req.clientCC != (r.Header["Cache-Control"] != nil) {
			t.Fatalf("Cache-Control seen %v, net/http %v", req.clientCC, r.Header["Cache-Control"])
		}
		if req.close != r.Close {
			t.Fatalf("Connection: close seen %v, net/http %v", req.close, r.Close)
		}
		// The cache key is the one ServeHTTP derives, for a site that
		// keys on the target as sent and for one that rewrites it.
		key, hostLen := appendHitKey(nil, req.host, req.target)
		plain := &site{cfg: SiteConfig{CacheKey: CacheKeyConfig{}.withDefaults()}}
		if want := plain.cacheKey(r); string(key) != want {
			t.Fatalf("key %q, ServeHTTP's %q", key, want)
		}
		rules := CacheKeyConfig{Query: KeyQuerySorted, IgnoreParams: []string{"utm_*"}}
		rewriting := &site{cfg: SiteConfig{CacheKey: rules}}
		if got, want := string(key[:hostLen])+rules.target(string(key[hostLen:])), rewriting.cacheKey(r); got != want {
			t.Fatalf("rewritten key %q, ServeHTTP's %q", got, want)
		}
		// The forwarded request (a miss, which the fast front lends to
		// net/http) is what was keyed: its Host and target give the same
		// key, it goes to the site's origin, as a bodiless GET.
		st := h.route(r.Host)
		if st == nil {
			return
		}
		if hk := h.route(string(key[:hostLen])); hk != st {
			t.Fatalf("the fast front's key routes to another site than net/http's Host %q", r.Host)
		}
		out := h.upstreamRequest(st, r, nil)
		if got := st.keyFor(out.Host, out.URL.RequestURI()); got != string(key) {
			t.Fatalf("forwarded %s %s (Host %q) keys as %q, the fast front keyed %q", out.Method, out.URL.RequestURI(), out.Host, got, key)
		}
		if out.Method != http.MethodGet || out.Body != nil || out.URL.Host != "origin.test:8080" || out.URL.Scheme != "http" {
			t.Fatalf("forwarded %s %s body %v", out.Method, out.URL, out.Body)
		}
	})
}
