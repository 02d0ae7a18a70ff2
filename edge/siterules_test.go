package edge_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
	"go.yaml.in/yaml/v3"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/listen"
	"github.com/meridiancdn/meridian/edge/rules"
)

// proto is one way a client reaches the edge: the plain HTTP/1.1 front
// (net/http or fast, per TestMain's run), HTTP/2 over TLS, or HTTP/3.
type proto struct {
	name  string
	major int
	base  string // scheme://addr
	rt    http.RoundTripper
}

// rulesEnv is an edge with a site's rules on every front.
type rulesEnv struct {
	*env
	protos []proto
}

// newRulesEnv starts an edge whose first site has the rules in yamlRules
// (the site's fields, as in a config file), behind plain, TLS (HTTP/2)
// and QUIC (HTTP/3) listeners.
func newRulesEnv(t *testing.T, h http.HandlerFunc, yamlRules string, mutate ...func(*edge.Config)) *rulesEnv {
	t.Helper()
	var rc rules.Config
	if err := yaml.Unmarshal([]byte(yamlRules), &rc); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPEM, keyPEM, err := listen.SelfSignedCert([]string{"127.0.0.1", testHost}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	base := newEnv(t, h, append([]func(*edge.Config){func(c *edge.Config) { c.Sites[0].Rules = rc }}, mutate...)...)
	cfg := base.cfg
	cfg.TLS = &edge.TLSConfig{Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile}
	srv := listen.NewServer(cfg, base.edge, listen.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	pool := (&tlsEnv{certPEM: certPEM}).pool()
	tlsConf := &tls.Config{RootCAs: pool, ServerName: testHost}
	h2 := &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true, DisableCompression: true}
	h3 := &http3.Transport{TLSClientConfig: tlsConf}
	t.Cleanup(func() {
		h2.CloseIdleConnections()
		h3.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &rulesEnv{env: base, protos: []proto{
		{"http/1.1 " + testFront, 1, base.base, base.client.Transport},
		{"h2", 2, "https://" + srv.TLSAddr(), h2},
		{"h3", 3, "https://" + srv.TLSAddr(), h3},
	}}
}

// send makes one request over p for host (testHost when "") and returns
// the response with its body read.
func (p proto) send(t *testing.T, method, host, target string, kv ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, p.base+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = testHost
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Add(kv[i], kv[i+1])
	}
	resp, err := p.rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s: %s %s: %v", p.name, method, target, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != p.major {
		t.Fatalf("%s: answered over %s", p.name, resp.Proto)
	}
	return resp, string(b)
}

// TestRulesHeadersOnEveryFront: request rules reach the origin, response
// rules every answer (misses, hits, a 404, from both HTTP/1.1 fronts, HTTP/2
// and HTTP/3), and the stored response stays the origin's.
func TestRulesHeadersOnEveryFront(t *testing.T) {
	e := newRulesEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Server", "origin-server/1.0")
		w.Header().Set("X-Powered-By", "php")
		if r.URL.Path == "/static/missing.css" {
			w.WriteHeader(404)
			io.WriteString(w, "no such file")
			return
		}
		w.Header().Set("Content-Type", "text/css")
		io.WriteString(w, "body{}")
	}, `
headers:
  request:
    - prefix: /static/
      set: {X-From-Edge: rules}
      remove: [Cookie]
  response:
    - set: {Strict-Transport-Security: max-age=63072000}
      remove: [Server, X-Powered-By]
    - path: "*.css"
      status: [2xx]
      add: {Access-Control-Allow-Origin: "*"}
`)
	for _, p := range e.protos {
		t.Run(p.name, func(t *testing.T) {
			for i := 0; i < 2; i++ {
				resp, body := p.send(t, "GET", "", "/static/a.css", "Cookie", "session=secret")
				wantStatus(t, resp, 200)
				if i == 1 {
					wantCS(t, resp, "hit")
				}
				if body != "body{}" {
					t.Fatalf("body %q", body)
				}
				if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=63072000" {
					t.Errorf("request %d: Strict-Transport-Security %q", i, got)
				}
				if resp.Header["Server"] != nil || resp.Header["X-Powered-By"] != nil {
					t.Errorf("request %d: removed fields still sent: %v", i, resp.Header)
				}
				// Exactly one value, on the hit too: the stored response
				// is the origin's, the rule applies on the way out.
				if got := resp.Header["Access-Control-Allow-Origin"]; len(got) != 1 || got[0] != "*" {
					t.Errorf("request %d: Access-Control-Allow-Origin %q", i, got)
				}
			}
			resp, _ := p.send(t, "GET", "", "/static/missing.css")
			wantStatus(t, resp, 404)
			if resp.Header.Get("Strict-Transport-Security") == "" || resp.Header["Access-Control-Allow-Origin"] != nil {
				t.Errorf("404: %v (the 2xx rule applied, or the unconditional one did not)", resp.Header)
			}
		})
	}
	last := e.origin.lastRequest()
	if last.Header.Get("X-From-Edge") != "rules" || last.Header["Cookie"] != nil {
		t.Fatalf("origin got %v", last.Header)
	}
	if n := e.origin.count("/static/a.css"); n != 2 {
		t.Fatalf("origin asked %d times for /static/a.css, want 2 (http and https keys)", n)
	}
}

// TestRulesRedirectsAndRewrites: first match wins; https (with its port),
// canonical host (keeping the client's port), a prefix redirect and a
// prefix rewrite whose key is the rewritten URL's; Cache-Status names the
// rule.
func TestRulesRedirectsAndRewrites(t *testing.T) {
	e := newRulesEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "origin saw "+r.URL.RequestURI())
	}, `
redirects:
  - name: to-https
    https: true
    https_port: 8443
    hosts: [secure.site.test]
  - canonical_host: site.test
    hosts: [www.site.test]
  - prefix: /old/
    redirect_to: /new/
    status: 302
  - name: api
    prefix: /api/
    rewrite_to: /v2/
headers:
  response:
    - set: {X-Frame-Options: DENY}
`, func(c *edge.Config) { c.Sites[0].Hosts = append(c.Sites[0].Hosts, "www.site.test", "secure.site.test") })
	_, port, _ := strings.Cut(e.srv.Addr(), ":")
	for _, p := range e.protos {
		t.Run(p.name, func(t *testing.T) {
			resp, _ := p.send(t, "GET", "secure.site.test", "/x?a=1")
			if p.major == 1 {
				wantStatus(t, resp, 308)
				if loc := resp.Header.Get("Location"); loc != "https://secure.site.test:8443/x?a=1" {
					t.Errorf("Location %q", loc)
				}
				wantCS(t, resp, "detail=to-https")
			} else {
				wantStatus(t, resp, 200) // HTTPS already: the rule does not match
			}
			if resp.Header.Get("X-Frame-Options") != "DENY" {
				t.Errorf("response rules skipped: %v", resp.Header)
			}

			host, scheme := "www.site.test", "https"
			if p.major == 1 {
				host, scheme = "www.site.test:"+port, "http"
			}
			resp, _ = p.send(t, "GET", host, "/page?q=1")
			wantStatus(t, resp, 301)
			want := scheme + "://site.test/page?q=1"
			if p.major == 1 {
				want = "http://site.test:" + port + "/page?q=1"
			}
			if loc := resp.Header.Get("Location"); loc != want {
				t.Errorf("canonical Location %q, want %q", loc, want)
			}
			wantCS(t, resp, "detail=redirect-rule-1")

			resp, _ = p.send(t, "GET", "", "/old/a/b?x=1")
			wantStatus(t, resp, 302)
			if loc := resp.Header.Get("Location"); loc != "/new/a/b?x=1" {
				t.Errorf("prefix Location %q", loc)
			}
			wantCS(t, resp, "detail=redirect-rule-2")

			resp, body := p.send(t, "GET", "", "/api/items?id=7")
			wantStatus(t, resp, 200)
			if body != "origin saw /v2/items?id=7" {
				t.Errorf("rewrite: %q", body)
			}
			wantCS(t, resp, "detail=api")
			// The key is the rewritten URL's: the same object answers
			// its own URL from the cache.
			resp, body = p.send(t, "GET", "", "/v2/items?id=7")
			wantStatus(t, resp, 200)
			wantCS(t, resp, "hit")
			if body != "origin saw /v2/items?id=7" {
				t.Errorf("direct: %q", body)
			}
		})
	}
	for _, path := range []string{"/x", "/page", "/old/a/b", "/new/a/b", "/api/items"} {
		if n := e.origin.count(path); n != 0 && path != "/x" {
			t.Errorf("origin asked for %s %d times", path, n)
		}
	}
	if n := e.origin.count("/v2/items"); n != 2 {
		t.Errorf("origin asked for /v2/items %d times, want 2 (http and https keys)", n)
	}
}

// TestRulesSignedURLs: a valid token (either key) is served, and neither
// the key nor the origin sees the token's parameters; expired, tampered
// or missing tokens get 403 without reaching the origin.
func TestRulesSignedURLs(t *testing.T) {
	const newKey, oldKey = "new-key-0123456789abcdef", "old-key-0123456789abcdef"
	e := newRulesEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "file for "+r.URL.RequestURI())
	}, `
signed_urls:
  keys: [`+newKey+`, `+oldKey+`]
  prefixes: [/dl/]
`)
	sign := func(key, u string, ttl time.Duration) string {
		return rules.Sign(rules.SignedURLConfig{}, []byte(key), u, e.clock.Now().Add(ttl))
	}
	for _, p := range e.protos {
		t.Run(p.name, func(t *testing.T) {
			for i, u := range []string{
				sign(newKey, "/dl/f.bin?v=1", time.Hour),
				sign(newKey, "/dl/f.bin?v=1", 2*time.Hour), // another token, the same object
				sign(oldKey, "/dl/f.bin?v=1", time.Hour),   // the key being rotated out
			} {
				resp, body := p.send(t, "GET", "", u)
				wantStatus(t, resp, 200)
				if body != "file for /dl/f.bin?v=1" {
					t.Fatalf("%s: origin was asked %q", u, body)
				}
				if i > 0 {
					wantCS(t, resp, "hit")
				}
			}
			valid := sign(newKey, "/dl/f.bin?v=1", time.Minute)
			for _, tc := range []struct{ name, url, detail string }{
				{"expired", sign(newKey, "/dl/f.bin?v=1", -time.Second), "signature-expired"},
				{"tampered path", strings.Replace(valid, "f.bin", "g.bin", 1), "signature-invalid"},
				{"tampered query", strings.Replace(valid, "v=1", "v=2", 1), "signature-invalid"},
				{"unknown key", sign("some-other-key-0123456789", "/dl/f.bin?v=1", time.Hour), "signature-invalid"},
				{"no token", "/dl/f.bin?v=1", "signature-invalid"},
				{"dot segments", "/free/../dl/f.bin?v=1", "signature-invalid"},
			} {
				resp, _ := p.send(t, "GET", "", tc.url)
				wantStatus(t, resp, 403)
				wantCS(t, resp, "detail="+tc.detail)
			}
			// Time passes: the same URL expires (the handler's clock).
			e.clock.Advance(2 * time.Minute)
			resp, _ := p.send(t, "GET", "", valid)
			wantStatus(t, resp, 403)
			wantCS(t, resp, "detail=signature-expired")
			// Outside the prefixes nothing is checked.
			resp, _ = p.send(t, "GET", "", "/free/x?token=whatever")
			wantStatus(t, resp, 200)
		})
	}
	if n := e.origin.count("/dl/f.bin"); n != 2 {
		t.Fatalf("origin asked for /dl/f.bin %d times, want 2 (one per scheme)", n)
	}
	if n := e.origin.count("/dl/g.bin"); n != 0 {
		t.Fatalf("a tampered URL reached the origin")
	}
}

// TestRulesGeoAccess: geo rules allow and deny by the client's country
// and continent, which only a trusted proxy's X-Forwarded-For can report.
func TestRulesGeoAccess(t *testing.T) {
	const gb, se = "81.2.69.142", "89.160.20.112" // in MaxMind's test database
	geo := `
geo_access:
  database: ../geo/testdata/geoip/GeoIP2-Country-Test.mmdb
  deny_body: "not available here\n"
  rules:
    - prefix: /gb/
      allow_countries: [GB]
    - prefix: /na/
      allow_continents: [NA]
    - prefix: /not-eu/
      deny_continents: [EU]
    - deny_countries: [SE]
headers:
  response:
    - set: {X-Content-Type-Options: nosniff}
`
	origin := respond(200, "content", "Cache-Control", "max-age=600")
	trusted := newRulesEnv(t, origin, geo, func(c *edge.Config) { c.Server.TrustedProxies = []string{"127.0.0.1"} })
	untrusted := newRulesEnv(t, origin, geo, func(c *edge.Config) { c.Server.TrustedProxies = []string{"10.0.0.0/8"} })
	for i := range trusted.protos {
		p, q := trusted.protos[i], untrusted.protos[i]
		t.Run(p.name, func(t *testing.T) {
			for _, tc := range []struct {
				name   string
				p      proto
				target string
				xff    string
				want   int
			}{
				{"GB allowed", p, "/gb/x", gb, 200},
				{"GB allowed again (a hit)", p, "/gb/x", gb, 200},
				{"SE denied an allow list", p, "/gb/x", se, 403},
				{"SE denied a cached object", p, "/gb/x", se, 403},
				{"unknown denied an allow list", p, "/gb/x", "", 403},
				{"proxy chain: the last untrusted hop counts", p, "/gb/x", gb + ", " + se, 403},
				{"SE denied everywhere", p, "/other", se, 403},
				{"GB allowed elsewhere", p, "/other", gb, 200},
				{"dot segments", p, "/other/../gb/x", se, 403},
				{"GB denied a continent allow list", p, "/na/x", gb, 403},
				{"unknown denied a continent allow list", p, "/na/x", "", 403},
				{"GB denied by its continent", p, "/not-eu/x", gb, 403},
				{"unknown not denied by a continent", p, "/not-eu/x", "", 200},
				{"spoofed GB from an untrusted client, continent", q, "/not-eu/x", gb, 200},
				{"spoofed GB from an untrusted client", q, "/gb/x", gb, 403},
				{"spoofed SE from an untrusted client", q, "/other", se, 200},
			} {
				var kv []string
				if tc.xff != "" {
					kv = []string{"X-Forwarded-For", tc.xff}
				}
				resp, body := tc.p.send(t, "GET", "", tc.target, kv...)
				if resp.StatusCode != tc.want {
					t.Fatalf("%s: status %d, want %d (%s)", tc.name, resp.StatusCode, tc.want, resp.Header.Get("Cache-Status"))
				}
				if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
					t.Errorf("%s: response rules skipped", tc.name)
				}
				if tc.want == 403 {
					wantCS(t, resp, "detail=geo-denied")
					if body != "not available here\n" || resp.Header.Get("Cache-Control") != "no-store" {
						t.Errorf("%s: 403 body %q, Cache-Control %q", tc.name, body, resp.Header.Get("Cache-Control"))
					}
				}
			}
		})
	}
}

// TestRulesConfigRefused: a bad rule names its field, and a geo database
// that does not open refuses the config at New.
func TestRulesConfigRefused(t *testing.T) {
	_, err := edge.ParseConfig([]byte("sites: [{hosts: [a.test], origin: 'http://127.0.0.1:1', redirects: [{prefix: /a, status: 301}]}]\n"))
	if err == nil || !strings.Contains(err.Error(), "sites[0].redirects[0]") {
		t.Fatalf("bad redirect: %v", err)
	}
	_, err = edge.ParseConfig([]byte("sites: [{hosts: [a.test], origin: 'http://127.0.0.1:1', headres: {}}]\n"))
	if err == nil {
		t.Fatal("misspelt field accepted")
	}
	cfg, err := edge.ParseConfig([]byte("sites: [{hosts: [a.test], origin: 'http://127.0.0.1:1', geo_access: {database: /nonexistent.mmdb, rules: [{deny_countries: [SE]}]}}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := edge.New(cfg, edge.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err == nil || !strings.Contains(err.Error(), "sites[0].geo_access.database") {
		t.Fatalf("missing database: %v", err)
	}
}

// BenchmarkHitWithRules is BenchmarkHit's 1 KiB hit for a site with
// response header rules (HSTS set, Server removed) and a redirect rule
// that does not match: what rules cost a hit.
func BenchmarkHitWithRules(b *testing.B) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Server", "origin")
		io.WriteString(w, strings.Repeat("x", 1024))
	}))
	defer origin.Close()
	var rc rules.Config
	if err := yaml.Unmarshal([]byte(`
redirects: [{prefix: /old/, redirect_to: /new/}]
headers:
  response:
    - set: {Strict-Transport-Security: max-age=63072000}
      remove: [Server]
`), &rc); err != nil {
		b.Fatal(err)
	}
	h, err := edge.New(edge.Config{Sites: []edge.SiteConfig{{Hosts: []string{"bench.test"}, Origin: origin.URL, Rules: rc}}},
		edge.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	req := httptest.NewRequest("GET", "http://bench.test/obj?x=1", nil)
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, req)
	b.SetBytes(1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
	b.StopTimer()
	if !strings.Contains(w.h.Get("Cache-Status"), "hit") || w.h.Get("Strict-Transport-Security") == "" || w.h["Server"] != nil {
		b.Fatalf("not a hit with the rules applied: %v", w.h)
	}
}

// TestRulesRewriteInvalidation: an unsafe request through a rewrite
// invalidates the rewritten URL's entry (the one its GET is stored
// under), not a URL the rules would make of it a second time.
func TestRulesRewriteInvalidation(t *testing.T) {
	e := newRulesEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, r.Method+" "+r.URL.Path)
	}, `
redirects:
  - {prefix: /api/, rewrite_to: /v2/}
  - {prefix: /v2/, rewrite_to: /v3/}
`)
	p := e.protos[0]
	resp, body := p.send(t, "GET", "", "/api/x")
	wantStatus(t, resp, 200)
	if body != "GET /v2/x" {
		t.Fatalf("rewrite: %q", body)
	}
	resp, _ = p.send(t, "GET", "", "/api/x")
	wantCS(t, resp, "hit")
	resp, body = p.send(t, "POST", "", "/api/x")
	if body != "POST /v2/x" {
		t.Fatalf("POST went to %q", body)
	}
	resp, _ = p.send(t, "GET", "", "/api/x")
	wantCS(t, resp, "!hit")
}

// TestRulesReload: rules come and go with a reload, on the stored
// objects' hits too (the fast front's own hits stop and resume).
func TestRulesReload(t *testing.T) {
	e := newEnv(t, respond(200, "body", "Cache-Control", "max-age=600"))
	e.get("/obj")
	resp, _ := e.get("/obj")
	wantCS(t, resp, "hit")
	if resp.Header["X-Rule"] != nil {
		t.Fatal("a rule before any was configured")
	}
	cfg := e.cfg
	cfg.Sites = append([]edge.SiteConfig(nil), cfg.Sites...)
	cfg.Sites[0].Rules = rules.Config{Headers: rules.HeadersConfig{Response: []rules.HeaderRule{{Set: map[string]string{"X-Rule": "on"}}}}}
	if err := e.edge.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	resp, _ = e.get("/obj")
	wantCS(t, resp, "hit")
	if resp.Header.Get("X-Rule") != "on" {
		t.Fatalf("rule not applied after reload: %v", resp.Header)
	}
	bad := cfg
	bad.Sites = append([]edge.SiteConfig(nil), cfg.Sites...)
	bad.Sites[0].Rules = rules.Config{Redirects: []rules.Redirect{{PathMatch: rules.PathMatch{Prefix: "/x"}}}}
	if err := e.edge.Reload(bad); err == nil || !strings.Contains(err.Error(), "sites[0].redirects[0]") {
		t.Fatalf("bad rules: %v", err)
	}
	if err := e.edge.Reload(e.cfg); err != nil {
		t.Fatal(err)
	}
	resp, _ = e.get("/obj")
	if resp.Header["X-Rule"] != nil {
		t.Fatal("rule still applied after it was removed")
	}
}

// TestRulesMetrics: every kind of rule counts its matches in
// meridian_edge_rule_matches_total, by site, kind and rule, with labels
// from the config only (whatever the client sends).
func TestRulesMetrics(t *testing.T) {
	const key = "key-0123456789abcdef0123"
	e := newRulesEnv(t, respond(200, "content", "Cache-Control", "max-age=600"), `
redirects:
  - name: old
    prefix: /old/
    redirect_to: /new/
  - name: api
    prefix: /api/
    rewrite_to: /v2/
headers:
  request:
    - prefix: /api/
      set: {X-From-Edge: "1"}
  response:
    - status: ["404"]
      set: {X-Missing: "1"}
    - prefix: /
      set: {X-Frame-Options: DENY}
signed_urls:
  keys: [`+key+`]
  prefixes: [/dl/]
geo_access:
  database: ../geo/testdata/geoip/GeoIP2-Country-Test.mmdb
  rules:
    - prefix: /gb/
      allow_countries: [GB]
`, func(c *edge.Config) { c.Server.TrustedProxies = []string{"127.0.0.1"} })
	p := e.protos[0]
	sign := func(ttl time.Duration) string {
		return rules.Sign(rules.SignedURLConfig{}, []byte(key), "/dl/f", e.clock.Now().Add(ttl))
	}
	for _, target := range []string{"/old/a", "/old/b?x=1", "/api/x", "/dl/f", sign(time.Hour), sign(-time.Second), "/gb/x", "/plain"} {
		p.send(t, "GET", "", target, "X-Forwarded-For", "89.160.20.112") // SE
	}
	p.send(t, "GET", "", "/gb/y", "X-Forwarded-For", "81.2.69.142") // GB: allowed
	const m = "meridian_edge_rule_matches_total"
	site := "site.test"
	for _, tc := range []struct {
		kind, rule string
		want       float64
	}{
		{"redirect", "old", 2},
		{"rewrite", "api", 1},
		{"header", "headers.request[0]", 1},
		{"header", "headers.response[0]", 0}, // no 404
		{"header", "headers.response[1]", 9}, // every answer, the redirects and 403s too
		{"signed_url", "valid", 1},
		{"signed_url", "invalid", 1},
		{"signed_url", "expired", 1},
		{"geo", "geo_access.rules[0]", 1}, // the SE client; the GB one is allowed
	} {
		if got := e.metric(m, "site", site, "kind", tc.kind, "rule", tc.rule); got != tc.want {
			t.Errorf("%s{kind=%s, rule=%s} = %v, want %v (all: %v)", m, tc.kind, tc.rule, got, tc.want, e.series(m))
		}
	}
	if n := len(e.series(m)); n != 9 {
		t.Errorf("%d series, want 9 (one per rule and signature outcome): %v", n, e.series(m))
	}
}
