package bench

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// startFloor runs a Floor in front of origin on a loopback port.
func startFloor(t *testing.T, origin string) (*Floor, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &Floor{Origin: origin}
	done := make(chan struct{})
	go func() { f.Serve(ln); close(done) }()
	t.Cleanup(func() { ln.Close(); <-done })
	return f, ln.Addr().String()
}

// The floor does a miss's I/O and nothing else, but that it must do: the
// origin gets the client's target and Host on one kept-alive connection,
// the client gets the origin's body, and the floor keeps each body.
func TestFloorRelaysEachGETThroughOneOriginConnection(t *testing.T) {
	var mu sync.Mutex
	var got []string
	conns := 0
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Host+" "+r.RequestURI+" "+r.Header.Get("Via"))
		mu.Unlock()
		n, _ := strconv.Atoi(r.URL.Query().Get("size"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(bytes.Repeat([]byte{'x'}, n))
	}))
	origin.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	origin.Start()
	defer origin.Close()
	f, addr := startFloor(t, origin.Listener.Addr().String())

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	for i, size := range []int{1024, 70000} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/miss/"+strconv.Itoa(i)+"?size="+strconv.Itoa(size), nil)
		req.Host = "bench.test"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || len(body) != size {
			t.Fatalf("request %d: status %d, %d bytes (err %v); want 200, %d bytes", i, resp.StatusCode, len(body), err, size)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"bench.test /miss/0?size=1024 1.1 floor", "bench.test /miss/1?size=70000 1.1 floor"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("origin got %q, want %q", got, want)
	}
	if conns != 1 {
		t.Errorf("%d origin connections for one client connection, want 1", conns)
	}
	if n := f.Stored(); n != 2 {
		t.Errorf("floor keeps %d bodies, want 2", n)
	}
}

// What the floor does not do, it refuses by closing: a request with a
// body, and an answer that is not a 200 with a Content-Length.
func TestFloorClosesOnTrafficItDoesNotDo(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/404" {
			http.NotFound(w, r)
			return
		}
		w.(http.Flusher).Flush() // chunked: no Content-Length
		io.WriteString(w, "streamed")
	}))
	defer origin.Close()
	_, addr := startFloor(t, origin.Listener.Addr().String())
	for _, raw := range []string{
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
		"GET /404 HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /long HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("y", floorMaxHead) + "\r\n\r\n",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, raw)
		b, _ := io.ReadAll(c) // EOF, or a reset: the floor closed with the rest unread
		c.Close()
		if len(b) != 0 {
			t.Errorf("%.20q: read %q; want the connection closed without an answer", raw, b)
		}
	}
}
