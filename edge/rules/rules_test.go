package rules

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "/a/b", true},
		{"/static/*", "/static/a/b.js", true},
		{"/static/*", "/static", false},
		{"*.css", "/a/b/c.css", true},
		{"*.css", "/a/b/c.css/x", false},
		{"/a?c", "/abc", true},
		{"/a?c", "/ac", false},
		{"/a*b*c", "/aXbYc", true},
		{"/a*b*c", "/aXbY", false},
		{"/img/*/large/*", "/img/x/y/large/z.png", true},
		{"/exact", "/exact", true},
		{"/exact", "/exactly", false},
		{"**", "/x", true},
		{strings.Repeat("*a", 30) + "b", strings.Repeat("a", 200), false}, // no exponential blow-up
	} {
		if got := Glob(tc.pattern, tc.s); got != tc.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                    "/",
		"/":                   "/",
		"/a/b":                "/a/b",
		"/a/b/":               "/a/b/",
		"/a//b":               "/a/b",
		"/a/./b":              "/a/b",
		"/public/../private/": "/private/",
		"/..":                 "/",
		"/a/..":               "/",
		"/.hidden":            "/.hidden",
		"/a/..b":              "/a/..b",
		"*":                   "*",
	} {
		if got := CleanPath(in); got != want {
			t.Errorf("CleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// parse reads a site's rules as YAML, with defaults, and validates them.
func parse(t *testing.T, src string) (Config, error) {
	t.Helper()
	var c Config
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	c = c.WithDefaults()
	return c, c.Validate("sites[0].")
}

func mustSet(t *testing.T, src string, opt Options) *Set {
	t.Helper()
	c, err := parse(t, src)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Compile(c, opt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"headers: {response: [{set: {Content-Length: '1'}}]}", "sites[0].headers.response[0].set: \"Content-Length\" frames"},
		{"headers: {response: [{set: {X-A: \"a\\nb\"}}]}", "sites[0].headers.response[0].set.X-A: value"},
		{"headers: {response: [{set: {x-a: a, X-A: b}}]}", "are the same field"},
		{"headers: {response: [{status: [20x], set: {X-A: a}}]}", "sites[0].headers.response[0].status[0]"},
		{"headers: {request: [{status: [200], set: {X-A: a}}]}", "sites[0].headers.request[0].status: only response"},
		{"headers: {request: [{prefix: /a}]}", "sites[0].headers.request[0]: sets, adds and removes nothing"},
		{"headers: {request: [{path: 'a*', remove: [Cookie]}]}", "sites[0].headers.request[0].path"},
		{"headers: {request: [{prefix: '/a*', remove: [Cookie]}]}", "sites[0].headers.request[0].prefix"},
		{"headers: {request: [{remove: [Host]}]}", "sites[0].headers.request[0].remove[0]"},
		{"headers: {request: [{remove: ['bad name']}]}", "sites[0].headers.request[0].remove[0]"},
		{"redirects: [{prefix: /a}]", "sites[0].redirects[0]: want exactly one of"},
		{"redirects: [{https: true, rewrite_to: /b}]", "sites[0].redirects[0]: want exactly one of"},
		{"redirects: [{https: true, status: 200}]", "sites[0].redirects[0].status: 200"},
		{"redirects: [{rewrite_to: /b, status: 301}]", "sites[0].redirects[0].status: a rewrite"},
		{"redirects: [{rewrite_to: b}]", "sites[0].redirects[0].rewrite_to"},
		{"redirects: [{redirect_to: '//evil.test/'}]", "sites[0].redirects[0].redirect_to"},
		{"redirects: [{redirect_to: 'ftp://x.test/'}]", "sites[0].redirects[0].redirect_to"},
		{"redirects: [{redirect_to: 'https://x.test/?a=1'}]", "sites[0].redirects[0].redirect_to"},
		{"redirects: [{canonical_host: 'a b'}]", "sites[0].redirects[0].canonical_host"},
		{"redirects: [{https: true, name: '1x'}]", "sites[0].redirects[0].name"},
		{"redirects: [{redirect_to: /x, https_port: 8443}]", "sites[0].redirects[0].https_port"},
		{"redirects: [{https: true, hosts: ['a:80']}]", "sites[0].redirects[0].hosts[0]"},
		{"signed_urls: {keys: [short]}", "sites[0].signed_urls.keys[0]"},
		{"signed_urls: {prefixes: [/dl/]}", "sites[0].signed_urls.keys: required"},
		{"signed_urls: {keys: [0123456789abcdef], prefixes: ['/dl/*']}", "sites[0].signed_urls.prefixes[0]"},
		{"signed_urls: {keys: [0123456789abcdef], token_param: 'a&b'}", "sites[0].signed_urls.token_param"},
		{"signed_urls: {keys: [0123456789abcdef], token_param: expires}", "sites[0].signed_urls.token_param"},
		{"geo_access: {rules: [{deny_countries: [DE]}]}", "sites[0].geo_access.database: required"},
		{"geo_access: {database: x.mmdb, rules: [{deny_countries: [DEU]}]}", "sites[0].geo_access.rules[0].deny_countries[0]"},
		{"geo_access: {database: x.mmdb, rules: [{allow_continents: [XX]}]}", "sites[0].geo_access.rules[0].allow_continents[0]"},
		{"geo_access: {database: x.mmdb, rules: [{prefix: /x}]}", "sites[0].geo_access.rules[0]: allows and denies nothing"},
	} {
		_, err := parse(t, tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %q", tc.src, err, tc.want)
		}
	}
	if _, err := parse(t, "headers: {response: [{status: [200, 4xx], set: {X-A: a}}]}\nredirects: [{https: true}, {canonical_host: www.a.test}, {prefix: /old/, redirect_to: /new/}, {prefix: /api/, rewrite_to: /v2/}]\nsigned_urls: {keys: [0123456789abcdef]}\ngeo_access: {database: x.mmdb, rules: [{allow_countries: [de], deny_continents: [as]}]}"); err != nil {
		t.Fatalf("valid rules refused: %v", err)
	}
}

func TestHeaderRules(t *testing.T) {
	s := mustSet(t, `
headers:
  request:
    - prefix: /api/
      set: {X-Api: "1"}
      remove: [Cookie]
  response:
    - set: {Strict-Transport-Security: "max-age=63072000"}
      remove: [Server]
    - path: "*.css"
      status: ["2xx"]
      remove: [Set-Cookie]
      add: {Vary: Origin}
    - status: ["404"]
      set: {Cache-Control: no-store}
`, Options{})
	req := http.Header{"Cookie": {"a=1"}, "X-Api": {"0", "2"}}
	s.RequestHeaders(req, "/api/x")
	if req.Get("Cookie") != "" || len(req["X-Api"]) != 1 || req.Get("X-Api") != "1" {
		t.Errorf("request rules: %v", req)
	}
	req = http.Header{"Cookie": {"a=1"}}
	s.RequestHeaders(req, "/other")
	if req.Get("Cookie") != "a=1" || req["X-Api"] != nil {
		t.Errorf("request rule applied off its prefix: %v", req)
	}
	// Dot segments cannot dodge a prefix.
	req = http.Header{"Cookie": {"a=1"}}
	s.RequestHeaders(req, "/x/../api//y")
	if req.Get("Cookie") != "" {
		t.Errorf("/x/../api//y dodged prefix /api/: %v", req)
	}

	shared := make([]string, 1, 2) // room to append in place: add must not use it
	shared[0] = "Accept-Encoding"
	resp := http.Header{"Server": {"origin"}, "Set-Cookie": {"s=1"}, "Vary": shared}
	s.ResponseHeaders(resp, "/a/site.css", 200)
	if resp["Server"] != nil || resp["Set-Cookie"] != nil || resp.Get("Strict-Transport-Security") == "" ||
		strings.Join(resp["Vary"], ",") != "Accept-Encoding,Origin" || resp["Cache-Control"] != nil {
		t.Errorf("response rules on a 200 css: %v", resp)
	}
	if shared[:2][1] != "" {
		t.Errorf("add wrote into the caller's slice: %q", shared[:2])
	}
	resp = http.Header{"Set-Cookie": {"s=1"}}
	s.ResponseHeaders(resp, "/a/site.css", 404)
	if resp.Get("Set-Cookie") == "" || resp.Get("Cache-Control") != "no-store" {
		t.Errorf("response rules on a 404 css: %v", resp)
	}
}

type fakeLocator map[netip.Addr][2]string

func (f fakeLocator) Locate(a netip.Addr) (string, string) { l := f[a]; return l[0], l[1] }

func TestDecide(t *testing.T) {
	de, us, jp := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	unknown := netip.MustParseAddr("192.0.2.4")
	loc := fakeLocator{de: {"DE", "EU"}, us: {"US", "NA"}, jp: {"JP", "AS"}}
	s := mustSet(t, `
redirects:
  - https: true
    hosts: [secure.test]
  - name: canonical
    canonical_host: www.site.test
    hosts: [site.test]
  - prefix: /old/
    redirect_to: /new/
  - prefix: /gone/
    redirect_to: https://elsewhere.test/
    status: 302
  - name: api-v2
    prefix: /api/
    rewrite_to: /v2/
  - path: "/exact/*.txt"
    rewrite_to: /one.txt
geo_access:
  database: x.mmdb
  rules:
    - prefix: /eu/
      allow_continents: [EU]
    - prefix: /
      deny_countries: [JP]
`, Options{HTTPSPort: 8443, Locator: loc})
	for _, tc := range []struct {
		name                string
		req                 Request
		status              int
		location, rule, tgt string
	}{
		{"https with port", Request{Scheme: "http", Host: "secure.test", Target: "/a?b=1", Path: "/a"}, 308, "https://secure.test:8443/a?b=1", "redirect-rule-0", ""},
		{"already https", Request{Scheme: "https", Host: "secure.test", Target: "/a", Path: "/a"}, 0, "", "", ""},
		{"canonical keeps port", Request{Scheme: "http", Host: "site.test", Port: "8080", Target: "/p?q", Path: "/p"}, 301, "http://www.site.test:8080/p?q", "canonical", ""},
		{"canonical already", Request{Scheme: "http", Host: "www.site.test", Target: "/p", Path: "/p"}, 0, "", "", ""},
		{"prefix redirect", Request{Scheme: "https", Host: "www.site.test", Target: "/old/a/b?x=1", Path: "/old/a/b"}, 301, "/new/a/b?x=1", "redirect-rule-2", ""},
		{"prefix redirect, no open redirect", Request{Scheme: "https", Host: "www.site.test", Target: "/old//evil.test", Path: "/old//evil.test"}, 301, "/new/evil.test", "redirect-rule-2", ""},
		{"absolute redirect", Request{Scheme: "https", Host: "www.site.test", Target: "/gone/x", Path: "/gone/x"}, 302, "https://elsewhere.test/x", "redirect-rule-3", ""},
		{"rewrite", Request{Scheme: "https", Host: "www.site.test", Target: "/api/users?id=1", Path: "/api/users"}, 0, "", "api-v2", "/v2/users?id=1"},
		{"rewrite escapes", Request{Scheme: "https", Host: "www.site.test", Target: "/api/a%20b", Path: "/api/a b"}, 0, "", "api-v2", "/v2/a%20b"},
		{"glob rewrite", Request{Scheme: "https", Host: "www.site.test", Target: "/exact/x/y.txt", Path: "/exact/x/y.txt"}, 0, "", "rewrite-rule-5", "/one.txt"},
		{"geo allow EU", Request{Scheme: "https", Host: "www.site.test", Target: "/eu/x", Path: "/eu/x", Client: func() netip.Addr { return de }}, 0, "", "", ""},
		{"geo deny non-EU", Request{Scheme: "https", Host: "www.site.test", Target: "/eu/x", Path: "/eu/x", Client: func() netip.Addr { return us }}, 403, "", "geo-denied", ""},
		{"geo deny unknown on allow list", Request{Scheme: "https", Host: "www.site.test", Target: "/eu/x", Path: "/eu/x", Client: func() netip.Addr { return unknown }}, 403, "", "geo-denied", ""},
		{"geo deny dot segments", Request{Scheme: "https", Host: "www.site.test", Target: "/x/../eu/x", Path: "/x/../eu/x", Client: func() netip.Addr { return us }}, 403, "", "geo-denied", ""},
		{"geo first match decides", Request{Scheme: "https", Host: "www.site.test", Target: "/eu/x", Path: "/eu/x", Client: func() netip.Addr { return jp }}, 403, "", "geo-denied", ""},
		{"geo deny list", Request{Scheme: "https", Host: "www.site.test", Target: "/x", Path: "/x", Client: func() netip.Addr { return jp }}, 403, "", "geo-denied", ""},
		{"geo deny list, unknown allowed", Request{Scheme: "https", Host: "www.site.test", Target: "/x", Path: "/x", Client: func() netip.Addr { return unknown }}, 0, "", "", ""},
	} {
		if tc.req.Client == nil {
			tc.req.Client = func() netip.Addr { return de }
		}
		d := s.Decide(tc.req, time.Unix(0, 0))
		if d.Status != tc.status || d.Location != tc.location || d.Rule != tc.rule || d.Target != tc.tgt {
			t.Errorf("%s: got %+v, want status %d location %q rule %q target %q", tc.name, d, tc.status, tc.location, tc.rule, tc.tgt)
		}
	}
	if got := s.KeyTarget("www.site.test", "/api/a?b"); got != "/v2/a?b" {
		t.Errorf("KeyTarget of a rewritten URL: %q", got)
	}
}

func TestSignedURLs(t *testing.T) {
	const key1, key2 = "first-key-0123456789", "second-key-0123456789"
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := mustSet(t, "signed_urls: {keys: ["+key1+", "+key2+"], prefixes: [/dl/]}", Options{})
	cfg := SignedURLConfig{}
	valid := Sign(cfg, []byte(key1), "/dl/file.zip?v=2", now.Add(time.Hour))
	rotated := Sign(cfg, []byte(key2), "/dl/file.zip?v=2", now.Add(time.Hour))
	other := Sign(cfg, []byte("a-key-nobody-configured"), "/dl/file.zip?v=2", now.Add(time.Hour))
	expired := Sign(cfg, []byte(key1), "/dl/file.zip?v=2", now.Add(-time.Second))
	bare := Sign(cfg, []byte(key1), "/dl/file.zip", now.Add(time.Hour))
	if !strings.HasPrefix(valid, "/dl/file.zip?v=2&expires=") || !strings.Contains(valid, "&token=") {
		t.Fatalf("signed: %q", valid)
	}
	if abs := Sign(cfg, []byte(key1), "https://dl.test/dl/f?a=1#frag", now); !strings.HasPrefix(abs, "https://dl.test/dl/f?a=1&expires=") || strings.Contains(abs, "#") {
		t.Fatalf("absolute URL signed as %q", abs)
	}
	tamper := func(u, old, new string) string { return strings.Replace(u, old, new, 1) }
	for _, tc := range []struct {
		name, target, rule, tgt string
	}{
		{"valid", valid, "", "/dl/file.zip?v=2"},
		{"valid, no query", bare, "", "/dl/file.zip"},
		{"second key", rotated, "", "/dl/file.zip?v=2"},
		{"unknown key", other, "signature-invalid", ""},
		{"expired", expired, "signature-expired", ""},
		{"path changed", tamper(valid, "file", "filf"), "signature-invalid", ""},
		{"query changed", tamper(valid, "v=2", "v=3"), "signature-invalid", ""},
		{"param added", valid + "&x=1", "signature-invalid", ""},
		{"expiry extended", tamper(valid, "expires=1", "expires=2"), "signature-invalid", ""},
		{"token missing", "/dl/file.zip?v=2", "signature-invalid", ""},
		{"token twice", valid + "&token=x", "signature-invalid", ""},
		{"token garbage", tamper(valid, "token=", "token=%%"), "signature-invalid", ""},
		{"not covered", "/free/x?token=1", "", ""},
		{"dot segments are covered", "/free/../dl/file.zip", "signature-invalid", ""},
	} {
		path, _, _ := strings.Cut(tc.target, "?")
		d := s.Decide(Request{Scheme: "https", Host: "a.test", Target: tc.target, Path: path}, now)
		wantStatus := 0
		if tc.rule != "" {
			wantStatus = 403
		}
		if d.Status != wantStatus || d.Rule != tc.rule || d.Target != tc.tgt {
			t.Errorf("%s (%s): got %+v, want status %d rule %q target %q", tc.name, tc.target, d, wantStatus, tc.rule, tc.tgt)
		}
	}
	if got := s.KeyTarget("a.test", valid); got != "/dl/file.zip?v=2" {
		t.Errorf("KeyTarget keeps the signature: %q", got)
	}
}

// TestSignedThenRewritten: the signature covers the client's URL; the
// origin gets the rewritten path without the signature's parameters.
func TestSignedThenRewritten(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := mustSet(t, "signed_urls: {keys: [0123456789abcdef]}\nredirects: [{prefix: /dl/, rewrite_to: /files/}]", Options{})
	u := Sign(SignedURLConfig{}, []byte("0123456789abcdef"), "/dl/a.bin?x=1", now.Add(time.Minute))
	d := s.Decide(Request{Scheme: "http", Host: "a.test", Target: u, Path: "/dl/a.bin"}, now)
	if d.Status != 0 || d.Target != "/files/a.bin?x=1" || d.Rule != "rewrite-rule-0" {
		t.Fatalf("got %+v", d)
	}
}

func TestCompileNeedsLocator(t *testing.T) {
	c, err := parse(t, "geo_access: {database: x.mmdb, rules: [{deny_countries: [DE]}]}")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Compile(c, Options{}); err == nil {
		t.Fatal("geo rules compiled without a locator")
	}
	if s, err := Compile(Config{}.WithDefaults(), Options{}); s != nil || err != nil {
		t.Fatalf("empty rules compiled to %v, %v", s, err)
	}
}
