package edge_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/internal/poll"
)

func withFront(front string) func(*edge.Config) {
	return func(c *edge.Config) { c.Server.Front = front }
}

// rawExchange writes raw to the edge over a new TCP connection and returns
// the status of the first response, or 0 if the edge closed the
// connection without one.
func rawExchange(t *testing.T, addr, raw string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestFastFrontHostileInputs sends malformed and smuggling requests over
// raw TCP to both fronts: the fast front must answer each as net/http does.
func TestFastFrontHostileInputs(t *testing.T) {
	const h = "Host: site.test\r\n"
	cases := []struct {
		name, raw string
		want      int // 0: closed without a response
	}{
		{"plain hit", "GET /obj HTTP/1.1\r\n" + h + "\r\n", 200},
		// Refused and the connection closed, as nginx and Varnish do
		// (RFC 9112 §6.1; see hostile_front_test.go).
		{"CL and TE", "GET /obj HTTP/1.1\r\n" + h + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"duplicate CL differing", "GET /obj HTTP/1.1\r\n" + h + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nxx", 400},
		{"invalid CL", "GET /obj HTTP/1.1\r\n" + h + "Content-Length: abc\r\n\r\n", 400},
		{"negative CL", "GET /obj HTTP/1.1\r\n" + h + "Content-Length: -1\r\n\r\n", 400},
		{"TE not chunked", "GET /obj HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip\r\n\r\n", 501},
		// net/http unfolds obs-fold into a space (RFC 9112 §5.2 allows it).
		{"obs-fold", "GET /obj HTTP/1.1\r\n" + h + "X-A: b\r\n c\r\n\r\n", 200},
		{"bare CR in value", "GET /obj HTTP/1.1\r\n" + h + "X-A: b\rc\r\n\r\n", 400},
		{"NUL in value", "GET /obj HTTP/1.1\r\n" + h + "X-A: b\x00c\r\n\r\n", 400},
		{"space in name", "GET /obj HTTP/1.1\r\n" + h + "Bad Name: x\r\n\r\n", 400},
		{"space before colon", "GET /obj HTTP/1.1\r\n" + h + "X-A : x\r\n\r\n", 400},
		{"no Host", "GET /obj HTTP/1.1\r\n\r\n", 400},
		{"two Hosts", "GET /obj HTTP/1.1\r\n" + h + "Host: other.test\r\n\r\n", 400},
		{"bad Host", "GET /obj HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"garbage request line", "GARBAGE\r\n" + h + "\r\n", 400},
		{"bad version", "GET /obj HTTP/9.9\r\n" + h + "\r\n", 505},
		{"space in target", "GET /o bj HTTP/1.1\r\n" + h + "\r\n", 400},
		{"bare LF lines", "GET /obj HTTP/1.1\n" + "Host: site.test\n\n", 200},
		{"oversized header", "GET /obj HTTP/1.1\r\n" + h + "X-Big: " + strings.Repeat("a", 16<<10) + "\r\n\r\n", 431},
		{"unknown host", "GET /obj HTTP/1.1\r\nHost: nope.test\r\n\r\n", 421},
		{"HTTP/1.0 hit", "GET /obj HTTP/1.0\r\n" + h + "\r\n", 200},
		{"absolute form", "GET http://site.test/obj HTTP/1.1\r\n" + h + "\r\n", 200},
	}
	got := map[string][]int{}
	for _, front := range []string{edge.FrontNetHTTP, edge.FrontFast} {
		e := newEnv(t, respond(200, "cached body", "Cache-Control", "max-age=600"), withFront(front),
			func(c *edge.Config) { c.Server.MaxHeaderBytes = 8 << 10 })
		r, _ := e.get("/obj")
		wantStatus(t, r, 200)
		for _, tc := range cases {
			got[tc.name] = append(got[tc.name], rawExchange(t, e.srv.Addr(), tc.raw))
		}
	}
	for _, tc := range cases {
		g := got[tc.name]
		if g[0] != tc.want || g[1] != g[0] {
			t.Errorf("%s: net/http %d, fast %d, want %d on both", tc.name, g[0], g[1], tc.want)
		}
	}
}

// TestFastFrontPipelineAndHandback sends hits and a miss pipelined on one
// connection: answers come in order, and the connection returns to the
// fast reader after the miss that net/http answered.
func TestFastFrontPipelineAndHandback(t *testing.T) {
	e := newEnv(t, respond(200, "body", "Cache-Control", "max-age=600"), withFront(edge.FrontFast))
	e.get("/a")
	c, err := net.Dial("tcp", e.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := func(p string) string { return "GET " + p + " HTTP/1.1\r\nHost: site.test\r\n\r\n" }
	io.WriteString(c, req("/a")+req("/a")+req("/b")+req("/a")+"HEAD /a HTTP/1.1\r\nHost: site.test\r\n\r\n")
	br := bufio.NewReader(c)
	want := []struct {
		path, cs string
		head     bool
	}{{"/a", "hit", false}, {"/a", "hit", false}, {"/b", "fwd=uri-miss", false}, {"/a", "hit", false}, {"/a", "hit", true}}
	for i, w := range want {
		method := "GET"
		if w.head {
			method = "HEAD"
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantStatus(t, resp, 200)
		wantCS(t, resp, w.cs)
		if !w.head && string(b) != "body" {
			t.Fatalf("response %d: body %q", i, b)
		}
		if resp.Header.Get("Date") == "" || resp.Header.Get("Content-Length") != "4" {
			t.Fatalf("response %d: header %v", i, resp.Header)
		}
	}
	// Connection: close is honoured on a hit.
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	if !resp.Close {
		t.Fatalf("no Connection: close in %v", resp.Header)
	}
	if n, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection still open after Connection: close (%v, %v)", n, err)
	}
}

// TestMissThenGarbage: a miss with garbage pipelined behind it is
// answered, then the garbage gets net/http's 400 and the connection
// ends, on both fronts alike.
func TestMissThenGarbage(t *testing.T) {
	for _, front := range []string{edge.FrontNetHTTP, edge.FrontFast} {
		t.Run(front, func(t *testing.T) {
			e := newEnv(t, respond(200, "body", "Cache-Control", "max-age=600"), withFront(front))
			c := dialFrom(t, e.srv.Addr(), "")
			io.WriteString(c, "GET /m HTTP/1.1\r\nHost: site.test\r\n\r\nGARBAGE\x01 / HTTP/9\r\n\r\n")
			br := bufio.NewReader(c)
			resp, body, err := readResp(br, "GET")
			if err != nil || resp.StatusCode != 200 || body != "body" {
				t.Fatalf("miss: %v %v %q", resp, err, body)
			}
			wantCS(t, resp, "fwd=uri-miss")
			resp, _, err = readResp(br, "GET")
			if err != nil || resp.StatusCode != 400 {
				t.Fatalf("garbage: %v %v", resp, err)
			}
			wantClosed(t, br, "after the garbage")
		})
	}
}

// TestFastFrontTimeouts checks that a stalled header and an idle
// keep-alive connection are closed (server.read_header_timeout and
// server.idle_timeout), as net/http closes them: without a response.
func TestFastFrontTimeouts(t *testing.T) {
	e := newEnv(t, respond(200, "body", "Cache-Control", "max-age=600"), withFront(edge.FrontFast),
		func(c *edge.Config) {
			c.Server.ReadHeaderTimeout = 100 * time.Millisecond
			c.Server.IdleTimeout = 100 * time.Millisecond
		})
	e.get("/a")
	for _, tc := range []struct{ name, raw string }{
		{"stalled header", "GET /a HTTP/1.1\r\nHost: site"},
		{"idle after a hit", "GET /a HTTP/1.1\r\nHost: site.test\r\n\r\n"},
		{"idle after a miss", "GET /m HTTP/1.1\r\nHost: site.test\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", e.srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, tc.raw)
			b, err := io.ReadAll(c) // until the edge closes
			if err != nil {
				t.Fatalf("not closed by the edge: %v", err)
			}
			if strings.HasSuffix(tc.raw, "\r\n\r\n") != strings.HasPrefix(string(b), "HTTP/1.1 200") {
				t.Fatalf("answer %q", b)
			}
		})
	}
}

// TestFastFrontGracefulDrain: a request in flight when Shutdown starts
// finishes; idle connections are closed.
func TestFastFrontGracefulDrain(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(arrived)
			<-release
		}
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "done")
	}, withFront(edge.FrontFast))
	// Registered after newEnv's cleanup, so it runs first: a failing test
	// must not leave the origin's handler blocked, or closing the origin
	// waits for it for ever.
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	e.get("/hit")
	before := e.metric("meridian_edge_connections")
	idle, err := net.Dial("tcp", e.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	// Dial returns once the kernel has queued the connection, not once
	// the front has accepted it; Shutdown closes the listener, and the
	// kernel resets what is still queued. Shut down an accepted one.
	poll.Until(t, 10*time.Second, "the front accepted the idle connection", func() bool {
		return e.metric("meridian_edge_connections") == before+1
	})
	type result struct {
		status int
		body   string
	}
	got := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", e.base+"/slow", nil)
		req.Host = testHost
		resp, err := e.client.Do(req)
		if err != nil {
			got <- result{}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{resp.StatusCode, string(b)}
	}()
	<-arrived
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- e.srv.Shutdown(ctx)
	}()
	idle.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(idle); err != nil {
		t.Fatalf("idle connection not closed on Shutdown: %v", err)
	}
	unblock()
	if r := <-got; r.status != 200 || r.body != "done" {
		t.Fatalf("in-flight request: %d %q", r.status, r.body)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestFastFrontConfig: server.front is validated and parsed.
func TestFastFrontConfig(t *testing.T) {
	c, err := edge.ParseConfig([]byte("server: {front: fast}\nsites: [{hosts: [a.test], origin: 'http://127.0.0.1:1'}]\n"))
	if err != nil || c.Server.Front != edge.FrontFast {
		t.Fatalf("front %q, %v", c.Server.Front, err)
	}
	_, err = edge.ParseConfig([]byte("server: {front: nginx}\nsites: [{hosts: [a.test], origin: 'http://127.0.0.1:1'}]\n"))
	if err == nil || !strings.Contains(err.Error(), "server.front") {
		t.Fatalf("unknown front: %v", err)
	}
}
