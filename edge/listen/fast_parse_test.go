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
	"strings"
	"testing"

	"github.com/meridiancdn/meridian/edge"
)

// FuzzParseHead checks the fast front's header reader against net/http:
// whatever it accepts as a request it may answer itself (a complete,
// bodiless GET or HEAD) net/http must read the same way — same method,
// target and Host, no body — so that no request means one thing to the
// fast front and another to net/http behind it; and the fast front's hit
// lookup (edge.LookupHit) finds exactly the answers that ServeHTTP serves
// as hits for the request net/http read (edge's FuzzHitKey checks the
// key itself, and what a miss sends upstream).
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
	// An edge whose every fill is a fresh 200, new for each request (so
	// that no other request's entry stands in): once ServeHTTP has
	// answered the request, it is a hit for ServeHTTP, and must be one for
	// the fast front too (the same key, through edge.LookupHit), and the
	// other way round. a.test rewrites its keys' queries; 192.0.2.0/24 is
	// a trusted proxy whose X-Forwarded-Proto counts.
	cfg := edge.Config{
		Server: edge.ServerConfig{TrustedProxies: []string{"192.0.2.0/24"}},
		Sites: []edge.SiteConfig{
			{Hosts: []string{"site.test"}, Origin: "http://origin.test:8080"},
			{Hosts: []string{"a.test"}, Origin: "http://origin.test:8080",
				CacheKey: edge.CacheKeyConfig{Query: edge.KeyQuerySorted, IgnoreParams: []string{"utm_*"}}},
		}}
	opt := edge.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Upstream: func(edge.SiteConfig) http.RoundTripper { return freshOrigin{} }}
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
		if !req.plain {
			return // the fast front never looks such a request up
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
			serve() // stores the answer, if the request routes
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
