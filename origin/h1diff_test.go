package origin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/internal/poll"
)

// scriptOrigin is a raw TCP origin on 127.0.0.1:0 that answers with the
// bytes a test gives it: answer(conn's index, request's index on that
// connection, request head) returns what to write and whether to close
// the connection after it.
type scriptOrigin struct {
	ln      net.Listener
	url     string
	accepts atomic.Int32
	answer  func(conn, req int, head string) (reply string, closeAfter bool)

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
	heads []string // every request head received, in order
}

func startScript(t testing.TB, answer func(conn, req int, head string) (string, bool)) *scriptOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &scriptOrigin{ln: ln, url: "http://" + ln.Addr().String(), answer: answer}
	o.wg.Add(1)
	go o.serve()
	t.Cleanup(o.close)
	return o
}

func (o *scriptOrigin) close() {
	o.ln.Close()
	o.mu.Lock()
	for _, c := range o.conns {
		c.Close()
	}
	o.mu.Unlock()
	o.wg.Wait()
}

func (o *scriptOrigin) serve() {
	defer o.wg.Done()
	for {
		c, err := o.ln.Accept()
		if err != nil {
			return
		}
		n := int(o.accepts.Add(1)) - 1
		o.mu.Lock()
		o.conns = append(o.conns, c)
		o.mu.Unlock()
		o.wg.Add(1)
		go o.handle(c, n)
	}
}

func (o *scriptOrigin) handle(c net.Conn, n int) {
	defer o.wg.Done()
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; ; i++ {
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
		}
		o.mu.Lock()
		o.heads = append(o.heads, head.String())
		o.mu.Unlock()
		reply, closeAfter := o.answer(n, i, head.String())
		var err error
		for _, piece := range strings.Split(reply, "<<split>>") {
			if _, err = io.WriteString(c, piece); err != nil {
				break
			}
		}
		if err != nil || closeAfter {
			if tc, ok := c.(*net.TCPConn); ok {
				tc.CloseWrite() // the client sees EOF after every byte
			}
			io.Copy(io.Discard, br) // until the client closes
			return
		}
	}
}

// outcome is what a client made of one exchange.
type outcome struct {
	Err, BodyErr   Kind
	Status         string
	StatusCode     int
	Proto          string
	Header         http.Header
	Trailer        http.Header
	Body           string
	ContentLength  int64
	Close          bool
	TE             []string
	Reused         bool // a second request went on the same connection
	SecondErr      Kind
	SecondBody     string
	SecondReplied  bool
	ServerFailures uint64
}

// exchange sends method to an origin answering first to the first request
// and "ok" to any other, through a pool with the lean client or the
// Transport, then a second GET, and reports both.
func exchange(t *testing.T, std bool, method, first string, closeFirst, firstOnly bool) outcome {
	t.Helper()
	o := startScript(t, func(conn, req int, head string) (string, bool) {
		if conn == 0 && req == 0 {
			return first, closeFirst // the end of a close-delimited or cut off answer
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	p := newPool(t, PoolConfig{Servers: []ServerConfig{{URL: o.url}}, Retries: -1, TryTimeout: 5 * time.Second,
		Outlier: OutlierConfig{ConsecutiveErrors: -1}, stdTransport: std})
	out := roundTripOutcome(t, p, method)
	out.ServerFailures = p.Servers()[0].Failures
	if firstOnly {
		return out
	}
	resp2, b2, err := fetch(context.Background(), p, "GET", "/second", nil)
	out.SecondErr = kindOf(err)
	if resp2 != nil {
		out.SecondReplied = true
		out.SecondBody = string(b2)
	}
	out.Reused = o.accepts.Load() == 1
	return out
}

// hostileAnswers are the crafted first answers of the differential suite.
var hostileAnswers = []struct {
	name, method, reply string
	firstOnly           bool // the origin closes after it; or the Transport's handling of the connection afterwards is racy
	leanNoReuse         bool // the one difference: the Transport reuses the connection, the lean client does not
}{
	{name: "content-length", reply: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"},
	{name: "lower-case and odd keys", reply: "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-FOO-bar: 1\r\netag: \"x\"\r\ncache-control: max-age=60\r\n\r\nhello"},
	{name: "bare LF", reply: "HTTP/1.1 200 OK\nContent-Length: 5\n\nhello"},
	{name: "chunked with trailers", reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T, X-U\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: v\r\nX-Undeclared: w\r\n\r\n"},
	{name: "chunk extension", reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=\"1\"\r\nhello\r\n0;x\r\n\r\n"},
	{name: "chunk bad hex", reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"},
	{name: "chunk size overflow", reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nhello\r\n0\r\n\r\n"},
	{name: "chunk missing CRLF", reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"},
	{name: "chunked cut off", reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", firstOnly: true},
	{name: "chunked and content-length", reply: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", leanNoReuse: true},
	{name: "chunked and content-length after 1xx", reply: "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n", leanNoReuse: true},
	{name: "content-length only in a 1xx", reply: "HTTP/1.1 103 Early Hints\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
	{name: "unknown transfer-encoding", reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello"},
	{name: "two transfer-encodings", reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	{name: "duplicate content-length", reply: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"},
	{name: "conflicting content-length", reply: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
	{name: "negative content-length", reply: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello"},
	{name: "empty content-length", reply: "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\nhello"},
	{name: "content-length with plus", reply: "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"},
	{name: "bad trailer key", reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n0\r\n\r\n"},
	{name: "obs-fold", reply: "HTTP/1.1 200 OK\r\nX-Folded: a\r\n  b\r\n\tc\r\nContent-Length: 2\r\n\r\nok"},
	{name: "folded first line", reply: "HTTP/1.1 200 OK\r\n X-A: a\r\nContent-Length: 2\r\n\r\nok"},
	{name: "space in field name", reply: "HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 2\r\n\r\nok"},
	{name: "space before colon", reply: "HTTP/1.1 200 OK\r\nX-A : x\r\nContent-Length: 2\r\n\r\nok"},
	{name: "control byte in value", reply: "HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\nok"},
	{name: "NUL in value", reply: "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok"},
	{name: "no colon", reply: "HTTP/1.1 200 OK\r\nX-A\r\nContent-Length: 2\r\n\r\nok"},
	{name: "empty name", reply: "HTTP/1.1 200 OK\r\n: x\r\nContent-Length: 2\r\n\r\nok"},
	{name: "obs-text value", reply: "HTTP/1.1 200 OK\r\nX-A: caf\xc3\xa9\xff\r\nContent-Length: 2\r\n\r\nok"},
	{name: "status code too long", reply: "HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok"},
	{name: "status code not a number", reply: "HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\nok"},
	{name: "status without reason", reply: "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok"},
	{name: "bad protocol", reply: "HTTPS/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{name: "HTTP/2.0 over HTTP/1", reply: "HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{name: "status line only", reply: "HTTP/1.1", firstOnly: true},
	{name: "garbage", reply: "hello world\r\n\r\n"},
	{name: "HTTP/1.0 content-length", reply: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{name: "HTTP/1.0 keep-alive", reply: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"},
	{name: "HTTP/1.0 close-delimited", reply: "HTTP/1.0 200 OK\r\n\r\nuntil the end", firstOnly: true},
	{name: "HTTP/1.0 ignores transfer-encoding", reply: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", firstOnly: true},
	{name: "close-delimited", reply: "HTTP/1.1 200 OK\r\n\r\nuntil the end", firstOnly: true},
	{name: "connection close", reply: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"},
	{name: "connection close among tokens", reply: "HTTP/1.1 200 OK\r\nConnection: foo, Close\r\nContent-Length: 2\r\n\r\nok"},
	{name: "HEAD with length", method: "HEAD", reply: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"},
	{name: "HEAD chunked", method: "HEAD", reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
	{name: "204", reply: "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"},
	{name: "304", reply: "HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n"},
	{name: "204 followed by bytes", reply: "HTTP/1.1 204 No Content\r\n\r\nstray", firstOnly: true},
	{name: "1xx skipped", reply: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{name: "many 1xx", reply: strings.Repeat("HTTP/1.1 102 Processing\r\n\r\n", 50) + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{name: "body longer than content-length", reply: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", firstOnly: true},
	{name: "cut off mid-body", reply: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", firstOnly: true},
	{name: "closed before answering", reply: "", firstOnly: true},
	{name: "pragma no-cache", reply: "HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 2\r\n\r\nok"},
	{name: "huge header line", reply: "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 100<<10) + "\r\nContent-Length: 2\r\n\r\nok"},
	{name: "many headers", reply: "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Many: v\r\n", 2000) + "Content-Length: 2\r\n\r\nok"},
	{name: "5xx", reply: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"},
	{name: "keep-alive", reply: "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"},
	{name: "keep-alive among tokens", reply: "HTTP/1.1 200 OK\r\nConnection: Keep-Alive, foo\r\nContent-Length: 2\r\n\r\nok"},
	{name: "values trimmed and empty", reply: "HTTP/1.1 200 OK\r\nX-A: \t v \t\r\nX-E:\r\nX-S:   \r\nContent-Length: 2\r\n\r\nok"},
	{name: "non-canonical names", reply: "HTTP/1.1 200 OK\r\ncontent-LENGTH: 2\r\nX-ABC-d: 1\r\nx_y: 2\r\nX-A-: 3\r\n-x: 4\r\n\r\nok"},
	{name: "non-canonical names, canonical length", reply: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-ABC-d: 1\r\nx_y: 2\r\netag: \"e\"\r\n-x: 4\r\nconnection: keep-alive\r\n\r\nok"},
	{name: "content-length padded", reply: "HTTP/1.1 200 OK\r\nContent-Length:  0002 \r\n\r\nok"},
	{name: "content-length zero", reply: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
	{name: "content-length huge", reply: "HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\nok"},
	{name: "status 299 and 599", reply: "HTTP/1.1 299 Odd\r\nContent-Length: 2\r\n\r\nok"},
	{name: "status 599", reply: "HTTP/1.1 599 \r\nContent-Length: 2\r\n\r\nok"},
	{name: "reason with obs-text and tab", reply: "HTTP/1.1 200 O\xe9 \tK\r\nContent-Length: 2\r\n\r\nok"},
	{name: "two spaces after version", reply: "HTTP/1.1  200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{name: "CR alone in value", reply: "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok"},
	{name: "LF then CRLF ends head", reply: "HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nok"},
	{name: "head split across writes", reply: "HTTP/1.1 200 OK\r\nContent-Le<<split>>ngth: 2\r\n\r<<split>>\nok"},
	{name: "LF before the status line", reply: "\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{name: "bare LF after the status line", reply: "HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok"},
	{name: "set-cookie repeated", reply: "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n"},
}

// TestLeanClientDifferential runs each hostile answer through a pool with
// the lean client and with the Transport and wants the same outcome:
// status, header, trailer, body, error kinds, connection reused or not,
// and what the origin server is charged with.
func TestLeanClientDifferential(t *testing.T) {
	for _, c := range hostileAnswers {
		t.Run(c.name, func(t *testing.T) {
			method := c.method
			if method == "" {
				method = "GET"
			}
			std := exchange(t, true, method, c.reply, c.firstOnly, c.firstOnly)
			lean := exchange(t, false, method, c.reply, c.firstOnly, c.firstOnly)
			if c.leanNoReuse {
				if !std.Reused || lean.Reused {
					t.Errorf("reused: std %v, lean %v; want the lean client alone not to reuse", std.Reused, lean.Reused)
				}
				lean.Reused = std.Reused
			}
			if !reflect.DeepEqual(std, lean) {
				t.Errorf("outcomes differ\nstd:  %+v\nlean: %+v", std, lean)
			}
		})
	}
}

// The lean client does not reuse a connection after a body that ended
// with stray bytes after it, nor after one that was cut off, nor after a
// close-delimited one: the next request goes on a new connection.
func TestLeanClientDoesNotReusePoisonedConnections(t *testing.T) {
	for _, reply := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
		"HTTP/1.1 204 No Content\r\n\r\nstray",
		"HTTP/1.1 200 OK\r\n\r\nuntil the end",
		"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
	} {
		out := exchange(t, false, "GET", reply, strings.Contains(reply, "until the end"), false)
		if out.Reused || out.SecondErr != 0 || out.SecondBody != "ok" {
			t.Errorf("after %q: %+v, want the second request answered on a new connection", reply, out)
		}
	}
}

// A request on a reused connection that the origin closes as the request
// arrives (the keep-alive race) is sent again on a new connection, and the
// server is not charged with a failure: else keep-alive races would eject
// healthy origins.
func TestLeanClientRetriesStaleConnection(t *testing.T) {
	for _, std := range []bool{false, true} {
		o := startScript(t, func(conn, req int, head string) (string, bool) {
			if conn == 0 && req == 1 {
				return "", true // closes without an answer
			}
			return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
		})
		p := newPool(t, PoolConfig{Servers: []ServerConfig{{URL: o.url}}, Retries: -1, stdTransport: std})
		for i := range 2 {
			_, b, err := fetch(context.Background(), p, "GET", "/s", nil)
			if err != nil || string(b) != "ok" {
				t.Fatalf("std=%v request %d: %q, %v", std, i, b, err)
			}
		}
		if st := p.Servers()[0]; st.Failures != 0 || o.accepts.Load() != 2 {
			t.Errorf("std=%v: %d failures, %d connections; want none and 2", std, st.Failures, o.accepts.Load())
		}
	}
}

// Stray bytes an origin sends on an idle connection after a response
// (late, so not seen when the body ended) make the lean client drop the
// connection before its next request, which would read them as its
// answer.
func TestLeanClientDropsIdleConnectionWithStrayBytes(t *testing.T) {
	o := startScript(t, func(conn, req int, head string) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	p := newPool(t, PoolConfig{Servers: []ServerConfig{{URL: o.url}}, Retries: -1})
	mustGet(t, p, "/a")
	// The origin writes junk on the idle connection; on loopback it is in
	// the client's socket once Write returns.
	o.mu.Lock()
	c := o.conns[0]
	o.mu.Unlock()
	if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\njunk"); err != nil {
		t.Fatal(err)
	}
	_, b := mustGet(t, p, "/b")
	if string(b) != "ok" || o.accepts.Load() != 2 {
		t.Errorf("body %q on %d connections, want ok on a new connection", b, o.accepts.Load())
	}
}

// The request the lean client writes is the one the Transport writes.
func TestLeanClientWritesTheTransportsRequest(t *testing.T) {
	for _, hdr := range []http.Header{
		{},
		{"User-Agent": {" meridian/1 "}, "X-B": {"2", "3"}, "X-A": {"\t1"}, "Accept": {"*/*"}},
		{"User-Agent": {""}},
		{"User-Agent": nil},
		{"x-lower": {"v"}},
	} {
		var heads [2]string
		for i, std := range []bool{true, false} {
			o := startScript(t, func(conn, req int, head string) (string, bool) {
				return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
			})
			p := newPool(t, PoolConfig{Servers: []ServerConfig{{URL: o.url, Host: ""}}, stdTransport: std})
			req, _ := http.NewRequest("GET", "http://site.example/p/a%20b?q=1&r", nil)
			req.Header = hdr.Clone()
			resp, err := p.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			o.mu.Lock()
			heads[i] = o.heads[0]
			o.mu.Unlock()
		}
		if heads[0] != heads[1] {
			t.Errorf("header %v: std wrote\n%q\nlean wrote\n%q", hdr, heads[0], heads[1])
		}
	}
}

// Requests the lean client does not send go through the Transport, which
// sends (or refuses) them as before.
func TestPlainRequest(t *testing.T) {
	mk := func(method string, body io.Reader, h http.Header) *http.Request {
		r, _ := http.NewRequest(method, "http://site.example/x", body)
		for k, v := range h {
			r.Header[k] = v
		}
		return r
	}
	for _, c := range []struct {
		req  *http.Request
		want bool
	}{
		{mk("GET", nil, nil), true},
		{mk("HEAD", nil, nil), true},
		{mk("POST", nil, nil), false},
		{mk("GET", strings.NewReader("x"), nil), false},
		{mk("GET", nil, http.Header{"Upgrade": {"websocket"}}), false},
		{mk("GET", nil, http.Header{"Expect": {"100-continue"}}), false},
		{mk("GET", nil, http.Header{"Connection": {"close"}}), false},
		{mk("GET", nil, http.Header{"X-A": {"a\nb"}}), false},
		{mk("GET", nil, http.Header{"Bad Name": {"a"}}), false},
	} {
		if got := plainRequest(c.req); got != c.want {
			t.Errorf("%s %v: plain %v, want %v", c.req.Method, c.req.Header, got, c.want)
		}
	}
}

// isKind is errors.As for a Kind, for the tests' messages.
func isKind(err error, k Kind) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == k
}

// The Transport's idle connections and the lean client's stay under
// max_conns together: a dial at the cap closes the other's idle ones.
func TestLeanClientAndTransportShareMaxConns(t *testing.T) {
	o := startScript(t, func(conn, req int, head string) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	p := newPool(t, PoolConfig{Servers: []ServerConfig{{URL: o.url}}, MaxConns: 2})
	// Two GETs at once through the lean client: two connections, idle
	// once their bodies are read.
	var bodies []io.ReadCloser
	for range 2 {
		req, _ := http.NewRequest("GET", "http://site.example/g", nil)
		resp, err := p.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, resp.Body)
	}
	for _, b := range bodies {
		io.ReadAll(b)
		b.Close()
	}
	// A POST goes through the Transport, which must dial.
	if _, _, err := fetch(context.Background(), p, "POST", "/p", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if n := p.Servers()[0].Conns; n > 2 {
		t.Errorf("%d connections open, want at most max_conns 2", n)
	}
}

// The caller's cancellation while a body is read ends the Read at once
// with KindCanceled, not charged to the server, and the connection is not
// reused; a Read after Close fails rather than saying the body ended.
func TestLeanClientBodyCancelAndClose(t *testing.T) {
	o := startScript(t, func(conn, req int, head string) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", false // the rest never comes
	})
	p := newPool(t, PoolConfig{Servers: []ServerConfig{{URL: o.url}}, ReadTimeout: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://site.example/c", nil)
	resp, err := p.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	// Canceled before the Read: the Read's own read_timeout deadline
	// must not replace the past deadline the cancellation set (without
	// the check, this Read waits out the hour).
	cancel()
	if _, err := resp.Body.Read(buf); kindOf(err) != KindCanceled {
		t.Errorf("read after cancel: %v, want canceled", err)
	}
	resp.Body.Close()
	if st := p.Servers()[0]; st.Failures != 0 || st.InFlight != 0 {
		t.Errorf("%d failures, %d in flight; want none", st.Failures, st.InFlight)
	}

	req, _ = http.NewRequest("GET", "http://site.example/c", nil)
	if resp, err = p.RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n, err := resp.Body.Read(buf); err == nil || err == io.EOF {
		t.Errorf("read after close: %d, %v; want an error", n, err)
	}
	if o.accepts.Load() != 2 {
		t.Errorf("%d connections, want 2: the canceled one not reused", o.accepts.Load())
	}
}

// Idle connections: the most recent is reused first, those idle 90 s are
// closed when the list is next used, at most max are kept, and none
// after the final close.
func TestH1IdleList(t *testing.T) {
	var closed []int
	mk := func(id int) *h1Conn {
		a, b := net.Pipe()
		t.Cleanup(func() { b.Close() })
		return &h1Conn{conn: &closeNotingConn{Conn: a, onClose: func() { closed = append(closed, id) }}}
	}
	l := newH1Idle("", 2)
	t0 := time.Unix(1000, 0)
	c1, c2, c3 := mk(1), mk(2), mk(3)
	l.put(c1, t0)
	l.put(c2, t0.Add(time.Minute))
	l.put(c3, t0.Add(time.Minute)) // over max: closed
	if !reflect.DeepEqual(closed, []int{3}) {
		t.Fatalf("closed %v, want [3]", closed)
	}
	// At t0+91s c1 has been idle past 90 s; c2 has not.
	if c := l.get(t0.Add(91 * time.Second)); c != c2 {
		t.Errorf("got %p, want the most recent (c2)", c)
	}
	if !reflect.DeepEqual(closed, []int{3, 1}) {
		t.Errorf("closed %v, want [3 1]", closed)
	}
	if c := l.get(t0.Add(91 * time.Second)); c != nil {
		t.Errorf("got %p, want none left", c)
	}
	l.put(c2, t0.Add(2*time.Minute))
	l.closeIdle(true)
	l.put(mk(4), t0.Add(2*time.Minute))
	if !reflect.DeepEqual(closed, []int{3, 1, 2, 4}) {
		t.Errorf("closed %v, want [3 1 2 4]", closed)
	}
}

// Idle connections of a pool that goes quiet are closed by the sweep,
// without another request using the list: the oldest first, each once
// idle for the timeout, and the sweep stops with the list's final close.
func TestH1IdleListSweepsWhenQuiet(t *testing.T) {
	var mu sync.Mutex
	var closed []int
	mk := func(id int) *h1Conn {
		a, b := net.Pipe()
		t.Cleanup(func() { b.Close() })
		return &h1Conn{conn: &closeNotingConn{Conn: a, onClose: func() {
			mu.Lock()
			defer mu.Unlock()
			closed = append(closed, id)
		}}}
	}
	closedNow := func() []int {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(closed)
	}
	l := newH1Idle("", 4)
	l.timeout = 100 * time.Millisecond
	l.put(mk(1), time.Now())
	l.put(mk(2), time.Now().Add(60*time.Millisecond)) // idle from later than c1
	poll.Until(t, 5*time.Second, "the first idle connection closed by the sweep", func() bool { return len(closedNow()) >= 1 })
	if got := closedNow(); got[0] != 1 {
		t.Fatalf("closed %v, the oldest first wanted", got)
	}
	poll.Until(t, 5*time.Second, "both idle connections closed by the sweep", func() bool { return len(closedNow()) == 2 })
	l.mu.Lock()
	left, armed := len(l.conns), l.swept
	l.mu.Unlock()
	if left != 0 || armed {
		t.Fatalf("%d idle left, sweep armed %v: want none and not armed", left, armed)
	}
	l.put(mk(3), time.Now())
	l.closeIdle(true)
	l.mu.Lock()
	armed = l.swept
	l.mu.Unlock()
	if armed {
		t.Fatal("the sweep is still armed after the final close")
	}
}

// closeNotingConn is a net.Conn that reports its Close.
type closeNotingConn struct {
	net.Conn
	onClose func()
}

func (c *closeNotingConn) Close() error {
	c.onClose()
	return c.Conn.Close()
}

// A plain http:// origin that says HTTP/2.0 in its status line is still
// an HTTP/1 server: its requests keep max_conns as their cap (one request
// per connection), not the HTTP/2 one (max_inflight), with either client.
// Only HTTP/2 negotiated over TLS is HTTP/2.
func TestHTTP2StatusLineOverPlainHTTPKeepsTheHTTP1Cap(t *testing.T) {
	for _, std := range []bool{false, true} {
		o := startScript(t, func(conn, req int, head string) (string, bool) {
			return "HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false
		})
		p := newPool(t, PoolConfig{Servers: []ServerConfig{{URL: o.url}}, MaxConns: 2, MaxInflight: 10, stdTransport: std})
		if _, b, err := fetch(context.Background(), p, "GET", "/s", nil); err != nil || string(b) != "ok" {
			t.Fatalf("std=%v: %q, %v", std, b, err)
		}
		if st := p.Servers()[0]; st.MaxInflight != 2 {
			t.Errorf("std=%v: max in flight %d after an HTTP/2.0 status line over plain HTTP, want max_conns (2)", std, st.MaxInflight)
		}
	}
}

// Informational answers reach a caller's Got1xxResponse trace (the edge
// relays an origin's 103 Early Hints to its client), in order, with their
// fields, from either client; an error from the trace ends the request.
func TestGot1xxResponseTraced(t *testing.T) {
	for _, std := range []bool{false, true} {
		o := startScript(t, func(conn, req int, head string) (string, bool) {
			return "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
				"HTTP/1.1 103 Early Hints\r\nLink: </b.js>; rel=preload\r\n\r\n" +
				"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
		})
		p := newPool(t, PoolConfig{Servers: []ServerConfig{{URL: o.url}}, Retries: -1, stdTransport: std})
		var got []string
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			got = append(got, fmt.Sprintf("%d %s", code, h.Get("Link")))
			return nil
		}}
		_, b, err := fetch(httptrace.WithClientTrace(context.Background(), trace), p, "GET", "/h", nil)
		if err != nil || string(b) != "ok" {
			t.Fatalf("std=%v: %q, %v", std, b, err)
		}
		want := []string{"103 </a.css>; rel=preload", "103 </b.js>; rel=preload"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("std=%v: traced %q, want %q", std, got, want)
		}
		refuse := &httptrace.ClientTrace{Got1xxResponse: func(int, textproto.MIMEHeader) error { return errors.New("no more hints") }}
		if _, _, err := fetch(httptrace.WithClientTrace(context.Background(), refuse), p, "GET", "/h", nil); err == nil || !strings.Contains(err.Error(), "no more hints") {
			t.Errorf("std=%v: a trace's error: got %v", std, err)
		}
	}
}

// A body is bounded by read_timeout per wait, never by the try's or the
// pool's timeout, which end with the headers: an origin that pauses
// longer than try_timeout mid-body, even mid-line of a chunked body whose
// start is already read, is waited for, by either client.
func TestBodyWaitIsReadTimeoutNotTryTimeout(t *testing.T) {
	bothClients(t, func(t *testing.T, std bool) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		served := make(chan struct{})
		go func() {
			defer close(served)
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1")
			time.Sleep(400 * time.Millisecond) // the origin is slow: past try_timeout and the pool's timeout
			io.WriteString(c, "0\r\n0123456789abcdef\r\n0\r\n\r\n")
		}()
		p := newPool(t, PoolConfig{Servers: []ServerConfig{{URL: "http://" + ln.Addr().String()}}, Retries: -1,
			Timeout: 100 * time.Millisecond, TryTimeout: 100 * time.Millisecond, ReadTimeout: 5 * time.Second, stdTransport: std})
		_, b, err := fetch(context.Background(), p, "GET", "/slow-body", nil)
		if err != nil || string(b) != "hello0123456789abcdef" {
			t.Fatalf("body %q, %v: want it whole", b, err)
		}
		<-served
	})
}

// An origin that sends 1xx answers without end to a caller that takes
// them (the edge relays 103s) is cut off after a few, with either client:
// each one taken starts the header byte limit again, so it could stream
// them for as long as the try waits. Without such a caller the byte limit
// alone bounds them, as before.
func TestEndlessInformationalAnswersCutOff(t *testing.T) {
	bothClients(t, func(t *testing.T, std bool) {
		o := startScript(t, func(conn, req int, head string) (string, bool) {
			return strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", 200) +
				"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
		})
		p := newPool(t, PoolConfig{Servers: []ServerConfig{{URL: o.url}}, Retries: -1, stdTransport: std})
		taken, wrote := 0, false
		trace := &httptrace.ClientTrace{
			Got1xxResponse: func(int, textproto.MIMEHeader) error { taken++; return nil },
			WroteHeaders:   func() { wrote = true },
		}
		_, _, err := fetch(httptrace.WithClientTrace(context.Background(), trace), p, "GET", "/h", nil)
		if err == nil || !strings.Contains(err.Error(), "informational") || taken > maxInformational {
			t.Fatalf("%d 1xx taken, then %v: want at most %d, then an error", taken, err, maxInformational)
		}
		if std && !wrote {
			t.Error("the caller's other hooks (WroteHeaders) were not called")
		}
		if _, b, err := fetch(context.Background(), p, "GET", "/h", nil); err != nil || string(b) != "ok" {
			t.Fatalf("without a trace: %q, %v", b, err)
		}
	})
}
