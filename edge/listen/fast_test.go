package listen_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/listen"
	"github.com/meridiancdn/meridian/internal/benchcpu"
)

// The listeners with a real edge.Handler behind them. The edge's own
// tests (package edge) run every cache test through a Server on each
// HTTP/1.1 front, and compare the fronts' answers (TestFrontsAnswerAlike);
// these are the listener's alone.

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// quic-go keeps a package-level goroutine for its connection IDs.
		goleak.IgnoreAnyFunction("github.com/quic-go/quic-go.(*Transport).listen"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

const testHost = "site.test"

// respond returns an origin handler that writes fixed headers and body.
func respond(status int, body string, kv ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(kv); i += 2 {
			w.Header().Add(kv[i], kv[i+1])
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// rawExchange writes raw to addr over a new TCP connection and returns
// the status of the first response, or 0 if the connection was closed
// without one.
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

// A handler wrapped in another (middleware) cannot have its hits answered
// by the fast front without skipping the wrapper: every request then goes
// through net/http and the wrapper, and Start says so in the log rather
// than falling back silently.
func TestFastFrontWrappedHandlerIsNotSilent(t *testing.T) {
	origin := httptest.NewServer(respond(200, "wrapped", "Cache-Control", "max-age=60"))
	defer origin.Close()
	cfg := edge.Config{Listen: "127.0.0.1:0", Server: edge.ServerConfig{Front: edge.FrontFast},
		Sites: []edge.SiteConfig{{Hosts: []string{testHost}, Origin: origin.URL}}}
	h, err := edge.New(cfg, edge.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var seen atomic.Int64
	var logBuf syncBuffer
	srv := listen.NewServer(cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		h.ServeHTTP(w, r)
	}), listen.Options{Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	for i := 0; i < 2; i++ {
		if got := rawExchange(t, srv.Addr(), "GET /w HTTP/1.1\r\nHost: "+testHost+"\r\n\r\n"); got != 200 {
			t.Fatalf("request %d: status %d", i, got)
		}
	}
	if n := seen.Load(); n != 2 {
		t.Fatalf("the wrapper saw %d of 2 requests: a hit skipped it", n)
	}
	logged := logBuf.String()
	if !strings.Contains(logged, "level=WARN") || !strings.Contains(logged, "server.front fast") {
		t.Fatalf("no warning that the fast front cannot answer hits; log:\n%s", logged)
	}
}

// BenchmarkHitFront measures a 1 KiB and a 64 KiB hit over a real loopback
// keep-alive connection on each front, client included (the client is a
// raw request write and a fixed-length read, allocation-free).
func BenchmarkHitFront(b *testing.B) {
	for _, front := range []string{edge.FrontNetHTTP, edge.FrontFast} {
		for _, size := range []int{1 << 10, 64 << 10} {
			b.Run(front+"/"+strconv.Itoa(size>>10)+"KiB", func(b *testing.B) {
				c := dialBenchFront(b, front, size)
				req := []byte("GET /obj HTTP/1.1\r\nHost: bench.test\r\n\r\n")
				br := bufio.NewReaderSize(c, 128<<10)
				c.Write(req) // fill
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				io.ReadAll(resp.Body)
				// Every hit's answer has the same length (Age stays 0 within
				// the run's first second, then one digit up to 9 s): read the
				// header up to its blank line, then the body.
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := c.Write(req); err != nil {
						b.Fatal(err)
					}
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							b.Fatal(err)
						}
						if len(line) == 2 {
							break
						}
					}
					if _, err := br.Discard(size); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkMissFront measures misses through each HTTP/1.1 front: every
// request a new key over one keep-alive connection, 1 KiB from an origin
// on loopback in the same process (its allocations and CPU are counted
// too).
func BenchmarkMissFront(b *testing.B) {
	for _, front := range []string{edge.FrontNetHTTP, edge.FrontFast} {
		b.Run(front, func(b *testing.B) {
			c := dialBenchFront(b, front, 1<<10)
			br := bufio.NewReader(c)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := benchcpu.Start()
			defer cpu.Report(b)
			for i := 0; i < b.N; i++ {
				if _, err := io.WriteString(c, "GET /miss/"+strconv.Itoa(i)+" HTTP/1.1\r\nHost: bench.test\r\n\r\n"); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != 1<<10 {
					b.Fatalf("body: %d bytes, %v", n, err)
				}
				resp.Body.Close()
			}
		})
	}
}

// dialBenchFront starts an edge for site bench.test behind front, its
// origin answering every path with size bytes fresh for an hour, and
// returns a connection to its plain listener; all end with b.
func dialBenchFront(b *testing.B, front string, size int) net.Conn {
	b.Helper()
	body := strings.Repeat("x", size)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", "application/octet-stream")
		io.WriteString(w, body)
	}))
	b.Cleanup(origin.Close)
	cfg := edge.Config{Listen: "127.0.0.1:0", Server: edge.ServerConfig{Front: front},
		Sites: []edge.SiteConfig{{Hosts: []string{"bench.test"}, Origin: origin.URL}}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := edge.New(cfg, edge.Options{Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	srv := listen.NewServer(cfg, h, listen.Options{Logger: log})
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Shutdown(context.Background()) })
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}
