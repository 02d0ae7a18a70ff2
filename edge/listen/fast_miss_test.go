package listen

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
)

// TestFastWriterAnswersAsNetHTTP is the fast front's writer (fastWriter,
// with its request from newRequest and the watch of serveMiss) against
// net/http's server, handler by handler: the same raw requests get the
// same answers (1xx, status, fields but Date, framing as the client reads
// it, body, trailers) and leave the connection open or closed alike (a
// second request on it says which). The edge's own use of the writer is
// TestFrontsAnswerAlike's (package edge).
func TestFastWriterAnswersAsNetHTTP(t *testing.T) {
	handlers := writerHandlers()
	mux := http.NewServeMux()
	for p, h := range handlers {
		mux.Handle(p, h)
	}
	var reqs []string
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for p := range handlers {
			if !yield(p) {
				return
			}
		}
	}) {
		reqs = append(reqs, "GET "+p+" HTTP/1.1\r\nHost: site.test\r\n\r\n", "HEAD "+p+" HTTP/1.1\r\nHost: site.test\r\n\r\n")
	}
	reqs = append(reqs,
		"GET /small HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n",
		"GET /request?a=1&b=%20 HTTP/1.1\r\nHost: site.test:8080\r\nAccept: a\r\naccept: b\r\nPragma: no-cache\r\nConnection: keep-alive\r\n\r\n")

	quiet := log.New(io.Discard, "", 0)
	std := httptest.NewUnstartedServer(mux)
	std.Config.ErrorLog = quiet
	std.Start()
	defer std.Close()
	// The handlers answer before the watch starts; with watchAfter 0 it
	// starts at once and waits for the second request instead.
	for _, after := range []time.Duration{watchAfter, 0} {
		fast := newFastMissServer(t, mux, after)
		for _, raw := range reqs {
			want := exchangeTwice(t, std.Listener.Addr().String(), raw)
			got := exchangeTwice(t, fast, raw)
			if !slices.Equal(got, want) {
				t.Errorf("watch after %v, %q:\nnet/http %q\nfast     %q", after, raw, want, got)
			}
		}
	}
}

// writerHandlers are the handlers of TestFastWriterAnswersAsNetHTTP, by
// path: each a kind of answer the fast writer makes.
func writerHandlers() map[string]http.HandlerFunc {
	big := strings.Repeat("0123456789", 500) // past the 2048 bytes held before the header
	return map[string]http.HandlerFunc{
		"/nothing": func(w http.ResponseWriter, r *http.Request) {},
		"/small":   func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") },
		"/html":    func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html><body>x</body></html>") },
		"/big":     func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) },
		"/1500":    func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big[:1500]) },
		"/2048":    func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big[:2048]) },
		"/2049":    func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big[:2049]) },
		"/split": func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, big[:1500])
			io.WriteString(w, big[:1000])
		},
		"/bigcl": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			io.WriteString(w, big)
		},
		"/short": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "12345")
		},
		"/over": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "3")
			if _, err := io.WriteString(w, "hello"); err != http.ErrContentLength {
				panic(fmt.Sprintf("write past Content-Length: %v", err))
			}
		},
		"/204": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1")
			w.WriteHeader(204)
			if _, err := io.WriteString(w, "x"); err != http.ErrBodyNotAllowed {
				panic(fmt.Sprintf("write on a 204: %v", err))
			}
		},
		"/304": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", "5")
			w.Header().Set("Etag", `"x"`)
			w.WriteHeader(304)
		},
		"/flush": func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			io.WriteString(w, "b")
		},
		"/flushempty": func(w http.ResponseWriter, r *http.Request) { w.(http.Flusher).Flush() },
		"/hints": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</s.css>; rel=preload")
			w.Header().Set("Content-Length", "99")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Content-Length")
			w.Header().Set("X-After", "1")
			io.WriteString(w, "hinted")
		},
		"/identity": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Transfer-Encoding", "identity")
			io.WriteString(w, "raw")
		},
		"/tecl": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Transfer-Encoding", "chunked")
			w.Header().Set("Content-Length", "3")
			io.WriteString(w, "abc")
		},
		"/trailer": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-T, Content-Length")
			io.WriteString(w, "body")
			w.Header().Set("X-T", "t1")
		},
		"/prefix": func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "body")
			w.Header().Set(http.TrailerPrefix+"X-P", "p1")
		},
		"/connclose": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		},
		"/abort": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		},
		"/abortchunked": func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		},
		"/panicearly": func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "held")
			panic(http.ErrAbortHandler)
		},
		"/badcl": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "abc")
			io.WriteString(w, "hi")
		},
		"/encoded": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			io.WriteString(w, "<html>not sniffed</html>")
		},
		"/late": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(201)
			w.Header().Set("X-Late", "1")
			w.WriteHeader(500)
			io.WriteString(w, "created")
		},
		"/odd": func(w http.ResponseWriter, r *http.Request) {
			w.Header()["X-Spaces"] = []string{"  padded \t", "line\r\nbreak"}
			w.Header()["Bad Name"] = []string{"dropped"}
			w.Header()["X-Empty"] = nil
			w.WriteHeader(599)
		},
		"/request": func(w http.ResponseWriter, r *http.Request) {
			// What the handler sees of the request.
			fmt.Fprintf(w, "%s %s %q %q %v %d %v %q", r.Method, r.URL, r.RequestURI, r.Host, r.Close, r.ContentLength, r.Body == http.NoBody, r.Header)
		},
		"/ping": func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "pong") },
		"/upgradeclose": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Upgrade", "example")
			w.Header().Set("Connection", "close, Upgrade")
			io.WriteString(w, "not switched")
		},
		"/date": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Date", "Mon, 02 Jan 2006 15:04:05 GMT")
			w.Header()["Content-Encoding"] = []string{""} // empty: sniffed
			io.WriteString(w, "<html>sniffed</html>")
		},
		"/manyfields": func(w http.ResponseWriter, r *http.Request) {
			for i := range 40 { // past the 32 the writer sorts in place
				w.Header().Set(fmt.Sprintf("X-F%02d", 39-i), fmt.Sprint(i))
			}
			w.Header().Set("Trailer", "X-F00")
			w.Header().Set(http.TrailerPrefix+"X-Late", "l")
			io.WriteString(w, "many")
		},
	}
}

// A client that leaves while the handler waits ends the request's
// context, once the watch has started: at once (watchAfter 0) or after
// the front's delay.
func TestFastMissClientLeavingCancels(t *testing.T) {
	for _, after := range []time.Duration{0, watchAfter} {
		t.Run(after.String(), func(t *testing.T) {
			started, ended := make(chan struct{}, 1), make(chan error, 1)
			addr := newFastMissServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				started <- struct{}{}
				select {
				case <-r.Context().Done():
					ended <- nil
				case <-time.After(10 * time.Second):
					ended <- fmt.Errorf("the context did not end within 10 s of the client leaving")
				}
			}), after)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: site.test\r\n\r\n")
			<-started
			c.Close()
			if err := <-ended; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A watch that starts as the handler returns still ends at the idle
// timeout as the wait for the next request: serveMiss's deadline is not
// undone by the watch clearing its own (the handler here is quick, so
// that the two race; each connection must be closed by the server).
func TestFastMissWatchKeepsTheIdleTimeout(t *testing.T) {
	addr := newFastMissServerIdle(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "quick")
	}), 0, 20*time.Millisecond)
	for i := range 50 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /quick HTTP/1.1\r\nHost: site.test\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		io.ReadAll(resp.Body)
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("connection %d: after the idle timeout the read got %v, want EOF (the server closing it)", i, err)
		}
		c.Close()
	}
}

// Requests that come while the handler runs (sent after the first, or
// with it) are answered next, in order, whether or not the watch has
// started and read them.
func TestFastMissKeepsRequestsSentDuringTheHandler(t *testing.T) {
	for _, after := range []time.Duration{0, watchAfter} {
		for _, together := range []bool{false, true} {
			t.Run(fmt.Sprint(after, " together ", together), func(t *testing.T) {
				started, release := make(chan struct{}, 1), make(chan struct{})
				addr := newFastMissServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path == "/slow" {
						started <- struct{}{}
						<-release
					}
					io.WriteString(w, "answer "+r.URL.Path)
				}), after)
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				slow, next := "GET /slow HTTP/1.1\r\nHost: site.test\r\n\r\n", "GET /next HTTP/1.1\r\nHost: site.test\r\n\r\n"
				if together {
					io.WriteString(c, slow+next)
					<-started
				} else {
					io.WriteString(c, slow)
					<-started
					io.WriteString(c, next)
				}
				close(release)
				br := bufio.NewReader(c)
				for _, want := range []string{"answer /slow", "answer /next"} {
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatalf("reading the answer %q: %v", want, err)
					}
					b, _ := io.ReadAll(resp.Body)
					if string(b) != want {
						t.Fatalf("body %q, want %q", b, want)
					}
				}
			})
		}
	}
}

// newFastMissServer serves every request of its connections with the
// fast front's miss path (newRequest, serveMiss) and handler h, its
// watch starting after watchAfter, and returns its address. Its idle
// timeout is 10 s.
func newFastMissServer(t testing.TB, h http.Handler, watchAfter time.Duration) string {
	return newFastMissServerIdle(t, h, watchAfter, 10*time.Second)
}

// newFastMissServerIdle is newFastMissServer with an idle timeout.
func newFastMissServerIdle(t testing.TB, h http.Handler, watchAfter, idle time.Duration) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fastFront{log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: time.Now,
		inner: &http.Server{Handler: h}, cfg: edge.ServerConfig{IdleTimeout: idle}, watchAfter: watchAfter}
	done := make(chan struct{})
	var serving atomic.Pointer[net.Conn] // closed by the cleanup of a failed test
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			serving.Store(&nc)
			c := &fastConn{f: f, nc: nc, buf: make([]byte, 4096)}
			c.serveMisses()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		if nc := serving.Load(); nc != nil {
			(*nc).Close()
		}
		<-done
	})
	return ln.Addr().String()
}

// serveMisses is fastConn.serve for requests that all go through the
// handler (no hits, no lending: the test's requests are plain).
func (c *fastConn) serveMisses() {
	defer c.nc.Close()
	for {
		var end, verdict int
		for {
			end, _, verdict = scanHead(c.buf[c.r:c.w], 0, 1<<16)
			if verdict != headMore {
				break
			}
			if c.w == len(c.buf) {
				c.makeRoomForMore()
			}
			if c.r == c.w {
				// Waiting for a request, as serve does.
				c.nc.SetReadDeadline(time.Now().Add(c.f.cfg.IdleTimeout))
			}
			n, err := c.nc.Read(c.buf[c.w:])
			c.w += n
			if err != nil && n == 0 {
				return
			}
		}
		var req request
		if verdict != headDone || parseHead(c.buf[c.r:c.r+end], &req) != headDone || !req.bodyless || req.lendable {
			return
		}
		ctx := newReqContext(c.missContext())
		r := c.newRequest(c.buf[c.r:c.r+end], &req, ctx)
		if r == nil {
			return
		}
		c.r += end
		if !c.serveMiss(r, req.head, ctx) {
			return
		}
	}
}

// exchangeTwice sends raw on a new connection and reads its answers (1xx
// first), then sends a GET /ping on the same connection: what comes
// back says whether the server kept it open.
func exchangeTwice(t *testing.T, addr, raw string) []string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, raw)
	br := bufio.NewReader(c)
	out, whole := readAnswer(br, strings.Fields(raw)[0])
	if !whole {
		return out
	}
	if _, err := io.WriteString(c, "GET /ping HTTP/1.1\r\nHost: site.test\r\n\r\n"); err != nil {
		return append(out, "then closed")
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return append(out, "then closed")
	}
	b, _ := io.ReadAll(resp.Body)
	return append(out, "then "+string(b))
}

// readAnswer reads the answer to a request with method from br, its
// 1xx first, as the client sees it (but Date); whole is false when it
// did not come whole.
func readAnswer(br *bufio.Reader, method string) (out []string, whole bool) {
	for {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return append(out, "error "+err.Error()), false
		}
		body, berr := io.ReadAll(resp.Body)
		out = append(out, resp.Proto, resp.Status, fmt.Sprint("close ", resp.Close, " length ", resp.ContentLength,
			" te ", resp.TransferEncoding, " body ", len(body), " ", string(body[:min(len(body), 64)]), " err ", berr,
			" trailer ", resp.Trailer))
		hdr := resp.Header.Clone()
		delete(hdr, "Date")
		out = append(out, fmt.Sprint(hdr))
		if berr != nil {
			return out, false
		}
		if resp.StatusCode >= 200 {
			return out, true
		}
	}
}

// TestFastWriterCarriesNothingOver: a connection's writer and header map
// serve its requests in turn, emptied between them (keptAnswerFields).
// Every answer of the two differential tests' handlers (the writer's
// own, and those over a base header), each made after the others on one
// connection (in order, then in reverse; GET and HEAD), is the answer
// made alone on a new connection, and each handler finds the map empty.
// (It fails with the map kept but not emptied.)
func TestFastWriterCarriesNothingOver(t *testing.T) {
	mux := http.NewServeMux()
	var paths []string
	for p, h := range writerHandlers() {
		mux.Handle("/w"+p, h)
		paths = append(paths, "/w"+p)
	}
	for p, h := range overBaseHandlers() {
		mux.HandleFunc("/b"+p, func(w http.ResponseWriter, r *http.Request) { h(t, w) })
		paths = append(paths, "/b"+p)
	}
	slices.Sort(paths)
	mux.HandleFunc("/ping", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "pong") })
	addr := newFastMissServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := w.Header(); len(h) != 0 {
			t.Errorf("%s %s: the header map starts with %v", r.Method, r.URL.Path, h)
		}
		mux.ServeHTTP(w, r)
	}), watchAfter)
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		return c, bufio.NewReader(c)
	}
	var reqs []string
	for _, p := range paths {
		reqs = append(reqs, "GET "+p+" HTTP/1.1\r\nHost: site.test\r\n\r\n", "HEAD "+p+" HTTP/1.1\r\nHost: site.test\r\n\r\n")
	}
	// Each answer alone, and whether the connection stays open after it.
	alone, open := map[string][]string{}, map[string]bool{}
	for _, raw := range reqs {
		a := exchangeTwice(t, addr, raw)
		if last := a[len(a)-1]; strings.HasPrefix(last, "then ") {
			open[raw] = last == "then pong"
			a = a[:len(a)-1]
		}
		alone[raw] = a
	}
	backward := slices.Clone(reqs)
	slices.Reverse(backward)
	for _, order := range [][]string{reqs, backward} {
		var c net.Conn
		var br *bufio.Reader
		prev := ""
		for _, raw := range order {
			if c == nil {
				c, br = dial()
				prev = "(new connection)"
			}
			io.WriteString(c, raw)
			got, _ := readAnswer(br, strings.Fields(raw)[0])
			if !slices.Equal(got, alone[raw]) {
				t.Errorf("%q after %q:\nalone %q\nafter %q", raw, prev, alone[raw], got)
			}
			if !open[raw] {
				c.Close()
				c = nil
			}
			prev = raw
		}
		if c != nil {
			c.Close()
		}
	}
}

// TestFastWriterKeepsOnlyASmallHeaderMap: the connection's next request
// gets its header map back emptied, not a new one, unless the map held
// more than keptAnswerFields fields, at the end or only at a 1xx (then
// emptied, as the edge's writeHint empties it): a map never shrinks, and
// one grown by a hostile number of fields is not kept at that size.
func TestFastWriterKeepsOnlyASmallHeaderMap(t *testing.T) {
	maps := make(chan http.Header, 16) // (held here, so that no map's address is another's again)
	fill := func(w http.ResponseWriter, n int) {
		for i := range n {
			w.Header().Set(fmt.Sprintf("X-F%02d", i), "v")
		}
	}
	addr := newFastMissServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		maps <- w.Header()
		switch r.URL.Path {
		case "/limit":
			fill(w, keptAnswerFields)
		case "/many":
			fill(w, keptAnswerFields+1)
		case "/hint":
			fill(w, keptAnswerFields+1)
			w.WriteHeader(http.StatusEarlyHints)
			clear(w.Header())
		}
		io.WriteString(w, "ok")
	}), watchAfter)
	steps := []struct {
		path string
		same bool // the map is the one the previous request had
	}{
		{"/small", false}, {"/small", true}, {"/limit", true}, {"/small", true},
		{"/many", true}, {"/small", false}, {"/small", true},
		{"/hint", true}, {"/small", false}, {"/small", true},
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	var prev http.Header
	for i, s := range steps {
		io.WriteString(c, "GET "+s.path+" HTTP/1.1\r\nHost: site.test\r\n\r\n")
		if got, whole := readAnswer(br, "GET"); !whole {
			t.Fatalf("request %d %s: %q", i, s.path, got)
		}
		m := <-maps
		if same := prev != nil && reflect.ValueOf(m).Pointer() == reflect.ValueOf(prev).Pointer(); same != s.same {
			t.Errorf("request %d %s: the map is the previous request's: %v, want %v", i, s.path, same, s.same)
		}
		prev = m
	}
}

// BenchmarkFastWriterSnapshot is the fast writer's WriteHeader on the
// header of a miss answer as the edge makes it.
func BenchmarkFastWriterSnapshot(b *testing.B) {
	h := http.Header{
		"Accept-Ranges":  {"bytes"},
		"Age":            {"0"},
		"Cache-Control":  {"max-age=3600"},
		"Cache-Status":   {"bench; fwd=uri-miss; fwd-status=200; ttl=3599; stored"},
		"Content-Type":   {"application/octet-stream"},
		"Date":           {"Mon, 07 Dec 2026 03:56:06 GMT"},
		"Via":            {"1.1 bench"},
		"X-Demo-Count":   {"1"},
		"Content-Length": {"1024"},
	}
	var fields []byte
	b.ReportAllocs()
	for b.Loop() {
		w := &fastWriter{handlerHeader: h, contentLength: -1, fields: fields[:0]}
		w.WriteHeader(http.StatusOK)
		fields = w.fields
	}
}
