package edge_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/internal/poll"
)

// A client that stops reading its answer is cut after
// server.send_timeout without progress, on either HTTP/1.1 front, for a
// hit written by the fast front and for an answer net/http writes (a
// Range request, lent to it); a client that reads slowly but steadily
// gets the whole answer however long it takes (the timeout counts from
// the last progress, as nginx's send_timeout does). Before, nothing cut
// the first: its connection, goroutine and socket buffers stayed until
// it went away.
func TestSlowReaderIsCutSteadyReaderIsNot(t *testing.T) {
	const size = 16 << 20 // beyond what the socket buffers absorb
	const timeout = time.Second
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Type", "application/octet-stream")
		io.WriteString(w, strings.Repeat("s", size))
	}, func(c *edge.Config) {
		c.Cache.MaxBytes = 64 << 20
		c.Cache.MaxObjectBytes = 32 << 20
		c.Cache.MaxInflightBytes = 64 << 20
		c.Server.SendTimeout = timeout
	})
	if resp, body := e.get("/big"); resp.StatusCode != 200 || len(body) != size {
		t.Fatalf("filling: %d, %d bytes", resp.StatusCode, len(body))
	}
	e.client.CloseIdleConnections()
	open := func() float64 { return e.metric("meridian_edge_connections") }
	poll.Until(t, 10*time.Second, "the filling connection closed", func() bool { return open() == 0 })

	request := func(t *testing.T, extra string) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", e.srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s\r\n", testHost, extra)
		return c
	}
	for _, tc := range []struct{ name, extra string }{
		{"hit", ""},
		{"range", "Range: bytes=0-\r\n"},
	} {
		t.Run(tc.name+"/stops reading", func(t *testing.T) {
			c := request(t, tc.extra)
			poll.Until(t, 10*time.Second, "the connection is open", func() bool { return open() == 1 })
			// It reads nothing: the edge gives up after the timeout.
			poll.Until(t, 30*time.Second, "the edge closes the connection", func() bool { return open() == 0 })
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			n, _ := io.Copy(io.Discard, c)
			if n >= size {
				t.Fatalf("read %d bytes: the whole answer, after the edge gave up", n)
			}
		})
		t.Run(tc.name+"/reads steadily", func(t *testing.T) {
			c := request(t, tc.extra)
			c.SetReadDeadline(time.Now().Add(60 * time.Second))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			// 64 KiB every 10 ms: well over the timeout in all, never a
			// pause near it.
			start, buf, n := time.Now(), make([]byte, 64<<10), 0
			for {
				m, err := io.ReadFull(resp.Body, buf)
				n += m
				if err != nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if n != size {
				t.Fatalf("a steady reader got %d of %d bytes in %v", n, size, time.Since(start))
			}
			t.Logf("a steady reader took %v for %d MiB", time.Since(start).Round(time.Millisecond), size>>20)
			c.Close()
			poll.Until(t, 10*time.Second, "the connection closed", func() bool { return open() == 0 })
		})
	}
}

// A large hit goes out as what the socket takes at once, then in chunks
// as the client makes room: every byte in its place, whatever the split.
// The body is not one repeated byte, so a chunk sent from the wrong
// offset shows; the client reads through a small receive buffer, so the
// first write takes only part of the body (the send buffer holds at
// most 4 MiB here).
func TestLargeHitWholeWhateverTheSocketTakes(t *testing.T) {
	const size = 6 << 20
	body := make([]byte, size)
	for i := range body {
		body[i] = byte(i*7 + i/4096)
	}
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
	})
	if resp, got := e.get("/whole"); resp.StatusCode != 200 || got != string(body) {
		t.Fatalf("filling: %d, %d bytes", resp.StatusCode, len(got))
	}
	for _, rng := range []string{"", "Range: bytes=1000-5999999\r\n"} {
		c, err := net.Dial("tcp", e.srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetReadBuffer(64 << 10)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(c, "GET /whole HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n", testHost, rng)
		resp, err := http.ReadResponse(bufio.NewReaderSize(c, 4<<10), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		c.Close()
		want := body
		if rng != "" {
			want = body[1000:6000000]
		}
		if err != nil || !strings.Contains(resp.Header.Get("Cache-Status"), "hit") || string(got) != string(want) {
			first := 0
			for first < min(len(got), len(want)) && got[first] == want[first] {
				first++
			}
			t.Fatalf("%q: %d bytes (%v), Cache-Status %q, want %d; first difference at %d",
				rng, len(got), err, resp.Header.Get("Cache-Status"), len(want), first)
		}
	}
}
