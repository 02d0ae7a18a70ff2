package edge

import (
	"bufio"
	"bytes"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// FuzzParseHead checks the fast front's header reader against net/http:
// whatever it accepts as a request it may answer itself (a complete,
// bodiless GET or HEAD) net/http must read the same way — same method,
// target and Host, no body — so that no request means one thing to the
// fast front and another to net/http behind it; both derive the same cache
// key (normalized host, scheme, keyed target), and the request a miss
// sends upstream carries exactly what was keyed.
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
		"GET /obj HTTP/1.1\r\nHost: Site.Test.:8080\r\n\r\n",
		"GET /obj HTTP/1.1\r\nHost: site.test:99999\r\n\r\n",
		"GET /obj HTTP/1.1\r\nHost: site.test:'onerror='alert(1)\r\n\r\n",
		"GET /obj?id=1&utm_source=x;id=EVIL HTTP/1.1\r\nHost: site.test\r\n\r\n",
		"GET /obj HTTP/1.1\r\nHost: site.test\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Proto: HTTPS\r\n\r\n",
		"GET /obj HTTP/1.1\r\nHost: site.test\r\nX-Forwarded-Proto: https, http\r\n\r\n",
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
		// keys on the target as sent and for one that rewrites it, over
		// plain HTTP and (from a trusted proxy) HTTPS; a Host that
		// ServeHTTP refuses (400) is never a hit.
		if _, ok := normalizeHost(r.Host); !ok {
			if _, _, _, ok := appendHitKey(nil, false, req.host, req.target); ok {
				t.Fatalf("fast front keys a Host that ServeHTTP refuses: %q", req.host)
			}
			return
		}
		r.RemoteAddr = "192.0.2.7:4711"
		trusted := proxyList{netip.MustParsePrefix("192.0.2.0/24")}
		for _, trust := range []proxyList{nil, trusted} {
			https := req.proto != nil && forwardedProto(req.proto) == "https" && trust.contains(peerOf(r.RemoteAddr))
			key, hostStart, hostEnd, ok := appendHitKey(nil, https, req.host, req.target)
			if !ok {
				t.Fatalf("fast front refuses a Host that ServeHTTP keys: %q", req.host)
			}
			if string(key[hostStart:hostEnd]) != mustNormalize(t, r.Host) {
				t.Fatalf("routing host %q, ServeHTTP's %q", key[hostStart:hostEnd], r.Host)
			}
			plain := &site{cfg: SiteConfig{CacheKey: CacheKeyConfig{}.withDefaults()}, trusted: trust}
			if want := plain.cacheKey(r); string(key) != want {
				t.Fatalf("key %q, ServeHTTP's %q", key, want)
			}
			rules := CacheKeyConfig{Query: KeyQuerySorted, IgnoreParams: []string{"utm_*"}}
			rewriting := &site{cfg: SiteConfig{CacheKey: rules}, trusted: trust}
			if got, want := string(key[:hostEnd])+rules.target(string(key[hostEnd:])), rewriting.cacheKey(r); got != want {
				t.Fatalf("rewritten key %q, ServeHTTP's %q", got, want)
			}
			// The request a miss sends upstream carries exactly what was
			// keyed: the normalized host, the keyed target and scheme.
			for _, st := range []*site{plain, rewriting} {
				st.origin = &url.URL{Scheme: "http", Host: "origin.test"}
				h := &Handler{cfg: Config{Name: "fuzz"}, via: "1.1 fuzz", trusted: trust}
				out := h.upstreamRequest(st, r, nil)
				fi, _ := FillInfoFrom(out.Context())
				keyed := strings.TrimPrefix(fi.Key, keyPrefix(fi.Scheme))
				if out.Host != fi.Host || keyed != out.Host+out.URL.RequestURI() && !(out.URL.RequestURI() == "/" && keyed == out.Host) {
					t.Fatalf("forwarded Host %q target %q, keyed %q", out.Host, out.URL.RequestURI(), fi.Key)
				}
				if got := out.Header.Get("X-Forwarded-Proto"); got != fi.Scheme || fi.Key != st.cacheKey(r) {
					t.Fatalf("forwarded scheme %q, key %q (ServeHTTP's %q)", got, fi.Key, st.cacheKey(r))
				}
			}
		}
		// The forwarded request (a miss, which the fast front lends to
		// net/http) is what was keyed, through the edge's own site table:
		// its Host and target give the same key, it goes to the site's
		// origin, as a bodiless GET.
		st := h.route(r.Host)
		if st == nil {
			return
		}
		key, hostStart, hostEnd, _ := appendHitKey(nil, false, req.host, req.target)
		if hk := h.route(string(key[hostStart:hostEnd])); hk != st {
			t.Fatalf("the fast front's key routes to another site than net/http's Host %q", r.Host)
		}
		out := h.upstreamRequest(st, r, nil)
		if fi, _ := FillInfoFrom(out.Context()); fi.Key != string(key) {
			t.Fatalf("forwarded %s %s (Host %q) keys as %q, the fast front keyed %q", out.Method, out.URL.RequestURI(), out.Host, fi.Key, key)
		}
		if out.Method != http.MethodGet || out.Body != nil || out.URL.Host != "origin.test:8080" || out.URL.Scheme != "http" {
			t.Fatalf("forwarded %s %s body %v", out.Method, out.URL, out.Body)
		}
	})
}

func mustNormalize(t *testing.T, host string) string {
	t.Helper()
	h, ok := normalizeHost(host)
	if !ok {
		t.Fatalf("normalizeHost(%q) failed", host)
	}
	return h
}
