package rules

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// FuzzGlob checks Glob against a plain recursive matcher.
func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{{"/static/*", "/static/a.js"}, {"*.css", "/a/b.css"}, {"/a?c*", "/abcd"}, {"**a*", "aaa"}, {"", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if len(pattern) > 256 || len(s) > 256 {
			return
		}
		if got, want := Glob(pattern, s), refGlob(pattern, s); got != want {
			t.Fatalf("Glob(%q, %q) = %v, want %v", pattern, s, got, want)
		}
	})
}

// refGlob is a plain dynamic-programming matcher: m[i][j] says
// whether p[i:] matches s[j:].
func refGlob(p, s string) bool {
	m := make([][]bool, len(p)+1)
	for i := range m {
		m[i] = make([]bool, len(s)+1)
	}
	m[len(p)][len(s)] = true
	for i := len(p) - 1; i >= 0; i-- {
		for j := len(s); j >= 0; j-- {
			switch {
			case p[i] == '*':
				m[i][j] = m[i+1][j] || j < len(s) && m[i][j+1]
			case j < len(s) && (p[i] == '?' || p[i] == s[j]):
				m[i][j] = m[i+1][j+1]
			}
		}
	}
	return m[0][0]
}

// FuzzCleanPath: the cleaned path has no dot segment and no "//", and
// cleaning is idempotent.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/a/../b", "//x", "/./", "/a/b/", "/.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if p == "" || p[0] != '/' {
			return
		}
		c := CleanPath(p)
		if CleanPath(c) != c || strings.Contains(c, "//") || strings.Contains(c+"/", "/./") || strings.Contains(c+"/", "/../") {
			t.Fatalf("CleanPath(%q) = %q", p, c)
		}
	})
}

// FuzzConfig reads arbitrary YAML as a site's rules: a config that
// validates compiles, and deciding and applying it never panics.
func FuzzConfig(f *testing.F) {
	for _, s := range []string{
		"headers: {response: [{status: [200, 4xx], path: '*.css', set: {X-A: a}, remove: [Server]}]}",
		"redirects: [{https: true, https_port: 8443}, {canonical_host: www.a.test}, {prefix: /old/, redirect_to: /new/}, {prefix: /api/, rewrite_to: /v2/}]",
		"signed_urls: {keys: [0123456789abcdef], prefixes: [/dl/]}",
		"geo_access: {database: x.mmdb, rules: [{allow_countries: [de], deny_continents: [as]}]}",
	} {
		f.Add(s, "/api/x?y=1")
	}
	f.Fuzz(func(t *testing.T, src, target string) {
		var c Config
		if yaml.Unmarshal([]byte(src), &c) != nil {
			return
		}
		c = c.WithDefaults()
		if c.Validate("") != nil {
			return
		}
		s, err := Compile(c, Options{Locator: fakeLocator{}})
		if err != nil {
			t.Fatalf("validated config does not compile: %v", err)
		}
		if s == nil || target == "" || target[0] != '/' {
			return
		}
		path, _, _ := strings.Cut(target, "?")
		d := s.Decide(Request{Scheme: "http", Host: "a.test", Target: target, Path: path, Client: func() netip.Addr { return netip.Addr{} }}, time.Unix(0, 0))
		if d.Location != "" && strings.HasPrefix(d.Location, "//") {
			t.Fatalf("scheme-relative Location %q", d.Location)
		}
		if d.Target != "" && d.Target[0] != '/' {
			t.Fatalf("target %q is not in origin form", d.Target)
		}
		h := http.Header{}
		s.RequestHeaders(h, path)
		s.ResponseHeaders(h, path, 200)
		s.KeyTarget("a.test", target)
	})
}

// FuzzSignedURL: a URL signed under a key verifies, once, to itself
// without the parameters; any other target never panics, and verifies
// only if it is the same URL.
func FuzzSignedURL(f *testing.F) {
	f.Add("/dl/a.zip?x=1", "/dl/a.zip?x=1&expires=1&token=AAAA")
	f.Add("/dl/a%20b", "/dl/a%20b?token=x&expires=99999999999")
	f.Add("/dl/?&&", "/dl/?expires=&token=")
	const key = "0123456789abcdef"
	s := &signedURLs{cfg: SignedURLConfig{Keys: []string{key}}.WithDefaults(), keys: [][]byte{[]byte(key)}}
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, u, other string) {
		if u == "" || u[0] != '/' || strings.ContainsAny(u, "#") {
			return
		}
		signed := Sign(s.cfg, []byte(key), u, now.Add(time.Hour))
		got, err := s.verify(signed, now)
		if err != nil {
			t.Fatalf("Sign(%q) = %q does not verify: %v", u, signed, err)
		}
		if strings.Contains(got, "token=") && !strings.Contains(u, "token=") {
			t.Fatalf("verified target %q keeps the token", got)
		}
		if g2, err := s.verify(other, now); err == nil {
			// Only a URL signed by us verifies: the one the fuzzer
			// copied, equal to signed up to the query's empty
			// parameters.
			if g2 != got && !strings.Contains(other, "token=") {
				t.Fatalf("unsigned %q verified as %q", other, g2)
			}
		}
	})
}
