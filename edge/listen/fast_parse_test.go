package listen

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/fill"
)

// FuzzParseHead checks the fast front's header reader against net/http:
// whatever it accepts as a request it may answer itself (a complete,
// bodiless GET or HEAD) net/http must read the same way — same method,
// target and Host, no body — so that no request means one thing to the
// fast front and another to net/http behind it; the fast front's hit
// lookup (edge.Handler.LookupHit) finds exactly the answers that ServeHTTP serves
// as hits for the request net/http read; and what a miss sends upstream
// (the forwarded request, and the key it is filled for) is what the fast
// front's own reading of the head says it must be (see checkForwarded).
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
		"GET /obj?utm_a=1&b=2&utm_c=x;d HTTP/1.1\r\nHost: A.test.:80\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\n",
		"GET /obj HTTP/1.1\r\nHost: site.test\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nVia: 1.1 x\r\n\r\n",
		"GET /obj HTTP/1.1\r\nHost: site.test\r\nX-Original-URL: /admin\r\nX-HTTP-Method-Override: DELETE\r\nKeep-Alive: 5\r\nTE: trailers\r\n\r\n",
		"HEAD /obj HTTP/1.1\r\nHost: site.test\r\nX-Forwarded-Proto: HTTPS\r\nIf-None-Match: \"x\"\r\nRange: bytes=0-1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	// An edge whose every fill is a fresh 200, new for each request (so
	// that no other request's entry stands in): once ServeHTTP has
	// answered the request, it is a hit for ServeHTTP, and must be one for
	// the fast front too (the same key, through Handler.LookupHit), and the
	// other way round. a.test rewrites its keys' queries; 192.0.2.0/24 is
	// a trusted proxy whose X-Forwarded-Proto counts.
	cfg := edge.Config{
		Server: edge.ServerConfig{TrustedProxies: []string{"192.0.2.0/24"}},
		Sites: []edge.SiteConfig{
			{Hosts: []string{"site.test"}, Origin: "http://origin.test:8080"},
			{Hosts: []string{"a.test"}, Origin: "http://origin.test:8080",
				CacheKey: edge.CacheKeyConfig{Query: edge.KeyQuerySorted, IgnoreParams: []string{"utm_*"}}},
		}}
	fills := &fillRecorder{}
	opt := edge.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Upstream: func(edge.SiteConfig) http.RoundTripper { return freshOrigin{} },
		WrapUpstream: func(_ edge.SiteConfig, o fill.Upstream) fill.Upstream {
			return upstreamFunc(func(r *http.Request, info fill.Info) (*http.Response, error) {
				fills.record(r, info)
				return o.Fill(r, info)
			})
		}}
	var x edge.Hit
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
		for _, remote := range []string{"198.51.100.9:4711", "192.0.2.7:4711"} { // untrusted, trusted
			r.RemoteAddr = remote
			hr := edge.HitRequest{Head: req.head, Host: req.host, Target: req.target, ForwardedProto: req.proto,
				CacheControl: req.clientCC, Remote: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(remote))}
			h, err := edge.New(cfg, opt)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			serve := func() *httptest.ResponseRecorder {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				return w
			}
			fills.reset()
			serve() // stores the answer, if the request routes
			checkForwarded(t, p[:end], &req, remote == "192.0.2.7:4711", fills)
			if !req.plain {
				continue // the fast front never looks such a request up
			}
			byServeHTTP := isHit(serve())
			byFront := h.LookupHit(hr, &x)
			if byFront {
				h.Delivered(&x, 0)
			}
			if byServeHTTP && !byFront {
				t.Fatalf("from %s: ServeHTTP answers a hit, the fast front's lookup misses: %q", remote, p[:end])
			}
			if byFront && !isHit(serve()) {
				t.Fatalf("from %s: the fast front's lookup hits, ServeHTTP does not: %q", remote, p[:end])
			}
		}
	})
}

// freshOrigin answers every fill with a fresh, storable 200.
type freshOrigin struct{}

func (freshOrigin) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"Cache-Control": {"max-age=600"}, "Content-Type": {"text/plain"}},
		Body:    io.NopCloser(strings.NewReader("ok")),
		Request: r, ContentLength: 2}, nil
}

// isHit reports whether ServeHTTP answered from the store, fresh and whole.
func isHit(w *httptest.ResponseRecorder) bool {
	cs := w.Header().Get("Cache-Status")
	return w.Code == 200 && strings.Contains(cs, "; hit") && !strings.Contains(cs, "stale")
}

// upstreamFunc is a fill.Upstream from a function.
type upstreamFunc func(*http.Request, fill.Info) (*http.Response, error)

func (f upstreamFunc) Fill(r *http.Request, info fill.Info) (*http.Response, error) {
	return f(r, info)
}

// fillRecorder keeps the fills an edge sent upstream (the request and its
// fill.Info), since the last reset.
type fillRecorder struct {
	mu    sync.Mutex
	reqs  []*http.Request
	infos []fill.Info
}

func (f *fillRecorder) record(r *http.Request, info fill.Info) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, r.Clone(r.Context()))
	f.infos = append(f.infos, info)
}

func (f *fillRecorder) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs, f.infos = nil, nil
}

// overrideFields are the fields a fill never carries on the fuzz's sites
// (edge drops them unless forward_override_fields), and hopByHop those no
// forwarded request carries.
var (
	overrideFields = []string{"X-Original-Url", "X-Rewrite-Url", "X-Http-Method-Override", "X-Http-Method", "X-Method-Override", "X-Host"}
	hopByHop       = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Proxy-Authorization"}
)

// checkForwarded checks the fill that ServeHTTP sent upstream for head
// (if any: a request that does not route, or is refused, sends none)
// against what the fast front read of it (req), from a trusted proxy or
// not: the key's scheme and host and the Host, target and forwarding
// fields sent are derived from the fast front's reading here, on their
// own, as the security model says them (deploy/README.md): the host
// lower case without port or trailing dot, the scheme http unless a
// trusted proxy's last X-Forwarded-Proto says https, the query as sent on
// site.test and without utm_* parameters on a.test, the client's
// forwarding fields replaced unless trusted, no hop-by-hop or override
// field, no Connection: close.
func checkForwarded(t *testing.T, head []byte, req *request, trusted bool, fills *fillRecorder) {
	t.Helper()
	fills.mu.Lock()
	reqs, infos := fills.reqs, fills.infos
	fills.mu.Unlock()
	if len(reqs) == 0 {
		return
	}
	if len(reqs) != 1 {
		t.Fatalf("%d fills for one request: %q", len(reqs), head)
	}
	out, info := reqs[0], infos[0]
	host := strings.ToLower(string(req.host))
	if i := strings.IndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	scheme := "http"
	if trusted && req.proto != nil {
		v := string(req.proto)
		if i := strings.LastIndexByte(v, ','); i >= 0 {
			v = v[i+1:]
		}
		v = strings.ToLower(strings.Trim(v, " \t"))
		if v == "https" {
			scheme = "https"
		}
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("forwarded %s %s Host %q %v\nfor %q (trusted %v): "+format,
			append([]any{out.Method, out.URL.RequestURI(), out.Host, out.Header, head, trusted}, args...)...)
	}
	if out.Method != http.MethodGet || out.Host != host || info.Host != host || info.Scheme != scheme || out.Close {
		fail("want GET, Host %q, scheme %q, no close (info %+v)", host, scheme, info)
	}
	if host != "site.test" && host != "a.test" {
		fail("a host no site lists went upstream")
	}
	if !strings.HasSuffix(info.Key, host+out.URL.RequestURI()) || strings.HasPrefix(info.Key, "https") != (scheme == "https") {
		fail("key %q is not the forwarded host and target", info.Key)
	}
	target := string(req.target)
	if strings.HasPrefix(target, "/") {
		path, query, hasQuery := strings.Cut(target, "?")
		if out.URL.EscapedPath() != path {
			fail("path %q, the fast front read %q", out.URL.EscapedPath(), path)
		}
		if host == "site.test" {
			if out.URL.RawQuery != query || out.URL.ForceQuery != (hasQuery && query == "") {
				fail("query %q, the fast front read %q", out.URL.RawQuery, query)
			}
		} else {
			var want []string
			for _, p := range strings.Split(query, "&") {
				if p != "" && (!strings.HasPrefix(p, "utm_") || strings.Contains(p, ";")) {
					want = append(want, p)
				}
			}
			got := strings.Split(out.URL.RawQuery, "&")
			if out.URL.RawQuery == "" {
				got = nil
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				fail("parameters %q, want %q (keyed: no utm_*)", got, want)
			}
		}
	}
	if got := out.Header["X-Forwarded-Proto"]; !slices.Equal(got, []string{scheme}) {
		fail("X-Forwarded-Proto %q, want %q", got, scheme)
	}
	if got := out.Header["X-Forwarded-Host"]; !slices.Equal(got, []string{host}) {
		fail("X-Forwarded-Host %q, want %q", got, host)
	}
	if !trusted {
		wantFwd := map[string][]string{"X-Forwarded-For": {"198.51.100.9"},
			"Forwarded": {"for=198.51.100.9;host=" + host + ";proto=" + scheme}, "X-Real-Ip": nil}
		for name, want := range wantFwd {
			if got := out.Header[name]; !slices.Equal(got, want) {
				fail("%s %q from an untrusted client, want %q", name, got, want)
			}
		}
		for name := range out.Header {
			if strings.HasPrefix(name, "X-Forwarded-") && name != "X-Forwarded-For" && name != "X-Forwarded-Proto" && name != "X-Forwarded-Host" {
				fail("%s from an untrusted client", name)
			}
		}
	}
	for _, name := range append(slices.Clone(overrideFields), hopByHop...) {
		if out.Header[name] != nil {
			fail("%s forwarded", name)
		}
	}
}

// FuzzNewRequest checks the request the fast front builds for the
// handler (newRequest, for what it does not answer as a hit) against the
// one net/http's server reads from the same bytes: method, URL, target,
// Host, header map (Host taken out, Pragma: no-cache read as
// Cache-Control), Close, and no body.
func FuzzNewRequest(f *testing.F) {
	for _, s := range []string{
		"GET /obj HTTP/1.1\r\nHost: site.test\r\n\r\n",
		"HEAD /a?b=c%20d HTTP/1.1\r\nHost: site.test:8080\r\nConnection: close\r\n\r\n",
		"GET //x/../y?q HTTP/1.1\r\nhost: A.Test.\r\naccept: a\r\nACCEPT: b\r\nx-odd:\t tabbed \t\r\n\r\n",
		"GET /obj HTTP/1.1\r\nHost: site.test\r\nPragma: no-cache\r\n\r\n",
		"GET /obj HTTP/1.1\r\nHost: site.test\r\nPragma: no-cache\r\nCache-Control: max-age=0\r\n\r\n",
		"GET /obj HTTP/1.1\r\nHost: site.test\r\nIf-None-Match: \"x\"\r\nRange: bytes=0-1\r\nAuthorization: Basic eDp5\r\n\r\n",
		"GET /obj HTTP/1.1\r\nHost: site.test\r\nX-Empty:\r\nConnection: keep-alive, close\r\n\r\n",
		"GET /obj HTTP/1.1\r\nHost: site.test\r\nExpect: 100-continue\r\n\r\n",
		"GET /o%41;p=1?a=%zz HTTP/1.1\r\nHost: site.test\r\nx_under: 1\r\nweird-NAME: 2\r\n\r\n",
		"GET /a? HTTP/1.1\r\nHost: site.test\r\n\r\n",
		"GET /a?? HTTP/1.1\r\nHost: site.test\r\n\r\n",
		"GET /a!b'(c)*;d?x=1?y HTTP/1.1\r\nHost: site.test\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	c := &fastConn{f: &fastFront{inner: &http.Server{}}, nc: fakeAddrConn{}}
	f.Fuzz(func(t *testing.T, p []byte) {
		end, _, verdict := scanHead(p, 0, 1<<16)
		if verdict != headDone {
			return
		}
		var req request
		if parseHead(p[:end], &req) != headDone || !req.bodyless || req.lendable {
			return
		}
		got := c.newRequest(p[:end], &req, newReqContext(c.missContext()))
		want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(p[:end])))
		if err != nil {
			t.Fatalf("fast reader accepts what net/http refuses (%v): %q", err, p[:end])
		}
		if got == nil {
			t.Fatalf("no request built for %q", p[:end])
		}
		delete(want.Header, "Host") // as net/http's server does
		if pr := want.Header["Pragma"]; len(pr) > 0 && pr[0] == "no-cache" && want.Header["Cache-Control"] == nil {
			want.Header["Cache-Control"] = []string{"no-cache"} // as net/http's server does
		}
		if got.Method != want.Method || *got.URL != *want.URL || got.RequestURI != want.RequestURI || got.Host != want.Host ||
			got.Proto != want.Proto || got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor ||
			got.Close != want.Close || got.ContentLength != 0 || got.Body != http.NoBody || got.TransferEncoding != nil {
			t.Fatalf("built %s %#v %q host %q %s close %v; net/http %s %#v %q host %q %s close %v", got.Method, got.URL, got.RequestURI,
				got.Host, got.Proto, got.Close, want.Method, want.URL, want.RequestURI, want.Host, want.Proto, want.Close)
		}
		if !reflect.DeepEqual(got.Header, want.Header) {
			t.Fatalf("header %q, net/http %q", got.Header, want.Header)
		}
		if got.Context().Value(http.ServerContextKey) != c.f.inner {
			t.Fatalf("the request's context has no server")
		}
	})
}

// fakeAddrConn is a connection with addresses only.
type fakeAddrConn struct{ net.Conn }

func (fakeAddrConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
func (fakeAddrConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4711}
}

// TestAppendFieldsAsWriteSubset: the fast writer writes a header's fields
// as net/http's Header.WriteSubset does.
func TestAppendFieldsAsWriteSubset(t *testing.T) {
	h := http.Header{
		"B-Field":                {"two", " padded\t", "line\r\nbreak", "\r\n", ""},
		"A-Field":                {"one"},
		"Bad Name":               {"dropped"},
		"Content-Length":         {"5"},
		"Transfer-Encoding":      {"chunked"},
		"Connection":             {"close"},
		"Content-Type":           {"text/plain"},
		http.TrailerPrefix + "X": {"t"},
		"Empty":                  nil,
	}
	for _, tc := range []struct {
		skip    int
		exclude map[string]bool
	}{
		{0, nil},
		{skipFraming, map[string]bool{"Content-Length": true, "Transfer-Encoding": true}},
		{skipFraming | skipConnection | skipContentType | skipTrailers,
			map[string]bool{"Content-Length": true, "Transfer-Encoding": true, "Connection": true, "Content-Type": true, http.TrailerPrefix + "X": true}},
	} {
		var want bytes.Buffer
		h.WriteSubset(&want, tc.exclude)
		if got := appendFields(nil, h, tc.skip); string(got) != want.String() {
			t.Errorf("skip %b:\n got %q\nwant %q", tc.skip, got, want.String())
		}
	}
}
