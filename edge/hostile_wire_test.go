package edge_test

// Hostile inputs, as the origin sees them on the wire (issue 12): a raw TCP
// origin records the head of every request it receives, byte for byte, so
// that what reaches it is asserted exactly, not as net/http would read it
// (a Connection: close, a duplicated field, a field's case or order would
// not show in a parsed request).

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/quic-go/quic-go/http3"

	"github.com/meridiancdn/meridian/edge"
)

// wireOrigin is an HTTP/1.1 origin on 127.0.0.1 that records each request
// head it reads, as bytes, and whether it then read the whole body, and
// answers every request with a small storable 200 (keeping the connection
// open unless asked to close it): with max-age, or only Last-Modified
// under /account/ (the account pages of a framework that forgets
// Cache-Control).
type wireOrigin struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	heads []string
	whole []bool // heads[i]'s body was read to its end
	dials int    // connections accepted
	conns map[net.Conn]bool
}

func newWireOrigin(t *testing.T) *wireOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &wireOrigin{ln: ln, conns: map[net.Conn]bool{}}
	o.wg.Add(1)
	go o.accept()
	t.Cleanup(o.close)
	return o
}

func (o *wireOrigin) url() string { return "http://" + o.ln.Addr().String() }

func (o *wireOrigin) accept() {
	defer o.wg.Done()
	for {
		c, err := o.ln.Accept()
		if err != nil {
			return
		}
		o.mu.Lock()
		o.conns[c] = true
		o.dials++
		o.mu.Unlock()
		o.wg.Add(1)
		go o.serve(c)
	}
}

// serve reads requests off c until it closes: each head is recorded as
// read, its body (Content-Length or chunked) is read and dropped.
func (o *wireOrigin) serve(c net.Conn) {
	defer o.wg.Done()
	defer func() {
		o.mu.Lock()
		delete(o.conns, c)
		o.mu.Unlock()
		c.Close()
	}()
	br := bufio.NewReader(c)
	for {
		var head bytes.Buffer
		for {
			line, err := br.ReadSlice('\n')
			head.Write(line)
			if err != nil {
				return
			}
			if len(line) <= 2 && strings.TrimRight(string(line), "\r\n") == "" {
				break
			}
		}
		o.mu.Lock()
		o.heads = append(o.heads, head.String())
		o.whole = append(o.whole, false)
		i := len(o.heads) - 1
		o.mu.Unlock()
		req, err := http.ReadRequest(bufio.NewReader(io.MultiReader(bytes.NewReader(head.Bytes()), br)))
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return
		}
		o.mu.Lock()
		o.whole[i] = true
		o.mu.Unlock()
		body := "wire"
		fresh := "Cache-Control: max-age=600\r\n"
		if strings.Contains(req.URL.Path, "/account/") {
			fresh = "Last-Modified: Thu, 26 Nov 2026 12:00:00 GMT\r\n"
		}
		resp := "HTTP/1.1 200 OK\r\n" + fresh + "Content-Type: text/plain\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
		if req.Method != http.MethodHead {
			resp += body
		}
		if _, err := io.WriteString(c, resp); err != nil || req.Close {
			return
		}
	}
}

func (o *wireOrigin) close() {
	o.ln.Close()
	o.mu.Lock()
	for c := range o.conns {
		c.Close()
	}
	o.mu.Unlock()
	o.wg.Wait()
}

// wholeSince counts the requests received whole since the n-th.
func (o *wireOrigin) wholeSince(n int) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(slices.DeleteFunc(slices.Clone(o.whole[n:]), func(w bool) bool { return !w }))
}

// got returns the heads received so far.
func (o *wireOrigin) got() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.heads...)
}

// newTrace is a Traceparent the edge started itself (random ids, not
// sampled): the recorded heads show it as NEW-TRACE.
var newTrace = regexp.MustCompile(`(?m)^Traceparent: 00-[0-9a-f]{32}-[0-9a-f]{16}-00\r$`)

func (o *wireOrigin) last(t *testing.T) string {
	t.Helper()
	h := o.got()
	if len(h) == 0 {
		t.Fatal("the origin got no request")
	}
	return newTrace.ReplaceAllString(h[len(h)-1], "Traceparent: NEW-TRACE\r")
}

// fwdFields are the fields an edge named edge1 adds to what it sends
// upstream for an untrusted client at 127.0.0.1 over scheme, one value
// each (setForwarded), and the trace it starts.
func fwdFields(scheme string) []string {
	return []string{
		"Cdn-Loop: edge1",
		"Forwarded: for=127.0.0.1;host=site.test;proto=" + scheme,
		"Traceparent: NEW-TRACE",
		"Via: 1.1 edge1",
		"X-Forwarded-For: 127.0.0.1",
		"X-Forwarded-Host: site.test",
		"X-Forwarded-Proto: " + scheme,
	}
}

// wireHead is a request head as Go's transport writes it: the top lines
// (request line, Host, User-Agent, framing) as given, then the fields, the
// client's that the edge keeps and the edge's own (fwdFields), sorted by
// name, the client's first within a name (the edge appends to them).
func wireHead(top []string, scheme string, fields ...string) string {
	all := append(append([]string(nil), fields...), fwdFields(scheme)...)
	name := func(l string) string { n, _, _ := strings.Cut(l, ":"); return n }
	slices.SortStableFunc(all, func(a, b string) int { return strings.Compare(name(a), name(b)) })
	return strings.Join(append(append([]string(nil), top...), all...), "\r\n") + "\r\n\r\n"
}

// fillTop is the top of a fill's head for path: a GET, the keyed host, and
// Go's User-Agent when the client sent none.
func fillTop(path string) []string {
	return []string{"GET " + path + " HTTP/1.1", "Host: site.test", "User-Agent: Go-http-client/1.1"}
}

// hostileForwardingRaw is hostileForwarding as an attacker writes it on
// the wire, in any case.
const hostileForwardingRaw = "X-Forwarded-For: 6.6.6.6\r\nx-forwarded-proto: https\r\nX-Forwarded-Host: evil.test\r\n" +
	"X-FORWARDED-PORT: 8443\r\nX-Forwarded-Prefix: /evil\r\nForwarded: for=6.6.6.6;host=evil.test;proto=https\r\nX-Real-IP: 6.6.6.6\r\n"

// overrideRaw are fields that frameworks read as the request's real
// target, method or host (Symfony/IIS X-Original-URL and X-Rewrite-URL,
// method-override middleware, X-Host).
const overrideRaw = "X-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\nX-HTTP-Method-Override: DELETE\r\n" +
	"X-HTTP-Method: DELETE\r\nX-Method-Override: DELETE\r\nX-Host: evil.test\r\n"

// Every hostile item of issue 12 that reaches the request path, sent raw
// over HTTP/1.1 (TestMain runs it on both fronts): each case asserts the
// status the attacker got, every head the origin received, byte for byte
// (nothing at all for a refused request), and whether an innocent GET of
// the same URL afterwards is answered from the store (the attacker's fill
// was keyed as the innocent request, or an entry survived) or has to go to
// the origin (nothing was stored for it, or it was invalidated).
func TestHostileItemsOnTheWire(t *testing.T) {
	o := newWireOrigin(t)
	e := newEnvOptions(t, nil, withPurgeToken("s3cret"), func(c *edge.Config) {
		c.Sites[0].Origin = o.url()
		c.Sites[0].CacheKey.IgnoreParams = []string{"utm_*"}
	})
	clean := func(p string) string { return wireHead(fillTop(p), "http") }
	for i, tc := range []struct {
		name    string
		raw     string // the attacker's request; {p} stands for the case's path
		status  int
		heads   func(p string) []string // what the origin received; nil: nothing
		prefill bool                    // an innocent GET stored {p} first
		stored  bool                    // the innocent GET after it is a hit
		query   string                  // of the innocent GET
		cut     bool                    // the request's body was cut: the origin got heads, if any, but no whole request
	}{
		// 1. Host: case, trailing dot and port are keyed and forwarded
		// normalized; junk is a 400 that reaches nobody.
		{name: "host spelling", raw: "GET {p} HTTP/1.1\r\nHost: SITE.Test.:8080\r\n\r\n", status: 200,
			heads: func(p string) []string { return []string{clean(p)} }, stored: true},
		{name: "host junk port", raw: "GET {p} HTTP/1.1\r\nHost: site.test:'onerror='alert(1)\r\n\r\n", status: 400},
		{name: "host two", raw: "GET {p} HTTP/1.1\r\nHost: site.test\r\nHost: evil.test\r\n\r\n", status: 400},
		{name: "absolute form", raw: "GET http://SITE.test.{p} HTTP/1.1\r\nHost: evil.test\r\n\r\n", status: 200,
			heads: func(p string) []string { return []string{clean(p)} }, stored: true},
		// 2, 3. The client's X-Forwarded-* and Forwarded are replaced by
		// what the edge saw, on a fill and on a pass-through method.
		{name: "forwarding fill", raw: "GET {p} HTTP/1.1\r\nHost: site.test\r\n" + hostileForwardingRaw + "\r\n", status: 200,
			heads: func(p string) []string { return []string{clean(p)} }, stored: true},
		{name: "forwarding pass", raw: "POST {p} HTTP/1.1\r\nHost: site.test\r\n" + hostileForwardingRaw + "Content-Length: 3\r\n\r\nabc", status: 200,
			heads: func(p string) []string {
				return []string{wireHead([]string{"POST " + p + " HTTP/1.1", "Host: site.test", "Content-Length: 3"}, "http")}
			}},
		// 4. A client's Via is passed on, this edge appended (it decides
		// nothing: the shield test is in internal/chaos).
		{name: "via", raw: "GET {p} HTTP/1.1\r\nHost: site.test\r\nVia: 1.1 r1-1\r\n\r\n", status: 200,
			heads: func(p string) []string { return []string{wireHead(fillTop(p), "http", "Via: 1.1 r1-1")} }, stored: true},
		// 6. The forwarded query is the keyed one: ignored parameters
		// dropped; one holding ';' is not ignored.
		{name: "ignored param", raw: "GET {p}?utm_source=x&id=1 HTTP/1.1\r\nHost: site.test\r\n\r\n", status: 200, query: "?id=1",
			heads: func(p string) []string { return []string{clean(p + "?id=1")} }, stored: true},
		{name: "cloaked param", raw: "GET {p}?id=1&utm_source=x;id=EVIL HTTP/1.1\r\nHost: site.test\r\n\r\n", status: 200, query: "?id=1",
			heads: func(p string) []string { return []string{clean(p + "?id=1&utm_source=x;id=EVIL")} }},
		// 5. A request with Cookie: its answer, with Last-Modified and no
		// Cache-Control, is not stored by heuristic freshness.
		{name: "deception", raw: "GET {p}/account/x.css HTTP/1.1\r\nHost: site.test\r\nCookie: session=victim\r\n\r\n", status: 200,
			query: "/account/x.css",
			heads: func(p string) []string {
				return []string{wireHead(fillTop(p+"/account/x.css"), "http", "Cookie: session=victim")}
			}},
		// 7. Content-Length with Transfer-Encoding: 400, nothing sent.
		{name: "CL and TE", raw: "POST {p} HTTP/1.1\r\nHost: site.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 400},
		{name: "TE in HTTP/1.0", raw: "POST {p} HTTP/1.0\r\nHost: site.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 400},
		// 8. A malformed chunked body: 400, and the upstream request
		// (begun as the body streams) aborted.
		{name: "bad chunk", raw: "POST {p} HTTP/1.1\r\nHost: site.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXY3\r\nabc\r\n0\r\n\r\n",
			status: 400, cut: true,
			heads: func(p string) []string {
				return []string{wireHead([]string{"POST " + p + " HTTP/1.1", "Host: site.test", "Transfer-Encoding: chunked"}, "http")}
			}},
		// A GET's body is not forwarded on a fill.
		{name: "GET with body", raw: "GET {p} HTTP/1.1\r\nHost: site.test\r\nContent-Length: 3\r\n\r\nabc", status: 200,
			heads: func(p string) []string { return []string{clean(p)} }, stored: true},
		// 10. PURGE without the token: 405, not forwarded, nothing
		// evicted; an unsafe method still invalidates (RFC 9111 §4.4).
		{name: "PURGE", raw: "PURGE {p} HTTP/1.1\r\nHost: site.test\r\n\r\n", status: 405, prefill: true, stored: true},
		{name: "POST invalidates", raw: "POST {p} HTTP/1.1\r\nHost: site.test\r\nContent-Length: 0\r\n\r\n", status: 200, prefill: true,
			heads: func(p string) []string {
				return []string{wireHead([]string{"POST " + p + " HTTP/1.1", "Host: site.test", "Content-Length: 0"}, "http")}
			}},
		// 11. TRACE: 405; Max-Forwards is honoured for OPTIONS.
		{name: "TRACE", raw: "TRACE {p} HTTP/1.1\r\nHost: site.test\r\n\r\n", status: 405},
		{name: "OPTIONS Max-Forwards 0", raw: "OPTIONS {p} HTTP/1.1\r\nHost: site.test\r\nMax-Forwards: 0\r\n\r\n", status: 200},
		{name: "OPTIONS Max-Forwards 5", raw: "OPTIONS {p} HTTP/1.1\r\nHost: site.test\r\nMax-Forwards: 5\r\n\r\n", status: 200,
			heads: func(p string) []string {
				return []string{wireHead([]string{"OPTIONS " + p + " HTTP/1.1", "Host: site.test"}, "http", "Max-Forwards: 4")}
			}},
		// 12. A CDN-Loop naming this edge is a 508; another is kept.
		{name: "CDN-Loop self", raw: "GET {p} HTTP/1.1\r\nHost: site.test\r\nCDN-Loop: EDGE1\r\n\r\n", status: 508},
		{name: "CDN-Loop other", raw: "GET {p} HTTP/1.1\r\nHost: site.test\r\nCDN-Loop: other\r\n\r\n", status: 200,
			heads: func(p string) []string { return []string{wireHead(fillTop(p), "http", "Cdn-Loop: other")} }, stored: true},
		// Hop-by-hop fields, and those Connection names, stop here: the
		// client's Connection: close is not the origin's business (it
		// would cost a connection per request), and a field the edge
		// sets is set even when the client names it.
		{name: "Connection close", raw: "GET {p} HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n", status: 200,
			heads: func(p string) []string { return []string{clean(p)} }, stored: true},
		{name: "hop-by-hop", raw: "GET {p} HTTP/1.1\r\nHost: site.test\r\nConnection: keep-alive, X-Secret, X-Forwarded-For, Cookie\r\n" +
			"X-Secret: 1\r\nCookie: a=b\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n" +
			"Proxy-Authorization: Basic eDp5\r\nTrailer: X-T\r\nUpgrade: h2c\r\n\r\n", status: 200,
			heads: func(p string) []string { return []string{clean(p)} }, stored: true},
		{name: "pass hop-by-hop", raw: "DELETE {p} HTTP/1.1\r\nHost: site.test\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\n" +
			"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eDp5\r\n\r\n", status: 200,
			heads: func(p string) []string {
				return []string{wireHead([]string{"DELETE " + p + " HTTP/1.1", "Host: site.test"}, "http")}
			}},
		// Fields that make a framework answer another target, method or
		// host are not sent on a fill, whose answer is shared under the
		// key of the target, method and host the edge saw; a method that
		// is passed through (never stored) keeps them (method tunnelling
		// through POST is their legitimate use).
		{name: "override fill", raw: "GET {p} HTTP/1.1\r\nHost: site.test\r\n" + overrideRaw + "\r\n", status: 200,
			heads: func(p string) []string { return []string{clean(p)} }, stored: true},
		{name: "override pass", raw: "POST {p} HTTP/1.1\r\nHost: site.test\r\n" + overrideRaw + "Content-Length: 0\r\n\r\n", status: 200,
			heads: func(p string) []string {
				return []string{wireHead([]string{"POST " + p + " HTTP/1.1", "Host: site.test", "Content-Length: 0"}, "http",
					"X-Host: evil.test", "X-Http-Method: DELETE", "X-Http-Method-Override: DELETE",
					"X-Method-Override: DELETE", "X-Original-Url: /admin", "X-Rewrite-Url: /admin")}
			}},
	} {
		p := fmt.Sprintf("/w%d", i)
		if tc.prefill {
			if resp, _ := e.get(p + tc.query); resp.StatusCode != 200 {
				t.Fatalf("%s: prefill %d", tc.name, resp.StatusCode)
			}
		}
		n := len(o.got())
		resp, body := rawDo(t, e.addr(), strings.ReplaceAll(tc.raw, "{p}", p))
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d %q, want %d", tc.name, resp.StatusCode, body, tc.status)
		}
		var want []string
		if tc.heads != nil {
			want = tc.heads(p)
		}
		// A fill can still be going on once the client has its answer
		// (it stores the body after the last byte is sent): it is done
		// when the in-flight budget is back to zero.
		eventually(t, tc.name+": fill over", func() bool { return e.metric("meridian_edge_inflight_bytes") == 0 })
		// Only this case's requests: a head of an earlier case's request
		// whose body broke off (item 8) may reach the origin late.
		got := slices.DeleteFunc(o.got()[n:], func(h string) bool { return !headIsFor(h, p) })
		for j := range got {
			got[j] = newTrace.ReplaceAllString(got[j], "Traceparent: NEW-TRACE\r")
		}
		if tc.cut {
			// Whether the head left the edge before the body broke off
			// is the transport's business; a whole request never did.
			if w := o.wholeSince(n); w != 0 || len(got) > len(want) || len(got) > 0 && got[0] != want[0] {
				t.Errorf("%s: the origin received %q, %d whole; want at most %q, none whole", tc.name, got, w, want)
			}
		} else if !slices.Equal(got, want) {
			t.Errorf("%s: the origin received\n%q\nwant\n%q", tc.name, got, want)
		}
		// An innocent client, afterwards.
		resp, body = e.get(p + tc.query)
		if resp.StatusCode != 200 || body != "wire" {
			t.Errorf("%s: innocent GET got %d %q", tc.name, resp.StatusCode, body)
		}
		if hit := strings.Contains(cacheStatus(resp), "hit"); hit != tc.stored {
			t.Errorf("%s: innocent GET Cache-Status %q, want stored %v", tc.name, cacheStatus(resp), tc.stored)
		}
	}
}

// frameworkOrigin honours X-Original-URL and X-HTTP-Method-Override, as
// some frameworks do, and answers with storable pages.
func frameworkOrigin(w http.ResponseWriter, r *http.Request) {
	path, method := r.URL.Path, r.Method
	if v := r.Header.Get("X-Original-Url"); v != "" {
		path = v
	}
	if v := r.Header.Get("X-Http-Method-Override"); v != "" {
		method = v
	}
	w.Header().Set("Cache-Control", "max-age=600")
	if method != http.MethodGet && method != http.MethodHead {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	fmt.Fprintf(w, "page %s", path)
}

// Override fields cannot poison a stored answer: an attacker's GET /home
// asking the framework for /nowhere, or for DELETE, fills /home with the
// home page; forward_override_fields: true sends them (and the site then
// answers whatever they ask for, stored under /home).
func TestHostileOverrideFields(t *testing.T) {
	for _, forward := range []bool{false, true} {
		t.Run(fmt.Sprint("forward_override_fields=", forward), func(t *testing.T) {
			e := newEnv(t, frameworkOrigin, func(c *edge.Config) { c.Sites[0].ForwardOverrideFields = forward })
			for i, hostile := range []string{"X-Original-URL: /nowhere", "X-HTTP-Method-Override: DELETE"} {
				p := fmt.Sprintf("/home%d", i)
				resp, body := rawDo(t, e.addr(), "GET "+p+" HTTP/1.1\r\nHost: site.test\r\n"+hostile+"\r\nConnection: close\r\n\r\n")
				poisoned := resp.StatusCode != 200 || body != "page "+p
				if poisoned != forward {
					t.Errorf("%s: attacker got %d %q", hostile, resp.StatusCode, body)
				}
				resp, body = e.get(p)
				wantCS(t, resp, "hit")
				if (resp.StatusCode != 200 || body != "page "+p) != forward {
					t.Errorf("%s: innocent client served %d %q", hostile, resp.StatusCode, body)
				}
			}
		})
	}
	c, err := edge.ParseConfig([]byte("sites: [{hosts: [a.test], origin: 'http://127.0.0.1:1', forward_override_fields: true}]\n"))
	if err != nil || !c.Sites[0].ForwardOverrideFields {
		t.Fatalf("forward_override_fields: %v %+v", err, c)
	}
}

// The hostile items that HTTP/2 and HTTP/3 can carry (no Connection or
// hop-by-hop fields, no ambiguous framing there), over each, against the
// recording origin: the same heads, byte for byte, as over HTTP/1.1 but
// for the scheme the edge saw (https).
func TestHostileItemsOverH2H3(t *testing.T) {
	o := newWireOrigin(t)
	te := newTLSEnvWith(t, nil, func(c *edge.Config) {
		c.Sites[0].Origin = o.url()
		c.Sites[0].CacheKey.IgnoreParams = []string{"utm_*"}
	})
	tlsConf := &tls.Config{RootCAs: te.pool(), ServerName: testHost}
	h2 := &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true, DisableCompression: true}
	defer h2.CloseIdleConnections()
	h3 := &http3.Transport{TLSClientConfig: tlsConf, DisableCompression: true}
	defer h3.Close()
	const ua = "User-Agent: hostile/1"
	fill := func(p string, fields ...string) string {
		return wireHead([]string{"GET " + p + " HTTP/1.1", "Host: site.test", ua}, "https", fields...)
	}
	pass := func(method, p, length string, fields ...string) string {
		top := []string{method + " " + p + " HTTP/1.1", "Host: site.test", ua}
		if length != "" {
			top = append(top, "Content-Length: "+length)
		}
		return wireHead(top, "https", fields...)
	}
	hostileFwd := http.Header{}
	for k, v := range hostileForwarding {
		hostileFwd[k] = v
	}
	override := http.Header{"X-Original-Url": {"/admin"}, "X-Rewrite-Url": {"/admin"}, "X-Http-Method-Override": {"DELETE"},
		"X-Http-Method": {"DELETE"}, "X-Method-Override": {"DELETE"}, "X-Host": {"evil.test"}}
	overridden := []string{"X-Host: evil.test", "X-Http-Method: DELETE", "X-Http-Method-Override: DELETE",
		"X-Method-Override: DELETE", "X-Original-Url: /admin", "X-Rewrite-Url: /admin"}
	for _, rt := range []struct {
		name  string
		rt    http.RoundTripper
		major int
	}{{"h2", h2, 2}, {"h3", h3, 3}} {
		for i, tc := range []struct {
			name, method, host, query, body string
			hdr                             http.Header
			status                          int
			heads                           func(p string) []string
			prefill, stored                 bool
		}{
			{name: "authority spelling", host: "SITE.Test.:8443", status: 200, stored: true,
				heads: func(p string) []string { return []string{fill(p)} }},
			{name: "authority junk", host: "site.test:'onerror='alert(1)", status: 400},
			{name: "forwarding fill", hdr: hostileFwd, status: 200, stored: true,
				heads: func(p string) []string { return []string{fill(p)} }},
			{name: "forwarding pass", method: "POST", body: "abc", hdr: hostileFwd, status: 200,
				heads: func(p string) []string { return []string{pass("POST", p, "3")} }},
			{name: "via", hdr: http.Header{"Via": {"1.1 r1-1"}}, status: 200, stored: true,
				heads: func(p string) []string { return []string{fill(p, "Via: 1.1 r1-1")} }},
			{name: "ignored param", query: "?utm_source=x&id=1", status: 200, stored: true,
				heads: func(p string) []string { return []string{fill(p + "?id=1")} }},
			{name: "cloaked param", query: "?id=1&utm_source=x;id=EVIL", status: 200,
				heads: func(p string) []string { return []string{fill(p + "?id=1&utm_source=x;id=EVIL")} }},
			{name: "deception", query: "/account/x.css", hdr: http.Header{"Cookie": {"session=victim"}}, status: 200,
				heads: func(p string) []string { return []string{fill(p+"/account/x.css", "Cookie: session=victim")} }},
			{name: "GET with body", body: "abc", status: 200, stored: true,
				heads: func(p string) []string { return []string{fill(p)} }},
			{name: "TE trailers", hdr: http.Header{"Te": {"trailers"}}, status: 200, stored: true,
				heads: func(p string) []string { return []string{fill(p)} }},
			{name: "PURGE", method: "PURGE", status: 405, prefill: true, stored: true},
			{name: "POST invalidates", method: "POST", body: "abc", status: 200, prefill: true,
				heads: func(p string) []string { return []string{pass("POST", p, "3")} }},
			{name: "TRACE", method: "TRACE", status: 405},
			{name: "OPTIONS Max-Forwards 0", method: "OPTIONS", hdr: http.Header{"Max-Forwards": {"0"}}, status: 200},
			{name: "OPTIONS Max-Forwards 5", method: "OPTIONS", hdr: http.Header{"Max-Forwards": {"5"}}, status: 200,
				heads: func(p string) []string { return []string{pass("OPTIONS", p, "", "Max-Forwards: 4")} }},
			{name: "CDN-Loop self", hdr: http.Header{"Cdn-Loop": {"EDGE1"}}, status: 508},
			{name: "CDN-Loop other", hdr: http.Header{"Cdn-Loop": {"other"}}, status: 200, stored: true,
				heads: func(p string) []string { return []string{fill(p, "Cdn-Loop: other")} }},
			{name: "override fill", hdr: override, status: 200, stored: true,
				heads: func(p string) []string { return []string{fill(p)} }},
			{name: "override pass", method: "POST", body: "abc", hdr: override, status: 200,
				heads: func(p string) []string { return []string{pass("POST", p, "3", overridden...)} }},
		} {
			p := fmt.Sprintf("/%s%d", rt.name, i)
			do := func(method, host, target, body string, hdr http.Header) (*http.Response, string) {
				t.Helper()
				var rd io.Reader
				if body != "" {
					rd = strings.NewReader(body)
				}
				req, _ := http.NewRequest(method, "https://"+te.tlsAddr+target, rd)
				req.Host = host
				for k, v := range hdr {
					req.Header[k] = v
				}
				req.Header.Set("User-Agent", "hostile/1")
				resp, err := rt.rt.RoundTrip(req)
				if err != nil {
					t.Fatalf("%s %s: %v", rt.name, tc.name, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.ProtoMajor != rt.major {
					t.Fatalf("%s %s: spoke %s", rt.name, tc.name, resp.Proto)
				}
				return resp, string(b)
			}
			innocent := p
			switch {
			case tc.name == "ignored param":
				innocent += "?id=1"
			case strings.HasPrefix(tc.query, "/"):
				innocent += tc.query
			}
			if tc.prefill {
				if resp, _ := do("GET", testHost, innocent, "", nil); resp.StatusCode != 200 {
					t.Fatalf("%s %s: prefill %d", rt.name, tc.name, resp.StatusCode)
				}
			}
			method, host := tc.method, tc.host
			if method == "" {
				method = "GET"
			}
			if host == "" {
				host = testHost
			}
			n := len(o.got())
			resp, body := do(method, host, p+tc.query, tc.body, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Errorf("%s %s: status %d %q, want %d", rt.name, tc.name, resp.StatusCode, body, tc.status)
			}
			var want []string
			if tc.heads != nil {
				want = tc.heads(p)
			}
			eventually(t, tc.name+": fill over", func() bool { return te.metric("meridian_edge_inflight_bytes") == 0 })
			got := slices.DeleteFunc(o.got()[n:], func(h string) bool { return !headIsFor(h, p) })
			for j := range got {
				got[j] = newTrace.ReplaceAllString(got[j], "Traceparent: NEW-TRACE\r")
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s %s: the origin received\n%q\nwant\n%q", rt.name, tc.name, got, want)
			}
			resp, body = do("GET", testHost, innocent, "", nil)
			if resp.StatusCode != 200 || body != "wire" {
				t.Errorf("%s %s: innocent GET got %d %q", rt.name, tc.name, resp.StatusCode, body)
			}
			if hit := strings.Contains(cacheStatus(resp), "hit"); hit != tc.stored {
				t.Errorf("%s %s: innocent GET Cache-Status %q, want stored %v", rt.name, tc.name, cacheStatus(resp), tc.stored)
			}
		}
	}
}

// A client's Connection: close ends its own connection, not the edge's
// origin connection: ten misses, each from a client that closes, reach the
// origin over one connection (or very few, see below). (Before, each fill carried Connection: close
// and the origin saw one connection per miss.)
func TestClientCloseKeepsOriginConnection(t *testing.T) {
	o := newWireOrigin(t)
	e := newEnv(t, nil, func(c *edge.Config) { c.Sites[0].Origin = o.url() })
	for i := range 10 {
		resp, body := rawDo(t, e.addr(), fmt.Sprintf("GET /close%d HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n", i))
		if resp.StatusCode != 200 || body != "wire" || !resp.Close {
			t.Fatalf("miss %d: %d %q (close %v)", i, resp.StatusCode, body, resp.Close)
		}
		eventually(t, "fill over", func() bool { return e.metric("meridian_edge_inflight_bytes") == 0 })
	}
	o.mu.Lock()
	dials, n := o.dials, len(o.heads)
	o.mu.Unlock()
	// One connection, but for a fill that may start just before the
	// transport has put the last one back as idle (it does so after
	// the body's end, on its own goroutine): a few at most, not ten.
	if n != 10 || dials > 3 {
		t.Fatalf("the origin got %d requests over %d connections, want 10 over 1 (3 at most)", n, dials)
	}
}

// An upgrade (WebSocket) goes to the origin with Connection: Upgrade only:
// the client's Connection: close, and the fields it names, stay on the
// client's hop.
func TestHostileUpgradeConnectionFields(t *testing.T) {
	o := newWireOrigin(t)
	e := newEnv(t, nil, func(c *edge.Config) { c.Sites[0].Origin = o.url() })
	resp, body := rawDo(t, e.addr(), "GET /ws HTTP/1.1\r\nHost: site.test\r\nConnection: close, Upgrade, X-Secret\r\nX-Secret: 1\r\n"+
		"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	if resp.StatusCode != 200 || body != "wire" { // the origin declined the upgrade: its answer
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	want := "GET /ws HTTP/1.1\r\nHost: site.test\r\nUser-Agent: Go-http-client/1.1\r\nCdn-Loop: edge1\r\nConnection: Upgrade\r\n" +
		"Forwarded: for=127.0.0.1;host=site.test;proto=http\r\nSec-Websocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-Websocket-Version: 13\r\n" +
		"Upgrade: websocket\r\nVia: 1.1 edge1\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Host: site.test\r\nX-Forwarded-Proto: http\r\n\r\n"
	if got := o.last(t); got != want {
		t.Fatalf("the origin received\n%q\nwant\n%q", got, want)
	}
}

// headIsFor reports whether a recorded request head's target is under
// path, a case's /wN: path itself, or followed by anything but a digit
// (/w1 is not /w12).
func headIsFor(head, path string) bool {
	line, _, _ := strings.Cut(head, "\r\n")
	f := strings.Fields(line)
	if len(f) < 2 {
		return false
	}
	i := strings.Index(f[1], path)
	if i < 0 {
		return false
	}
	rest := f[1][i+len(path):]
	return rest == "" || rest[0] < '0' || rest[0] > '9'
}
