package edge_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/internal/poll"
	"github.com/meridiancdn/meridian/origin"
)

func TestUnknownHostIsRefusedNotForwarded(t *testing.T) {
	e := newEnv(t, respond(200, "x", "Cache-Control", "max-age=60"))
	req, _ := http.NewRequest("GET", e.base+"/a", nil)
	req.Host = "evil.example"
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wantStatus(t, resp, http.StatusMisdirectedRequest)
	if n := e.origin.total.Load(); n != 0 {
		t.Fatalf("origin saw %d requests for an unknown host", n)
	}
	// Health probes address the node, not a site.
	req, _ = http.NewRequest("GET", e.base+"/healthz", nil)
	req.Host = "127.0.0.1"
	resp, err = e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wantStatus(t, resp, 200)
	if n := e.origin.total.Load(); n != 0 {
		t.Fatalf("a health probe reached the origin")
	}
	// The Host match ignores case and port.
	resp, _ = e.do("GET", "/a", http.Header{}, nil)
	wantStatus(t, resp, 200)
}

func TestFreshnessMaxAgeThenExpiry(t *testing.T) {
	e := newEnv(t, respond(200, "hello", "Cache-Control", "max-age=60"))
	r1, b1 := e.get("/a")
	wantStatus(t, r1, 200)
	wantCS(t, r1, "fwd=uri-miss", "fwd-status=200", "stored")
	r2, b2 := e.get("/a")
	wantCS(t, r2, "hit", "ttl=60")
	if b1 != "hello" || b2 != "hello" {
		t.Fatalf("bodies %q %q", b1, b2)
	}
	if n := e.origin.count("/a"); n != 1 {
		t.Fatalf("origin count %d, want 1", n)
	}
	e.clock.Advance(30 * time.Second)
	r3, _ := e.get("/a")
	wantCS(t, r3, "hit", "ttl=30")
	if got := r3.Header.Get("Age"); got != "30" {
		t.Fatalf("Age = %q, want 30", got)
	}
	e.clock.Advance(31 * time.Second)
	r4, _ := e.get("/a")
	wantCS(t, r4, "fwd=stale")
	if n := e.origin.count("/a"); n != 2 {
		t.Fatalf("origin count %d after expiry, want 2", n)
	}
}

func TestFreshnessSources(t *testing.T) {
	cases := []struct {
		name    string
		kv      []string
		freshAt time.Duration // still a hit after this much time
		staleAt time.Duration // a miss after this much
	}{
		{"s-maxage wins over max-age", []string{"Cache-Control", "max-age=10, s-maxage=100"}, 50 * time.Second, 101 * time.Second},
		{"Expires minus Date", []string{"Expires", "EXPIRES"}, 80 * time.Second, 91 * time.Second},
		{"heuristic from Last-Modified", []string{"Last-Modified", "LM"}, 9 * time.Hour, 11 * time.Hour},
		{"CDN-Cache-Control wins", []string{"Cache-Control", "max-age=5", "CDN-Cache-Control", "max-age=200"}, 100 * time.Second, 201 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var e *env
			e = newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				for i := 0; i < len(tc.kv); i += 2 {
					v := tc.kv[i+1]
					switch v {
					case "EXPIRES":
						v = e.clock.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
					case "LM": // 100 h old: 10% is 10 h of heuristic freshness
						v = e.clock.Now().Add(-100 * time.Hour).UTC().Format(http.TimeFormat)
					}
					w.Header().Set(tc.kv[i], v)
				}
				io.WriteString(w, "body")
			})
			e.get("/f")
			e.clock.Advance(tc.freshAt)
			r, _ := e.get("/f")
			wantCS(t, r, "hit")
			e.clock.Advance(tc.staleAt - tc.freshAt)
			r, _ = e.get("/f")
			wantCS(t, r, "!hit")
			if n := e.origin.count("/f"); n != 2 {
				t.Fatalf("origin count %d, want 2", n)
			}
		})
	}
}

func TestAgeIncludesUpstreamAge(t *testing.T) {
	e := newEnv(t, respond(200, "x", "Cache-Control", "max-age=100", "Age", "40"))
	r, _ := e.get("/age")
	if got := r.Header.Get("Age"); got != "40" {
		t.Fatalf("Age = %q, want 40", got)
	}
	e.clock.Advance(10 * time.Second)
	r, _ = e.get("/age")
	if got := r.Header.Get("Age"); got != "50" {
		t.Fatalf("Age = %q, want 50", got)
	}
	wantCS(t, r, "hit", "ttl=50")
	e.clock.Advance(51 * time.Second)
	r, _ = e.get("/age")
	wantCS(t, r, "!hit")
}

func TestNotStored(t *testing.T) {
	cases := []struct {
		name   string
		status int
		kv     []string
		req    []string
	}{
		{"no-store", 200, []string{"Cache-Control", "no-store, max-age=60"}, nil},
		{"private", 200, []string{"Cache-Control", "private, max-age=60"}, nil},
		{"no freshness no validator", 200, nil, nil},
		{"302 without freshness", 302, []string{"Location", "/x", "ETag", `"e"`}, nil},
		{"Set-Cookie", 200, []string{"Cache-Control", "max-age=60", "Set-Cookie", "id=1"}, nil},
		{"Vary star", 200, []string{"Cache-Control", "max-age=60", "Vary", "*"}, nil},
		{"Authorization without public", 200, []string{"Cache-Control", "max-age=60"}, []string{"Authorization", "Bearer x"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, respond(tc.status, "body", tc.kv...))
			for i := 0; i < 3; i++ {
				r, _ := e.get("/n", tc.req...)
				wantStatus(t, r, tc.status)
				wantCS(t, r, "!hit", "!stored")
			}
			if n := e.origin.count("/n"); n != 3 {
				t.Fatalf("origin count %d, want 3 (nothing stored)", n)
			}
		})
	}
}

func TestStoredStatusesAndAuthorizationPublic(t *testing.T) {
	cases := []struct {
		name   string
		status int
		kv     []string
		req    []string
	}{
		{"404 with max-age", 404, []string{"Cache-Control", "max-age=60"}, nil},
		{"301 with max-age", 301, []string{"Cache-Control", "max-age=60", "Location", "/b"}, nil},
		{"Authorization with public", 200, []string{"Cache-Control", "public, max-age=60"}, []string{"Authorization", "Bearer x"}},
		{"Authorization with s-maxage", 200, []string{"Cache-Control", "s-maxage=60"}, []string{"Authorization", "Bearer x"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, respond(tc.status, "body", tc.kv...))
			r, _ := e.get("/s", tc.req...)
			wantStatus(t, r, tc.status)
			wantCS(t, r, "stored")
			r, _ = e.get("/s") // an anonymous request may use what was stored
			wantStatus(t, r, tc.status)
			wantCS(t, r, "hit")
			if n := e.origin.count("/s"); n != 1 {
				t.Fatalf("origin count %d, want 1", n)
			}
		})
	}
}

func TestNoCacheRevalidatesEveryTime(t *testing.T) {
	var e *env
	e = newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache, max-age=600")
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(304)
			return
		}
		io.WriteString(w, "nc-body")
	})
	e.get("/nc")
	r, b := e.get("/nc")
	wantStatus(t, r, 200)
	wantCS(t, r, "fwd=stale", "fwd-status=304")
	if b != "nc-body" {
		t.Fatalf("body %q", b)
	}
	if got := e.origin.lastRequest().Header.Get("If-None-Match"); got != `"v1"` {
		t.Fatalf("revalidation If-None-Match = %q", got)
	}
	if n := e.origin.count("/nc"); n != 2 {
		t.Fatalf("origin count %d, want 2", n)
	}
}

func TestRevalidation304RefreshesHeaders(t *testing.T) {
	version := "1"
	var e *env
	e = newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		w.Header().Set("X-Version", version)
		if r.Header.Get("If-Modified-Since") != "" {
			w.WriteHeader(304)
			return
		}
		io.WriteString(w, "original")
	})
	e.get("/rv")
	e.clock.Advance(11 * time.Second)
	version = "2"
	r, b := e.get("/rv")
	wantCS(t, r, "fwd=stale", "fwd-status=304", "stored")
	if b != "original" || r.Header.Get("X-Version") != "2" {
		t.Fatalf("after 304: body %q X-Version %q", b, r.Header.Get("X-Version"))
	}
	r, b = e.get("/rv")
	wantCS(t, r, "hit")
	if b != "original" || r.Header.Get("X-Version") != "2" {
		t.Fatalf("hit after 304: body %q X-Version %q", b, r.Header.Get("X-Version"))
	}
	if n := e.origin.count("/rv"); n != 2 {
		t.Fatalf("origin count %d, want 2", n)
	}
}

func TestClientConditionalsFromCache(t *testing.T) {
	e := newEnv(t, respond(200, "cond", "Cache-Control", "max-age=60", "ETag", `"abc"`,
		"Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT"))
	e.get("/c")
	r, b := e.get("/c", "If-None-Match", `W/"abc"`)
	wantStatus(t, r, 304)
	if b != "" {
		t.Fatalf("304 with body %q", b)
	}
	r, _ = e.get("/c", "If-Modified-Since", "Mon, 02 Jan 2006 15:04:05 GMT")
	wantStatus(t, r, 304)
	r, _ = e.get("/c", "If-None-Match", `"other"`)
	wantStatus(t, r, 200)
	r, _ = e.get("/c", "If-Match", `"other"`)
	wantStatus(t, r, 412)
	if n := e.origin.count("/c"); n != 1 {
		t.Fatalf("origin count %d, want 1", n)
	}
}

func TestVary(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		io.WriteString(w, "lang="+r.Header.Get("Accept-Language"))
	})
	_, b := e.get("/v", "Accept-Language", "de")
	if b != "lang=de" {
		t.Fatal(b)
	}
	r, b := e.get("/v", "Accept-Language", "fr")
	wantCS(t, r, "fwd=vary-miss")
	if b != "lang=fr" {
		t.Fatal(b)
	}
	r, b = e.get("/v", "Accept-Language", "de")
	wantCS(t, r, "hit")
	if b != "lang=de" {
		t.Fatalf("variant mixed up: %q", b)
	}
	r, b = e.get("/v", "Accept-Language", "fr")
	wantCS(t, r, "hit")
	if b != "lang=fr" {
		t.Fatalf("variant mixed up: %q", b)
	}
	if n := e.origin.count("/v"); n != 2 {
		t.Fatalf("origin count %d, want 2", n)
	}
}

// Browsers spell the same Accept-Encoding wishes differently; normalized,
// they share one variant of a response that varies on it, and the origin
// is asked for codings the client accepts, never others.
func TestAcceptEncodingIsNormalized(t *testing.T) {
	origin := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Encoding")
		ae, present := r.Header["Accept-Encoding"]
		io.WriteString(w, fmt.Sprintf("ae=%q present=%v", strings.Join(ae, ","), present))
	}
	e := newEnv(t, origin)
	for _, tc := range []struct{ ae, body, cs string }{
		{"gzip, deflate, br, zstd", `ae="br, gzip, zstd" present=true`, "!hit"}, // Chrome
		{"br, gzip, zstd, deflate", `ae="br, gzip, zstd" present=true`, "hit"},  // another order, same wishes
		{"gzip;q=1.0, br;q=0.9, zstd", `ae="br, gzip, zstd" present=true`, "hit"},
		{"deflate", `ae="identity" present=true`, "!hit"},                      // no coding a cache meets: identity, not any
		{"gzip, identity;q=0", `ae="gzip, identity;q=0" present=true`, "!hit"}, // kept as sent
	} {
		r, b := e.get("/ae", "Accept-Encoding", tc.ae)
		if b != tc.body {
			t.Errorf("Accept-Encoding %q: body %s, want %s", tc.ae, b, tc.body)
		}
		wantCS(t, r, tc.cs)
	}
	r, b := e.get("/ae") // none: a variant of its own
	wantCS(t, r, "!hit")
	if b != `ae="" present=false` {
		t.Errorf("no Accept-Encoding: %s", b)
	}
	if n := e.origin.count("/ae"); n != 4 {
		t.Fatalf("origin count %d, want 4 (three spellings shared one variant)", n)
	}

	// as_sent keeps a variant per spelling.
	e = newEnv(t, origin, func(c *edge.Config) { c.Sites[0].AcceptEncoding = edge.AcceptEncodingAsSent })
	for _, ae := range []string{"gzip, deflate, br, zstd", "br, gzip, zstd, deflate"} {
		if _, b := e.get("/ae", "Accept-Encoding", ae); b != fmt.Sprintf("ae=%q present=true", ae) {
			t.Errorf("as_sent: %s", b)
		}
	}
	if n := e.origin.count("/ae"); n != 2 {
		t.Fatalf("as_sent: origin count %d, want 2", n)
	}
}

// A site's cache_key rules: query parameters sorted, marketing ones left
// out of the key. Purging any spelling of the URL removes the entry.
func TestCacheKeyQueryRules(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "q="+r.URL.RawQuery)
	}, func(c *edge.Config) {
		c.Sites[0].CacheKey = edge.CacheKeyConfig{Query: edge.KeyQuerySorted, IgnoreParams: []string{"utm_*", "gclid"}}
	})
	first := "q=a=1&b=2"
	for _, tc := range []struct{ target, cs, body string }{
		{"/p?b=2&a=1&utm_source=x", "!hit", first}, // the origin gets the query as keyed
		{"/p?a=1&b=2", "hit", first},
		{"/p?a=1&gclid=7&b=2&utm_medium=mail", "hit", first},
		{"/p?a=2&b=2", "!hit", "q=a=2&b=2"},
	} {
		r, b := e.get(tc.target)
		wantCS(t, r, tc.cs)
		if b != tc.body {
			t.Errorf("GET %s: %q, want %q", tc.target, b, tc.body)
		}
	}
	if n := e.origin.count("/p"); n != 2 {
		t.Fatalf("origin count %d, want 2", n)
	}
	n, err := e.edge.Purge(edge.Purge{URLs: []string{"http://" + testHost + "/p?utm_campaign=z&b=2&a=1"}})
	if err != nil || n != 1 {
		t.Fatalf("purge: %d, %v", n, err)
	}
	r, _ := e.get("/p?a=1&b=2")
	wantCS(t, r, "!hit")
}

func TestHeadAnsweredFromGetEntry(t *testing.T) {
	e := newEnv(t, respond(200, "0123456789", "Cache-Control", "max-age=60"))
	e.get("/h")
	r, b := e.do("HEAD", "/h", nil, nil)
	wantCS(t, r, "hit")
	if b != "" || r.ContentLength != 10 {
		t.Fatalf("HEAD body %q length %d", b, r.ContentLength)
	}
	// A HEAD miss fills the GET entry too.
	r, _ = e.do("HEAD", "/h2", nil, nil)
	wantCS(t, r, "stored")
	// The HEAD answer may come before the fill has the body: the GET then
	// joins the fill (collapsed) or finds it stored (hit); either way the
	// origin is not asked again.
	r, b = e.get("/h2")
	if b != "0123456789" {
		t.Fatalf("GET after HEAD fill: %q", b)
	}
	if n := e.origin.count("/h2"); n != 1 {
		t.Fatalf("origin count %d after HEAD then GET, want 1", n)
	}
	if got := e.origin.lastRequest().Method; got != "GET" {
		t.Fatalf("origin saw %s for a HEAD fill", got)
	}
}

// TestHeadMissFinishesFill: a HEAD client leaves as soon as it has the
// headers, but it asked for the object as much as a GET would (Varnish and
// nginx fetch the whole body for a HEAD miss): the fill goes on after it
// leaves, so the GET that follows costs the origin nothing.
func TestHeadMissFinishesFill(t *testing.T) {
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	var logBuf syncBuffer
	e := newEnvWith(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", "10")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "0123456789")
	}, func(o *edge.Options) {
		o.AccessLog, _ = edge.NewAccessLog(&logBuf, edge.AccessLogJSON)
	})
	t.Cleanup(unblock) // before newEnv's: a failed run must not leave the origin blocked
	r, b := e.do("HEAD", "/slow", nil, nil)
	if r.StatusCode != 200 || b != "" {
		t.Fatalf("HEAD: %d %q", r.StatusCode, b)
	}
	// The client has the header before the edge is done with the
	// request: its access log line is written once it has left the fill,
	// which is when a wrong call-off would happen.
	poll.Until(t, 10*time.Second, "the HEAD's access log line", func() bool { return len(logBuf.lines()) == 1 })
	if n := e.counter("meridian_edge_fills_abandoned_total"); n != 0 {
		t.Fatalf("%v fills called off after a HEAD miss", n)
	}
	unblock()
	_, b = e.get("/slow")
	if b != "0123456789" {
		t.Fatalf("GET after HEAD: %q", b)
	}
	if n := e.origin.count("/slow"); n != 1 {
		t.Fatalf("origin count %d after HEAD then GET, want 1", n)
	}
}

func TestHopByHopStripped(t *testing.T) {
	e := newEnv(t, respond(200, "x", "Cache-Control", "max-age=60", "Connection", "X-Secret",
		"X-Secret", "1", "Keep-Alive", "timeout=5", "X-Kept", "yes"))
	for i := 0; i < 2; i++ {
		r, _ := e.get("/hop", "Connection", "X-Client-Hop", "X-Client-Hop", "1", "X-Unknown-Req", "v")
		if r.Header.Get("X-Secret") != "" || r.Header.Get("Keep-Alive") != "" {
			t.Fatalf("hop-by-hop reached the client: %v", r.Header)
		}
		if r.Header.Get("X-Kept") != "yes" {
			t.Fatalf("end-to-end header lost: %v", r.Header)
		}
	}
	last := e.origin.lastRequest()
	if last.Header.Get("X-Client-Hop") != "" || last.Header.Get("X-Unknown-Req") != "v" {
		t.Fatalf("origin request headers: %v", last.Header)
	}
	if !strings.Contains(strings.Join(last.Header["Via"], ","), "edge1") {
		t.Fatalf("no Via to origin: %v", last.Header)
	}
}

func TestInvalidationAfterUnsafeMethod(t *testing.T) {
	var e *env
	e = newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			w.Header().Set("Location", "/other")
			w.Header().Set("Content-Location", "http://elsewhere.example/third")
			w.WriteHeader(201)
			return
		}
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, r.URL.Path)
	})
	for _, p := range []string{"/inv", "/other"} {
		e.get(p)
		r, _ := e.get(p)
		wantCS(t, r, "hit")
	}
	r, _ := e.do("POST", "/inv", nil, strings.NewReader("data"))
	wantStatus(t, r, 201)
	wantCS(t, r, "fwd=method", "fwd-status=201")
	for _, p := range []string{"/inv", "/other"} {
		r, _ := e.get(p)
		wantCS(t, r, "!hit")
	}
	// A failed unsafe request invalidates nothing.
	e.origin.setHandler(respond(500, "no"))
	e.do("DELETE", "/inv", nil, nil)
	e.origin.setHandler(respond(200, "x", "Cache-Control", "max-age=600"))
	r, _ = e.get("/inv")
	wantCS(t, r, "hit")
}

func TestPassThroughIsFaithful(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Echo-Method", r.Method)
		w.Header().Set("X-Echo-URI", r.RequestURI)
		w.Header().Set("X-Echo-Custom", r.Header.Get("X-Custom-Thing"))
		w.Header().Set("X-Response-Unknown", "kept")
		w.WriteHeader(202)
		fmt.Fprintf(w, "len=%d body=%s", len(body), body)
	})
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"} {
		target := "/p%2Fq/%7Euser;x=1?a=%20b&c=d&c=e&&z"
		h := http.Header{"X-Custom-Thing": {"42"}}
		r, b := e.do(m, target, h, strings.NewReader("payload-"+m))
		wantStatus(t, r, 202)
		if got := r.Header.Get("X-Echo-Method"); got != m {
			t.Fatalf("method %s reached origin as %s", m, got)
		}
		if got := r.Header.Get("X-Echo-URI"); got != target {
			t.Fatalf("%s target reached origin as %q, want %q", m, got, target)
		}
		if r.Header.Get("X-Echo-Custom") != "42" || r.Header.Get("X-Response-Unknown") != "kept" {
			t.Fatalf("%s: unknown headers lost: %v", m, r.Header)
		}
		if want := fmt.Sprintf("len=%d body=payload-%s", len("payload-"+m), m); b != want {
			t.Fatalf("%s body %q, want %q", m, b, want)
		}
	}
	// GET path and query reach origin byte for byte too.
	e.origin.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, r.RequestURI)
	})
	target := "/g%2Fx/%41?q=%2B+1&b"
	_, b := e.get(target)
	if b != target {
		t.Fatalf("GET target reached origin as %q, want %q", b, target)
	}
}

func TestEarlyHintsRelayed(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(103)
		w.Header().Del("Link")
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "final")
	})
	for _, method := range []string{"GET", "POST"} {
		var hints []string
		req, _ := http.NewRequest(method, e.base+"/eh-"+method, nil)
		req.Host = testHost
		req = req.WithContext(withGot1xx(req.Context(), func(code int, h http.Header) {
			hints = append(hints, fmt.Sprintf("%d %s", code, h.Get("Link")))
		}))
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if len(hints) != 1 || hints[0] != "103 </style.css>; rel=preload" {
			t.Fatalf("%s: 1xx seen by client: %q", method, hints)
		}
		if resp.Header.Get("Link") != "" {
			t.Fatalf("%s: hint header leaked into the final response", method)
		}
	}
}

// An origin that sends 103s without end is cut off after a few (see
// origin's maxInformational): it could otherwise stream them to the
// client for as long as the fill waits. Its request fails as an origin
// error, whichever client reaches the origin (GET: the lean one, POST:
// the Transport, through the pass path's proxy).
func TestEndlessEarlyHintsCutOff(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		for range 200 {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(103)
		}
		w.Header().Del("Link")
		io.WriteString(w, "final")
	})
	for _, method := range []string{"GET", "POST"} {
		hints := 0
		req, _ := http.NewRequest(method, e.base+"/eh-endless-"+method, nil)
		req.Host = testHost
		req = req.WithContext(withGot1xx(req.Context(), func(int, http.Header) { hints++ }))
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if hints > 10 || resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("%s: %d hints relayed, then %d; want at most 10, then 502", method, hints, resp.StatusCode)
		}
	}
}

func TestOrigin206PassedNotStored(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Range", "bytes 0-3/10")
		w.WriteHeader(206)
		io.WriteString(w, "0123")
	})
	for i := 0; i < 2; i++ {
		r, b := e.get("/p206")
		wantStatus(t, r, 206)
		if b != "0123" {
			t.Fatal(b)
		}
	}
	if n := e.origin.count("/p206"); n != 2 {
		t.Fatalf("origin count %d: a 206 was stored", n)
	}
}

func TestRange(t *testing.T) {
	const body = "0123456789abcdefghij"
	e := newEnv(t, respond(200, body, "Cache-Control", "max-age=60", "ETag", `"r1"`, "Content-Type", "text/plain"))
	// A range request on a cold object: served, and it does not poison the
	// cache with a partial body.
	r, b := e.get("/r", "Range", "bytes=2-4")
	wantStatus(t, r, 206)
	if b != "234" || r.Header.Get("Content-Range") != "bytes 2-4/20" {
		t.Fatalf("cold range: %q %q", b, r.Header.Get("Content-Range"))
	}
	// The range answer may come before the fill has the whole body: the
	// full GET then joins the fill rather than finding it stored.
	r, b = e.get("/r")
	wantStatus(t, r, 200)
	if cs := cacheStatus(r); !strings.Contains(cs, "hit") && !strings.Contains(cs, "collapsed") {
		t.Fatalf("full GET after a range fill went upstream: %q", cs)
	}
	if b != body {
		t.Fatalf("full body after range fill: %q", b)
	}
	r, b = e.get("/r", "Range", "bytes=-3")
	wantStatus(t, r, 206)
	if b != "hij" {
		t.Fatalf("suffix range: %q", b)
	}
	r, b = e.get("/r", "Range", "bytes=0-1,5-6")
	wantStatus(t, r, 206)
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/byteranges") ||
		!strings.Contains(b, "01") || !strings.Contains(b, "56") || !strings.Contains(b, "bytes 5-6/20") {
		t.Fatalf("multipart: %q %q", r.Header.Get("Content-Type"), b)
	}
	if int64(len(b)) != r.ContentLength {
		t.Fatalf("multipart length %d, Content-Length %d", len(b), r.ContentLength)
	}
	r, _ = e.get("/r", "Range", "bytes=50-60")
	wantStatus(t, r, 416)
	if r.Header.Get("Content-Range") != "bytes */20" {
		t.Fatalf("416 Content-Range %q", r.Header.Get("Content-Range"))
	}
	r, b = e.get("/r", "Range", "bytes=2-4", "If-Range", `"stale-etag"`)
	wantStatus(t, r, 200)
	if b != body {
		t.Fatal("If-Range mismatch must give the whole object")
	}
	r, b = e.get("/r", "Range", "garbage")
	wantStatus(t, r, 200)
	if n := e.origin.count("/r"); n != 1 {
		t.Fatalf("origin count %d, want 1", n)
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	release := make(chan struct{})
	version := 0
	var e *env
	e = newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=60")
		if version > 0 {
			<-release
		}
		fmt.Fprintf(w, "v%d", version)
	}, func(c *edge.Config) {
		// The refresh waits for release, however slowly the GETs below
		// run on a loaded machine: the site's timeout must not end it.
		c.Sites[0].Timeout = time.Minute
	})
	e.get("/swr")
	e.clock.Advance(20 * time.Second)
	version = 1
	// The refresh hangs in the origin until released; the stale copy is
	// served at once, every time, and only one refresh runs.
	for i := 0; i < 5; i++ {
		r, b := e.get("/swr")
		wantCS(t, r, "hit", "detail=stale-while-revalidate")
		if b != "v0" {
			t.Fatalf("stale body %q", b)
		}
	}
	close(release)
	waitFor(t, func() bool {
		r, b := e.get("/swr")
		return b == "v1" && strings.Contains(cacheStatus(r), "hit")
	})
	if n := e.origin.count("/swr"); n != 2 {
		t.Fatalf("origin count %d, want 2 (one background refresh)", n)
	}
}

func TestStaleIfErrorAndGrace(t *testing.T) {
	cases := []struct {
		name      string
		cc        string
		grace     time.Duration
		wantStale bool
	}{
		{"stale-if-error directive", "max-age=10, stale-if-error=300", 0, true},
		{"site grace", "max-age=10", 5 * time.Minute, true},
		{"no grace", "max-age=10", 0, false},
		{"must-revalidate beats grace", "max-age=10, must-revalidate", 5 * time.Minute, false},
		{"proxy-revalidate beats grace", "max-age=10, proxy-revalidate", 5 * time.Minute, false},
		{"no-cache beats grace", "max-age=10, no-cache", 5 * time.Minute, false},
		{"window passed", "max-age=10, stale-if-error=15", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, respond(200, "good", "Cache-Control", tc.cc, "ETag", `"g"`), func(c *edge.Config) {
				c.Sites[0].Grace.IfError = tc.grace
			})
			e.get("/sie")
			e.clock.Advance(60 * time.Second)
			e.origin.setHandler(respond(503, "down"))
			r, b := e.get("/sie")
			if tc.wantStale {
				wantStatus(t, r, 200)
				wantCS(t, r, "fwd=stale", "fwd-status=503", "detail=stale-if-error")
				if b != "good" {
					t.Fatalf("stale body %q", b)
				}
			} else {
				wantStatus(t, r, 503)
			}
		})
	}
}

func TestOriginDown(t *testing.T) {
	e := newEnv(t, respond(200, "cached", "Cache-Control", "max-age=10, stale-if-error=600"))
	e.get("/down")
	e.clock.Advance(30 * time.Second)
	e.origin.srv.CloseClientConnections()
	e.origin.srv.Close()
	r, b := e.get("/down")
	wantStatus(t, r, 200)
	wantCS(t, r, "fwd=stale", "detail=stale-if-error")
	if b != "cached" {
		t.Fatalf("stale body %q", b)
	}
	r, _ = e.get("/never-cached")
	wantStatus(t, r, 502)
	wantCS(t, r, "detail=origin-unreachable")
}

func TestOriginHangGives504WithinTimeout(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}, func(c *edge.Config) { c.Sites[0].Timeout = 300 * time.Millisecond })
	r, _ := e.get("/hang")
	wantStatus(t, r, 504)
	wantCS(t, r, "detail=origin-timeout")
}

// waitFor polls cond until it holds (see internal/poll).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	poll.Until(t, 10*time.Second, "the condition holds", cond)
}

// Two origin servers in a site's pool, one killed under a request loop:
// no client request fails, cached or not.
func TestPoolServerKilledUnderLoad(t *testing.T) {
	mk := func() *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("nocache") == "" {
				w.Header().Set("Cache-Control", "max-age=600")
			}
			io.WriteString(w, "ok "+r.URL.RequestURI())
		}))
	}
	a, b := mk(), mk()
	defer a.Close()
	defer b.Close()
	e := newEnv(t, respond(200, "unused"), func(c *edge.Config) {
		c.Sites[0].Origin = ""
		c.Sites[0].Pool = origin.PoolConfig{
			Servers: []origin.ServerConfig{{URL: a.URL}, {URL: b.URL}},
			Health:  origin.HealthConfig{Enabled: true, Interval: 20 * time.Millisecond, Timeout: 50 * time.Millisecond},
		}
	})
	failures := 0
	for i := 0; i < 400; i++ {
		if i == 100 {
			a.CloseClientConnections()
			a.Close()
		}
		target := fmt.Sprintf("/k%d", i%50)
		if i%3 == 0 {
			target = fmt.Sprintf("/u%d?nocache=1", i)
		}
		r, body := e.get(target)
		if r.StatusCode != 200 || body != "ok "+target {
			failures++
			t.Logf("request %d %s: %d %q", i, target, r.StatusCode, body)
		}
	}
	if failures != 0 {
		t.Fatalf("%d client requests failed while an origin server died", failures)
	}
}
