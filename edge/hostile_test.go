package edge_test

// Hostile-input tests (issue 12): each case is an attacker's request over a
// real socket, and asserts what the client got, what the origin received
// (the recording test origin: Host, target, forwarding fields, byte for
// byte), and what a second, innocent client is served afterwards. TestMain
// runs them on both HTTP/1.1 fronts; the cases where the protocol matters
// (Host, scheme, X-Forwarded-*) run over HTTP/2 and HTTP/3 as well.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go/http3"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/listen"
)

// rawDo sends one raw HTTP/1.1 request (it should say Connection: close)
// to addr and reads the response: requests a Go client would refuse to
// write (odd Host values) go as they are.
func rawDo(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	resp, body, _ := rawDoWire(t, addr, req, nil)
	return resp, body
}

// rawDoWire is rawDo that also returns the response's head as it came
// (status line and fields, up to the blank line). forReq is the request
// the response is read as the answer to (http.ReadResponse: a HEAD's has
// no body), nil for a GET.
func rawDoWire(t *testing.T, addr, req string, forReq *http.Request) (*http.Response, string, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	var wire bytes.Buffer
	resp, err := http.ReadResponse(bufio.NewReader(io.TeeReader(c, &wire)), forReq)
	if err != nil {
		t.Fatalf("%q: %v", req, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%q: body: %v", req, err)
	}
	head, _, _ := strings.Cut(wire.String(), "\r\n\r\n")
	return resp, string(b), head + "\r\n"
}

// addr is the edge's plain listener address.
func (e *env) addr() string { return strings.TrimPrefix(e.base, "http://") }

// originGot returns the last request the origin got.
func (e *env) originGot() *http.Request {
	e.t.Helper()
	r := e.origin.lastRequest()
	if r == nil {
		e.t.Fatal("the origin got no request")
	}
	return r
}

// wantFields checks that h holds exactly the given lines for each name (nil:
// absent).
func wantFields(t *testing.T, what string, h http.Header, want map[string][]string) {
	t.Helper()
	for name, lines := range want {
		if got := h[name]; !reflect.DeepEqual(got, lines) {
			t.Errorf("%s: %s = %q, want %q", what, name, got, lines)
		}
	}
}

// reflectHost is an origin page that writes the Host it got into a script
// URL, as many frameworks build absolute links from it.
func reflectHost(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "max-age=600")
	w.Header().Set("Content-Type", "text/html")
	fmt.Fprintf(w, `<script src="//%s/app.js"></script>`, r.Host)
}

const cleanPage = `<script src="//site.test/app.js"></script>`

// 1. Host-header poisoning: junk after the colon, another case, a trailing
// dot never reach the origin, and a malformed Host is a 400.
func TestHostileHostPoisoning(t *testing.T) {
	e := newEnv(t, reflectHost)
	for _, tc := range []struct {
		host   string
		status int
	}{
		{"site.test:'onerror='alert(1)", 400},
		{"site.test:99999", 400},
		{"site.test:80a", 400},
		{"site.test%2f", 400},
		{"site.test:1:2", 400},
		{"SITE.Test.", 200},
		{"site.test:8080", 200},
		{"site.test.:443", 200},
		{"site.test", 200},
	} {
		before := e.origin.total.Load()
		resp, body := rawDo(t, e.addr(), "GET /page HTTP/1.1\r\nHost: "+tc.host+"\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != tc.status {
			t.Fatalf("Host %q: status %d (%q), want %d", tc.host, resp.StatusCode, body, tc.status)
		}
		if tc.status != 200 {
			if n := e.origin.total.Load(); n != before {
				t.Fatalf("Host %q: the origin was asked (%d requests)", tc.host, n-before)
			}
			continue
		}
		if body != cleanPage {
			t.Fatalf("Host %q: served %q, want %q", tc.host, body, cleanPage)
		}
		if got := e.originGot().Host; got != testHost {
			t.Fatalf("Host %q: the origin got Host %q, want %q", tc.host, got, testHost)
		}
	}
	// Every well-formed spelling shares one entry, filled once; an
	// innocent client gets the clean page.
	if n := e.origin.count("/page"); n != 1 {
		t.Fatalf("origin asked %d times, want 1", n)
	}
	resp, body := e.get("/page")
	wantCS(t, resp, "hit")
	if body != cleanPage {
		t.Fatalf("second client served %q", body)
	}
}

// 1, over HTTP/2 and HTTP/3: the :authority is normalized and checked the
// same way.
func TestHostileHostPoisoningH2H3(t *testing.T) {
	te := newTLSEnv(t, reflectHost)
	tlsConf := &tls.Config{RootCAs: te.pool(), ServerName: testHost}
	h2 := &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true}
	defer h2.CloseIdleConnections()
	h3 := &http3.Transport{TLSClientConfig: tlsConf}
	defer h3.Close()
	for _, rt := range []struct {
		name  string
		rt    http.RoundTripper
		major int
	}{{"h2", h2, 2}, {"h3", h3, 3}} {
		for _, tc := range []struct {
			host   string
			status int
		}{
			{"site.test:'onerror='alert(1)", 400},
			{"site.test:99999", 400},
			{"SITE.test.", 200},
			{"site.test:8443", 200},
		} {
			req, _ := http.NewRequest("GET", "https://"+te.tlsAddr+"/page-"+rt.name, nil)
			req.Host = tc.host
			before := te.origin.total.Load()
			resp, err := rt.rt.RoundTrip(req)
			if err != nil {
				t.Fatalf("%s Host %q: %v", rt.name, tc.host, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != rt.major {
				t.Fatalf("%s: spoke %s", rt.name, resp.Proto)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("%s Host %q: status %d (%q), want %d", rt.name, tc.host, resp.StatusCode, body, tc.status)
			}
			if tc.status != 200 {
				if n := te.origin.total.Load(); n != before {
					t.Fatalf("%s Host %q: the origin was asked", rt.name, tc.host)
				}
				continue
			}
			if string(body) != cleanPage || te.originGot().Host != testHost {
				t.Fatalf("%s Host %q: served %q, origin got Host %q", rt.name, tc.host, body, te.originGot().Host)
			}
		}
		if n := te.origin.count("/page-" + rt.name); n != 1 {
			t.Fatalf("%s: origin asked %d times, want 1", rt.name, n)
		}
	}
}

// httpsOnly is an origin that redirects plain HTTP to HTTPS, as it learns
// the scheme from X-Forwarded-Proto (cacheable redirect, as many send).
func httpsOnly(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "max-age=600")
	if r.Header.Get("X-Forwarded-Proto") != "https" {
		w.Header().Set("Location", "https://"+testHost+r.URL.RequestURI())
		w.WriteHeader(http.StatusMovedPermanently)
		return
	}
	io.WriteString(w, "secure page")
}

// 2. The scheme is in the key: a plain-HTTP request's redirect to HTTPS is
// never served to HTTPS clients (a redirect loop), and a client's
// X-Forwarded-Proto does not choose the scheme.
func TestHostileSchemeKey(t *testing.T) {
	te := newTLSEnv(t, httpsOnly)
	tlsConf := &tls.Config{RootCAs: te.pool(), ServerName: testHost}
	h2 := &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true}
	defer h2.CloseIdleConnections()
	h3 := &http3.Transport{TLSClientConfig: tlsConf}
	defer h3.Close()
	get := func(rt http.RoundTripper, url string, kv ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = testHost
		for i := 0; i+1 < len(kv); i += 2 {
			req.Header.Add(kv[i], kv[i+1])
		}
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	secure := "https://" + te.tlsAddr

	// Plain HTTP stores the redirect for plain HTTP.
	resp, _ := te.get("/login")
	wantStatus(t, resp, http.StatusMovedPermanently)
	wantFields(t, "origin", te.originGot().Header, map[string][]string{"X-Forwarded-Proto": {"http"}})
	// HTTPS (HTTP/2, then HTTP/3) gets the page, not the stored redirect.
	resp, body := get(h2, secure+"/login")
	if resp.StatusCode != 200 || body != "secure page" {
		t.Fatalf("HTTPS over h2 got %d %q (Location %q): the plain-HTTP redirect was served", resp.StatusCode, body, resp.Header.Get("Location"))
	}
	wantFields(t, "origin", te.originGot().Header, map[string][]string{"X-Forwarded-Proto": {"https"}})
	resp, body = get(h3, secure+"/login")
	if resp.StatusCode != 200 || body != "secure page" {
		t.Fatalf("HTTPS over h3 got %d %q", resp.StatusCode, body)
	}
	wantCS(t, resp, "hit")
	// A plain-HTTP client claiming HTTPS still gets plain HTTP's answer,
	// and an HTTPS client claiming plain HTTP still gets HTTPS's.
	resp, _ = te.get("/login", "X-Forwarded-Proto", "https")
	wantStatus(t, resp, http.StatusMovedPermanently)
	resp, body = get(h2, secure+"/login", "X-Forwarded-Proto", "http")
	if resp.StatusCode != 200 || body != "secure page" {
		t.Fatalf("HTTPS claiming http got %d %q", resp.StatusCode, body)
	}
	if n := te.origin.count("/login"); n != 2 {
		t.Fatalf("origin asked %d times, want 2 (one per scheme)", n)
	}
	// A client's X-Forwarded-Proto on a miss is replaced, not passed on.
	resp, _ = get(h2, secure+"/fresh", "X-Forwarded-Proto", "http")
	wantStatus(t, resp, 200)
	wantFields(t, "origin", te.originGot().Header, map[string][]string{"X-Forwarded-Proto": {"https"}})
	resp, _ = te.get("/fresh2", "X-Forwarded-Proto", "https")
	wantStatus(t, resp, http.StatusMovedPermanently)
	wantFields(t, "origin", te.originGot().Header, map[string][]string{"X-Forwarded-Proto": {"http"}})
}

// 2 and 3: behind a trusted TLS-terminating proxy, its X-Forwarded-Proto
// sets the scheme, on both fronts (the fast front's hit path included).
func TestHostileSchemeFromTrustedProxy(t *testing.T) {
	e := newEnv(t, httpsOnly, func(c *edge.Config) { c.Server.TrustedProxies = []string{"127.0.0.0/8"} })
	resp, _ := e.get("/login") // no X-Forwarded-Proto: plain HTTP, as the edge saw it
	wantStatus(t, resp, http.StatusMovedPermanently)
	resp, _ = e.get("/login")
	wantCS(t, resp, "hit")
	// The proxy's HTTPS requests have their own entry, on every front:
	// the fast front's hit path must not answer them from plain HTTP's.
	resp, body := e.get("/login", "X-Forwarded-Proto", "https")
	if resp.StatusCode != 200 || body != "secure page" {
		t.Fatalf("trusted https: %d %q", resp.StatusCode, body)
	}
	for _, xfp := range [][]string{{"https"}, {"HTTPS"}, {"http", "https"}, {"http, https"}} {
		resp, body = e.do("GET", "/login", http.Header{"X-Forwarded-Proto": xfp}, nil)
		if resp.StatusCode != 200 || body != "secure page" {
			t.Fatalf("trusted %q: %d %q", xfp, resp.StatusCode, body)
		}
		wantCS(t, resp, "hit")
	}
	for _, xfp := range [][]string{{"https, http"}, {"https", "http"}, {"wss"}} {
		resp, _ = e.do("GET", "/login", http.Header{"X-Forwarded-Proto": xfp}, nil)
		wantStatus(t, resp, http.StatusMovedPermanently)
		wantCS(t, resp, "hit")
	}
	if n := e.origin.count("/login"); n != 2 {
		t.Fatalf("origin asked %d times, want 2", n)
	}
}

// hostileForwarding is what an attacker sends to be believed.
var hostileForwarding = map[string][]string{
	"X-Forwarded-For":    {"6.6.6.6"},
	"X-Forwarded-Proto":  {"https"},
	"X-Forwarded-Host":   {"evil.test"},
	"X-Forwarded-Port":   {"8443"},
	"X-Forwarded-Prefix": {"/evil"},
	"Forwarded":          {"for=6.6.6.6;host=evil.test;proto=https"},
	"X-Real-Ip":          {"6.6.6.6"},
}

// reflectForwarding is an origin that builds its links from the
// forwarding fields and tells whom it served.
func reflectForwarding(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "max-age=600")
	fmt.Fprintf(w, "%s://%s%s for %s", r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"),
		r.Header.Get("X-Forwarded-Prefix"), r.Header.Get("X-Forwarded-For"))
}

// 3. From an untrusted client, X-Forwarded-*, Forwarded and X-Real-IP are
// replaced by what the edge saw, the same way for a cacheable fill, an
// authenticated fill and a pass-through method.
func TestHostileForwardedFromClient(t *testing.T) {
	e := newEnv(t, reflectForwarding)
	want := map[string][]string{
		"X-Forwarded-For":    {"127.0.0.1"},
		"X-Forwarded-Proto":  {"http"},
		"X-Forwarded-Host":   {testHost},
		"Forwarded":          {"for=127.0.0.1;host=site.test;proto=http"},
		"X-Forwarded-Port":   nil,
		"X-Forwarded-Prefix": nil,
		"X-Real-Ip":          nil,
		"Via":                {"1.1 edge1"},
		"Cdn-Loop":           {"edge1"},
	}
	for _, tc := range []struct {
		method, target string
		extra          []string
	}{
		{"GET", "/fill", nil},
		{"GET", "/auth", []string{"Authorization", "Bearer x"}},
		{"POST", "/form", nil},
		{"DELETE", "/thing", nil},
	} {
		hdr := http.Header{}
		for k, v := range hostileForwarding {
			hdr[k] = v
		}
		for i := 0; i+1 < len(tc.extra); i += 2 {
			hdr.Set(tc.extra[i], tc.extra[i+1])
		}
		resp, body := e.do(tc.method, tc.target, hdr, nil)
		wantStatus(t, resp, 200)
		if want := "http://site.test for 127.0.0.1"; body != want {
			t.Errorf("%s %s: served %q, want %q", tc.method, tc.target, body, want)
		}
		wantFields(t, tc.method+" "+tc.target, e.originGot().Header, want)
	}
	// What was stored is what an innocent client gets.
	resp, body := e.get("/fill")
	wantCS(t, resp, "hit")
	if body != "http://site.test for 127.0.0.1" {
		t.Fatalf("second client served %q", body)
	}
}

// 3. From a trusted proxy, the chain is kept and this hop appended; the
// host is still the keyed one.
func TestHostileForwardedFromTrustedProxy(t *testing.T) {
	e := newEnv(t, reflectForwarding, func(c *edge.Config) { c.Server.TrustedProxies = []string{"127.0.0.1/32"} })
	want := map[string][]string{
		"X-Forwarded-For":    {"6.6.6.6, 127.0.0.1"},
		"X-Forwarded-Proto":  {"https"},
		"X-Forwarded-Host":   {testHost},
		"Forwarded":          {"for=6.6.6.6;host=evil.test;proto=https, for=127.0.0.1;host=site.test;proto=https"},
		"X-Forwarded-Port":   {"8443"},
		"X-Forwarded-Prefix": {"/evil"},
		"X-Real-Ip":          {"6.6.6.6"},
	}
	for _, method := range []string{"GET", "POST"} {
		hdr := http.Header{}
		for k, v := range hostileForwarding {
			hdr[k] = v
		}
		resp, _ := e.do(method, "/p", hdr, nil)
		wantStatus(t, resp, 200)
		wantFields(t, method, e.originGot().Header, want)
	}
}

// 3. One function says who the client is: the peer, or the first hop of
// X-Forwarded-For that a trusted proxy did not add.
func TestHostileClientAddr(t *testing.T) {
	cfg := edge.Config{Server: edge.ServerConfig{TrustedProxies: []string{"10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.10"}},
		Sites: []edge.SiteConfig{{Hosts: []string{testHost}, Origin: "http://127.0.0.1:1"}}}
	h, err := edge.New(cfg, edge.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, tc := range []struct {
		remote string
		xff    []string
		want   string
	}{
		{"198.51.100.7:1", []string{"6.6.6.6"}, "198.51.100.7"},         // untrusted: the header is ignored
		{"10.0.0.1:1", nil, "10.0.0.1"},                                 // trusted, no header: the proxy is the client
		{"10.0.0.1:1", []string{"6.6.6.6, 203.0.113.5"}, "203.0.113.5"}, // the hop the proxy added
		{"10.0.0.1:1", []string{"203.0.113.5", "10.0.0.2"}, "203.0.113.5"},
		{"192.0.2.10:1", []string{"junk, 203.0.113.5"}, "203.0.113.5"},
		{"10.0.0.1:1", []string{"junk"}, "10.0.0.1"},
		{"[2001:db8:ffff::1]:1", []string{"[2001:db8::9]:4711"}, "2001:db8::9"},
	} {
		r := httptest.NewRequest("GET", "http://"+testHost+"/", nil)
		r.RemoteAddr = tc.remote
		r.Header["X-Forwarded-For"] = tc.xff
		if got := h.ClientAddr(r); got.String() != tc.want {
			t.Errorf("%s %q: %v, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
	if _, err := edge.ParseConfig([]byte("server: {trusted_proxies: [10.0.0.0/8, proxy]}\nsites: [{hosts: [a.test], origin: 'http://127.0.0.1:1'}]\n")); err == nil ||
		!strings.Contains(err.Error(), "server.trusted_proxies[1]") {
		t.Fatalf("bad trusted_proxies: %v", err)
	}
}

// 3, over HTTP/2 and HTTP/3: the same fields, whatever the client says.
func TestHostileForwardedH2H3(t *testing.T) {
	te := newTLSEnv(t, reflectForwarding)
	tlsConf := &tls.Config{RootCAs: te.pool(), ServerName: testHost}
	h2 := &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true}
	defer h2.CloseIdleConnections()
	h3 := &http3.Transport{TLSClientConfig: tlsConf}
	defer h3.Close()
	want := map[string][]string{
		"X-Forwarded-For":    {"127.0.0.1"},
		"X-Forwarded-Proto":  {"https"},
		"X-Forwarded-Host":   {testHost},
		"Forwarded":          {"for=127.0.0.1;host=site.test;proto=https"},
		"X-Forwarded-Port":   nil,
		"X-Forwarded-Prefix": nil,
		"X-Real-Ip":          nil,
	}
	for _, rt := range []struct {
		name string
		rt   http.RoundTripper
	}{{"h2", h2}, {"h3", h3}} {
		for _, method := range []string{"GET", "POST"} {
			req, _ := http.NewRequest(method, "https://"+te.tlsAddr+"/"+rt.name, nil)
			req.Host = testHost
			for k, v := range hostileForwarding {
				req.Header[k] = v
			}
			resp, err := rt.rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "https://site.test for 127.0.0.1" {
				t.Fatalf("%s %s: %d %q", rt.name, method, resp.StatusCode, body)
			}
			wantFields(t, rt.name+" "+method, te.originGot().Header, want)
		}
	}
}

// accountPage is an origin that serves a personal page for any path under
// /account/ (a framework's catch-all route), with Last-Modified and no
// Cache-Control, and a stylesheet with an explicit lifetime.
func accountPage(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/style.css" {
		w.Header().Set("Content-Type", "text/css")
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "body{}")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
	if r.URL.Query().Get("cc") != "" {
		w.Header().Set("Cache-Control", r.URL.Query().Get("cc"))
	}
	user := "anonymous"
	if c, err := r.Cookie("session"); err == nil {
		user = c.Value
	}
	fmt.Fprintf(w, "account of %s", user)
}

// 5. Web cache deception: a personal page under a .css URL, answered with
// Last-Modified and no Cache-Control to a request with a cookie, is not
// stored by heuristic freshness and never served to another client.
func TestHostileCacheDeception(t *testing.T) {
	e := newEnv(t, accountPage, func(c *edge.Config) { c.Sites[0].DefaultTTL = time.Hour })
	for _, cred := range [][]string{{"Cookie", "session=alice"}, {"Authorization", "Basic YWxpY2U6eA=="}} {
		target := "/account/settings/" + strings.ToLower(cred[0]) + ".css"
		hdr := http.Header{cred[0]: {cred[1]}}
		if cred[0] == "Authorization" {
			hdr.Set("Cookie", "session=alice") // the origin knows alice by her cookie
		}
		resp, body := e.do("GET", target, hdr, nil)
		wantStatus(t, resp, 200)
		wantCS(t, resp, "!stored")
		if body != "account of alice" {
			t.Fatalf("%s: alice got %q", target, body)
		}
		// The attacker, without alice's credentials, asks for the same URL.
		resp, body = e.get(target)
		if strings.Contains(body, "alice") {
			t.Fatalf("%s: alice's page served to another client (%s)", target, cacheStatus(resp))
		}
		if n := e.origin.count(target); n != 2 {
			t.Fatalf("%s: origin asked %d times, want 2", target, n)
		}
	}
	// With explicit freshness the origin says it may be shared: stored.
	hdr := http.Header{"Cookie": {"session=bob"}}
	resp, _ := e.do("GET", "/account/public.css?cc=max-age%3D60", hdr, nil)
	wantCS(t, resp, "stored")
}

// 5. deception_armor: a response whose Content-Type does not match the
// path's extension is not stored, even with explicit freshness.
func TestHostileDeceptionArmor(t *testing.T) {
	e := newEnv(t, accountPage, func(c *edge.Config) { c.Sites[0].DeceptionArmor = true })
	target := "/account/x.css?cc=max-age%3D600"
	resp, _ := e.get(target)
	wantStatus(t, resp, 200)
	wantCS(t, resp, "!stored")
	resp, _ = e.get(target)
	wantCS(t, resp, "!hit")
	if n := e.origin.count("/account/x.css"); n != 2 {
		t.Fatalf("origin asked %d times, want 2", n)
	}
	// A real stylesheet is stored.
	e.get("/style.css")
	resp, _ = e.get("/style.css")
	wantCS(t, resp, "hit")
	// Without armor the same response is stored.
	e2 := newEnv(t, accountPage)
	resp, _ = e2.get(target)
	wantCS(t, resp, "stored")
}

// reflectQuery is an origin that answers with the query it got, as it
// splits it on '&' and ';' (some frameworks do).
func reflectQuery(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "max-age=600")
	var ids []string
	for _, p := range strings.FieldsFunc(r.URL.RawQuery, func(c rune) bool { return c == '&' || c == ';' }) {
		if v, ok := strings.CutPrefix(p, "id="); ok {
			ids = append(ids, v)
		}
	}
	fmt.Fprintf(w, "ids=%s", strings.Join(ids, ","))
}

// 6. Parameter cloaking: the origin gets exactly the keyed query, and a
// parameter that hides a ';' is never ignored.
func TestHostileParameterCloaking(t *testing.T) {
	e := newEnv(t, reflectQuery, func(c *edge.Config) {
		c.Sites[0].CacheKey = edge.CacheKeyConfig{IgnoreParams: []string{"utm_*"}}
	})
	resp, body := e.get("/item?id=1&utm_source=x;id=EVIL")
	wantStatus(t, resp, 200)
	if got := e.originGot().RequestURI; got != "/item?id=1&utm_source=x;id=EVIL" {
		t.Fatalf("origin got %q", got)
	}
	if body != "ids=1,EVIL" {
		t.Fatalf("attacker got %q", body)
	}
	// The innocent request for ?id=1 is not the attacker's entry.
	resp, body = e.get("/item?id=1")
	wantCS(t, resp, "!hit")
	if body != "ids=1" {
		t.Fatalf("second client got %q (%s)", body, cacheStatus(resp))
	}
	// Ignored parameters are not forwarded: the origin answers the key.
	resp, body = e.get("/item?id=2&utm_source=news&utm_medium=mail")
	if got := e.originGot().RequestURI; got != "/item?id=2" || body != "ids=2" {
		t.Fatalf("origin got %q, client %q", got, body)
	}
	resp, body = e.get("/item?utm_campaign=z&id=2")
	wantCS(t, resp, "hit")
	if body != "ids=2" {
		t.Fatalf("hit served %q", body)
	}
	if n := e.origin.count("/item"); n != 3 {
		t.Fatalf("origin asked %d times, want 3", n)
	}
	// A pass-through method keeps its query as sent (nothing is stored).
	e.do("POST", "/item?id=3&utm_source=x", nil, strings.NewReader("x"))
	if got := e.originGot().RequestURI; got != "/item?id=3&utm_source=x" {
		t.Fatalf("POST: origin got %q", got)
	}
}

// 6, with an origin declared to split on ';' too: the key splits the same
// way, and the origin gets the keyed query.
func TestHostileParameterCloakingSemicolon(t *testing.T) {
	e := newEnv(t, reflectQuery, func(c *edge.Config) {
		c.Sites[0].CacheKey = edge.CacheKeyConfig{Query: edge.KeyQuerySorted, IgnoreParams: []string{"utm_*"}, Separators: "&;"}
	})
	_, body := e.get("/item?id=1&utm_source=x;id=EVIL")
	if got := e.originGot().RequestURI; got != "/item?id=1&id=EVIL" || body != "ids=1,EVIL" {
		t.Fatalf("origin got %q, client %q", got, body)
	}
	resp, body := e.get("/item?id=1")
	wantCS(t, resp, "!hit")
	if body != "ids=1" {
		t.Fatalf("second client got %q", body)
	}
}

// newEnvOptions is newEnv with edge.Options set by opt, which gets the
// handler once it exists (for hooks that need it).
func newEnvOptions(t *testing.T, h http.HandlerFunc, opt func(*edge.Options, func() *edge.Handler), mutate ...func(*edge.Config)) *env {
	t.Helper()
	clock := newClock()
	o := &testOrigin{clock: clock, byPath: map[string]int{}, handler: h}
	o.srv = httptest.NewServer(o)
	cfg := edge.Config{Name: "edge1", Listen: "127.0.0.1:0", Server: edge.ServerConfig{Front: testFront},
		Sites: []edge.SiteConfig{{Hosts: []string{testHost}, Origin: o.srv.URL, Timeout: 2 * time.Second}}}
	for _, m := range mutate {
		m(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	var eh *edge.Handler
	eopt := edge.Options{Now: clock.Now, Logger: log, Registerer: reg}
	opt(&eopt, func() *edge.Handler { return eh })
	eh, err := edge.New(cfg, eopt)
	if err != nil {
		t.Fatal(err)
	}
	srv := listen.NewServer(cfg, eh, listen.Options{Logger: log, Registerer: reg})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DisableCompression: true}
	e := &env{t: t, clock: clock, origin: o, edge: eh, srv: srv, cfg: cfg, reg: reg, base: "http://" + srv.Addr(),
		client: &http.Client{Transport: tr, Timeout: 20 * time.Second}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		eh.Close()
		o.srv.CloseClientConnections()
		o.srv.Close()
		tr.CloseIdleConnections()
	})
	return e
}

// withPurgeToken wires the PURGE method to an Admin with token.
func withPurgeToken(token string) func(*edge.Options, func() *edge.Handler) {
	return func(o *edge.Options, h func() *edge.Handler) {
		o.PurgeMethod = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			(&edge.Admin{Handler: h(), Token: token}).ServePurgeMethod(w, r)
		})
	}
}

// 10. PURGE is never forwarded: without a valid purge token it is a 405,
// with one it purges the URL.
func TestHostilePurgeMethod(t *testing.T) {
	cached := respond(200, "obj", "Cache-Control", "max-age=600")
	check := func(e *env, status int, auth string, purged bool) {
		t.Helper()
		e.get("/obj")
		resp, _ := e.get("/obj")
		wantCS(t, resp, "hit")
		before := e.origin.total.Load()
		hdr := http.Header{}
		if auth != "" {
			hdr.Set("Authorization", auth)
		}
		resp, body := e.do("PURGE", "/obj", hdr, nil)
		if resp.StatusCode != status {
			t.Fatalf("PURGE (%q): %d %q, want %d", auth, resp.StatusCode, body, status)
		}
		if n := e.origin.total.Load(); n != before {
			t.Fatalf("PURGE (%q) reached the origin", auth)
		}
		resp, _ = e.get("/obj")
		if hit := strings.Contains(cacheStatus(resp), "hit"); hit == purged {
			t.Fatalf("PURGE (%q): after it, %s", auth, cacheStatus(resp))
		}
	}
	check(newEnv(t, cached), http.StatusMethodNotAllowed, "", false)
	check(newEnvOptions(t, cached, withPurgeToken("")), http.StatusMethodNotAllowed, "Bearer x", false)
	e := newEnvOptions(t, cached, withPurgeToken("s3cret"))
	// A missing or wrong token is a 405, as Varnish answers a PURGE from
	// outside its purge ACL: the public port does not invite guessing.
	check(e, http.StatusMethodNotAllowed, "", false)
	check(e, http.StatusMethodNotAllowed, "Bearer guess", false)
	check(e, http.StatusOK, "Bearer s3cret", true)
	// The answer is the purge API's.
	e.get("/obj")
	_, body := e.do("PURGE", "/obj", http.Header{"Authorization": {"Bearer s3cret"}}, nil)
	var res edge.PurgeResult
	if err := json.Unmarshal([]byte(body), &res); err != nil || res.Purged != 1 || !res.Complete {
		t.Fatalf("PURGE answer %q (%v)", body, err)
	}
}

// 10. RFC 9111 §4.4 stays: a successful POST invalidates its own URL, but
// a Location or Content-Location on another host evicts nothing there.
func TestHostileUnsafeInvalidationSameHostOnly(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.Header().Set("Location", "http://other.test/victim")
			w.Header().Set("Content-Location", "//other.test/victim2")
			w.WriteHeader(http.StatusSeeOther)
			return
		}
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, r.Host+r.URL.Path)
	}, func(c *edge.Config) { c.Sites[0].Hosts = append(c.Sites[0].Hosts, "other.test") })
	getOn := func(host, target string) *http.Response {
		req, _ := http.NewRequest("GET", e.base+target, nil)
		req.Host = host
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	getOn("other.test", "/victim")
	getOn("other.test", "/victim2")
	getOn(testHost, "/form")
	resp, _ := e.do("POST", "/form", nil, strings.NewReader("x"))
	wantStatus(t, resp, http.StatusSeeOther)
	for _, target := range []string{"/victim", "/victim2"} {
		wantCS(t, getOn("other.test", target), "hit")
	}
	resp = getOn(testHost, "/form")
	wantCS(t, resp, "!hit") // the POST's own URL was invalidated
}

// startLoopEdge starts an edge named name whose site's origin is origin.
func startLoopEdge(t *testing.T, name, origin string) (*edge.Handler, *listen.Server, edge.Config) {
	t.Helper()
	cfg := edge.Config{Name: name, Listen: "127.0.0.1:0", Server: edge.ServerConfig{Front: testFront},
		Sites: []edge.SiteConfig{{Hosts: []string{testHost}, Origin: origin, Timeout: 5 * time.Second}}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := edge.New(cfg, edge.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := listen.NewServer(cfg, h, listen.Options{Logger: log})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		h.Close()
	})
	return h, srv, cfg
}

// 12. Two edges that are each other's origin: the loop is found at once
// (CDN-Loop, RFC 8586) and answered 508, not left to a timeout.
func TestHostileRequestLoop(t *testing.T) {
	a, aSrv, aCfg := startLoopEdge(t, "edge-a", "http://127.0.0.1:1")
	// Between the edges, a recorder of what each hop carried.
	var seen []string
	rec := make(chan string, 64)
	hop := func(to string) *httptest.Server {
		rp := &http.Transport{}
		t.Cleanup(rp.CloseIdleConnections)
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec <- strings.Join(r.Header["Cdn-Loop"], ", ")
			out := r.Clone(r.Context())
			out.URL.Scheme, out.URL.Host, out.RequestURI = "http", to, ""
			resp, err := rp.RoundTrip(out)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			for k, v := range resp.Header {
				w.Header()[k] = v
			}
			w.WriteHeader(resp.StatusCode)
			io.Copy(w, resp.Body)
		}))
		t.Cleanup(s.Close)
		return s
	}
	toA := hop(aSrv.Addr())
	_, bSrv, _ := startLoopEdge(t, "edge-b", toA.URL)
	toB := hop(bSrv.Addr())
	aCfg.Sites[0].Origin = toB.URL
	if err := a.Reload(aCfg); err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{"GET", "POST"} {
		req, _ := http.NewRequest(method, "http://"+aSrv.Addr()+"/loop-"+method, nil)
		req.Host = testHost
		start := time.Now()
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusLoopDetected {
			t.Fatalf("%s through the loop: %d after %v (Cache-Status %q), want 508", method, resp.StatusCode, time.Since(start), resp.Header.Get("Cache-Status"))
		}
		seen = seen[:0]
		for len(rec) > 0 {
			seen = append(seen, <-rec)
		}
		if want := []string{"edge-a", "edge-a, edge-b"}; !reflect.DeepEqual(seen, want) {
			t.Fatalf("%s: hops carried CDN-Loop %q, want %q", method, seen, want)
		}
	}
}

// 12. A client that forges CDN-Loop with the edge's name fails only its own
// request: nothing is stored, a fresh copy is still served, and the next
// client is served normally.
func TestHostileForgedCDNLoop(t *testing.T) {
	e := newEnv(t, respond(200, "obj", "Cache-Control", "max-age=600"))
	resp, _ := e.get("/forged", "CDN-Loop", "other-cdn, EDGE1; v=1")
	wantStatus(t, resp, http.StatusLoopDetected)
	if n := e.origin.count("/forged"); n != 0 {
		t.Fatalf("a looped request reached the origin")
	}
	resp, body := e.get("/forged")
	wantStatus(t, resp, 200)
	wantCS(t, resp, "stored")
	if body != "obj" {
		t.Fatalf("next client got %q", body)
	}
	wantFields(t, "origin", e.originGot().Header, map[string][]string{"Cdn-Loop": {"edge1"}})
	resp, _ = e.get("/forged", "CDN-Loop", "edge1")
	wantStatus(t, resp, 200) // a hit cannot loop
	// Another CDN's CDN-Loop is kept, this edge appended.
	e.get("/other", "CDN-Loop", "other-cdn")
	wantFields(t, "origin", e.originGot().Header, map[string][]string{"Cdn-Loop": {"other-cdn", "edge1"}})
}

// 12. A client that forges CDN-Loop to name the upstream tier gets its 508
// alone: requests coalesced on its fill fetch for themselves.
func TestHostileForgedCDNLoopNotShared(t *testing.T) {
	origin := httptest.NewServer(respond(200, "obj", "Cache-Control", "max-age=600"))
	defer origin.Close()
	_, bSrv, _ := startLoopEdge(t, "edge-b", origin.URL)
	// Between A and B, a gate that holds the first fill until a second
	// client has come to A.
	release := make(chan struct{})
	atGate := make(chan struct{}, 1) // the attacker's fill is under way
	rp := &http.Transport{}
	defer rp.CloseIdleConnections()
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(strings.Join(r.Header["Cdn-Loop"], ","), "edge-b") {
			atGate <- struct{}{}
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
		}
		out := r.Clone(r.Context())
		out.URL.Scheme, out.URL.Host, out.RequestURI = "http", bSrv.Addr(), ""
		resp, err := rp.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	defer gate.Close()

	cfg := edge.Config{Name: "edge-a", Listen: "127.0.0.1:0", Server: edge.ServerConfig{Front: testFront},
		Sites: []edge.SiteConfig{{Hosts: []string{testHost}, Origin: gate.URL, Timeout: 5 * time.Second}}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := edge.New(cfg, edge.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	arrived := make(chan struct{}, 4)
	srv := listen.NewServer(cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		a.ServeHTTP(w, r)
	}), listen.Options{Logger: log})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())

	get := func(loop string, status chan<- int) {
		req, _ := http.NewRequest("GET", "http://"+srv.Addr()+"/shared", nil)
		req.Host = testHost
		if loop != "" {
			req.Header.Set("CDN-Loop", loop)
		}
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			status <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status <- resp.StatusCode
	}
	attacker, victim := make(chan int, 1), make(chan int, 1)
	go get("edge-b", attacker)
	<-arrived
	select {
	case <-atGate: // the victim comes while the attacker's fill is held
	case <-time.After(10 * time.Second):
		t.Fatal("the attacker's fill never reached the gate")
	}
	go get("", victim)
	<-arrived
	time.Sleep(50 * time.Millisecond) // let the victim join the fill (it passes without joining too)
	close(release)
	if got := <-attacker; got != http.StatusLoopDetected {
		t.Fatalf("attacker got %d, want 508", got)
	}
	if got := <-victim; got != http.StatusOK {
		t.Fatalf("the coalesced client got %d, want 200: the attacker's 508 was shared", got)
	}
}

// A GET that comes with a chunked body (and a trailer) is a miss like
// any other: its fill is a bodiless GET, which must not announce the
// client's transfer coding or trailer to the origin. Announced with no
// body behind it, "Transfer-Encoding: chunked" would leave the origin
// waiting for a chunk the edge never sends (the fill would time out), and
// the origin would read the next request on that connection as the
// missing body. (The fill's request keeps the client's lists, as
// Request.Clone does; net/http's transport writes neither for a nil
// body. This pins the outcome, whoever provides it.)
func TestHostileChunkedGETFillsWithoutTransferCoding(t *testing.T) {
	type seen struct {
		te      []string
		trailer string
		body    string
		err     error
	}
	got := make(chan seen, 4)
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body) // the whole request, as an origin may read it
		got <- seen{te: r.TransferEncoding, trailer: r.Header.Get("Trailer"), body: string(b), err: err}
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "object")
	})
	resp, body := rawDo(t, e.addr(), "GET /chunked-get HTTP/1.1\r\nHost: "+testHost+"\r\nTransfer-Encoding: chunked\r\nTrailer: X-Client-Trailer\r\nConnection: close\r\n\r\n"+
		"5\r\nhello\r\n0\r\nX-Client-Trailer: 1\r\n\r\n")
	if resp.StatusCode != http.StatusOK || body != "object" {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	s := <-got
	if len(s.te) != 0 || s.trailer != "" || s.body != "" || s.err != nil {
		t.Fatalf("origin saw Transfer-Encoding %q, Trailer %q, body %q (err %v): want a bodiless GET", s.te, s.trailer, s.body, s.err)
	}
}
