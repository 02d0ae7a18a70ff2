package edge

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// FuzzHitKey checks the hit contract's key against ServeHTTP's: for a
// Host, an origin-form target and an X-Forwarded-Proto (from a trusted
// proxy or not) that net/http reads, the key LookupHit derives
// (appendHitKey, then the site's cache_key rules) is the one ServeHTTP
// derives (site.cacheKey), its routing host is ServeHTTP's, a Host that
// ServeHTTP refuses (400) is never keyed, and the request a miss sends
// upstream carries exactly what was keyed. (The fast front's reader is
// checked against net/http by package listen's FuzzParseHead.)
func FuzzHitKey(f *testing.F) {
	for _, s := range [][3]string{
		{"site.test", "/obj", ""},
		{"site.test:8080", "/a?b=c%20d", ""},
		{"A.Test.", "/obj", ""},
		{"Site.Test.:8080", "/obj", ""},
		{"site.test:99999", "/obj", ""},
		{"site.test:'onerror='alert(1)", "/obj", ""},
		{"[::1]:80", "/obj", ""},
		{"site.test", "/obj?id=1&utm_source=x;id=EVIL", ""},
		{"site.test", "/obj", "HTTPS"},
		{"site.test", "/obj", "https, http"},
		{"site.test", "/obj", "http, https"},
	} {
		f.Add(s[0], s[1], s[2], true)
		f.Add(s[0], s[1], s[2], false)
	}
	// An edge whose site forwards misses: what it would send upstream for
	// a request is compared with what the hit contract keyed.
	h, err := New(Config{Sites: []SiteConfig{{Hosts: []string{"site.test", "a.test"}, Origin: "http://origin.test:8080"}}},
		Options{Upstream: func(SiteConfig) http.RoundTripper { return http.DefaultTransport }})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { h.Close() })
	f.Fuzz(func(t *testing.T, host, target, xfp string, fromProxy bool) {
		raw := "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n"
		if xfp != "" {
			raw += "X-Forwarded-Proto: " + xfp + "\r\n"
		}
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw + "\r\n")))
		if err != nil || !strings.HasPrefix(target, "/") || r.Host != host || r.RequestURI != target ||
			xfp != "" && (len(r.Header["X-Forwarded-Proto"]) != 1 || r.Header["X-Forwarded-Proto"][0] != xfp) {
			return // not a request the fast front hands over as read
		}
		var proto []byte
		if xfp != "" {
			proto = []byte(xfp)
		}
		if _, ok := normalizeHost(r.Host); !ok {
			if _, _, _, ok := appendHitKey(nil, false, []byte(host), []byte(target)); ok {
				t.Fatalf("the hit contract keys a Host that ServeHTTP refuses: %q", host)
			}
			return
		}
		r.RemoteAddr = "198.51.100.9:4711"
		if fromProxy {
			r.RemoteAddr = "192.0.2.7:4711"
		}
		remote := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(r.RemoteAddr))
		trusted := proxyList{netip.MustParsePrefix("192.0.2.0/24")}
		for _, trust := range []proxyList{nil, trusted} {
			th := &Handler{trusted: trust}
			https := proto != nil && forwardedProto(proto) == "https" && th.trustsPeer(remote)
			key, hostStart, hostEnd, ok := appendHitKey(nil, https, []byte(host), []byte(target))
			if !ok {
				t.Fatalf("the hit contract refuses a Host that ServeHTTP keys: %q", host)
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
			// (For a target whose bytes net/url keeps as sent: it
			// re-escapes others, a raw '"' goes upstream as %22, while
			// the key keeps the byte as sent. The fast front hands no
			// such target to LookupHit: it refers them to net/http.)
			if !keptAsSent(target) {
				continue
			}
			for _, st := range []*site{plain, rewriting} {
				st.origin = &url.URL{Scheme: "http", Host: "origin.test"}
				h := &Handler{cfg: Config{Name: "fuzz"}, via: "1.1 fuzz", trusted: trust}
				out := h.upstreamRequest(context.Background(), st, st.cacheKey(r), r, nil)
				fi := fillInfoOf(out)
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
		st := h.route(mustNormalize(t, r.Host))
		if st == nil {
			return
		}
		key, hostStart, hostEnd, _ := appendHitKey(nil, false, []byte(host), []byte(target))
		if hk := h.route(string(key[hostStart:hostEnd])); hk != st {
			t.Fatalf("the hit key routes to another site than net/http's Host %q", r.Host)
		}
		if !keptAsSent(target) {
			return
		}
		r.Header.Del("X-Forwarded-Proto")
		out := h.upstreamRequest(context.Background(), st, st.cacheKey(r), r, nil)
		if fi := fillInfoOf(out); fi.Key != string(key) {
			t.Fatalf("forwarded %s %s (Host %q) keys as %q, the hit contract keyed %q", out.Method, out.URL.RequestURI(), out.Host, fi.Key, key)
		}
		if out.Method != http.MethodGet || out.Body != nil || out.URL.Host != "origin.test:8080" || out.URL.Scheme != "http" {
			t.Fatalf("forwarded %s %s body %v", out.Method, out.URL, out.Body)
		}
	})
}

// keptAsSent reports whether net/url writes target back as it was sent.
func keptAsSent(target string) bool {
	u, err := url.ParseRequestURI(target)
	return err == nil && u.RequestURI() == target
}

func mustNormalize(t *testing.T, host string) string {
	t.Helper()
	h, ok := normalizeHost(host)
	if !ok {
		t.Fatalf("normalizeHost(%q) failed", host)
	}
	return h
}
