package edge_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
)

// earlyAnswerOrigin is an origin that answers a request as soon as its
// header has come, with answer, before it reads the request's body
// (which it then reads to its end): an upload refused at once, a handler
// that ignores the body. net/http's server would read the body first.
func earlyAnswerOrigin(t *testing.T, answer string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				br := bufio.NewReader(c)
				length := int64(0)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
					if name, value, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "Content-Length") {
						length, _ = strconv.ParseInt(strings.TrimSpace(value), 10, 64)
					}
				}
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(answer), answer)
				io.CopyN(io.Discard, br, length)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestPassAnswerBeforeTheRequestBody: an origin's answer to a POST that
// comes before the origin has read the request's body is relayed whole,
// and the client's connection serves its next request. The edge's
// upstream transport was still sending the body (read from the client's
// connection as it went) when the answer came; net/http's HTTP/1 server
// reads and closes what is left of a request's body when the answer's
// header is written, under the transport, whose write then failed and
// closed the origin connection with the answer half relayed (seen as
// TestSlicePurgeRemovesEverySlice's rare "unexpected EOF"). A small body
// is now read whole before the request goes upstream (passBufferBytes);
// a longer one is streamed with full duplex enabled.
func TestPassAnswerBeforeTheRequestBody(t *testing.T) {
	answer := strings.Repeat("answer ", 16<<10) // 112 KiB
	origin := earlyAnswerOrigin(t, answer)
	e := newEnv(t, respond(http.StatusTeapot, "not this origin"), func(c *edge.Config) { c.Sites[0].Origin = origin })
	for i := 0; i < 1000; i++ {
		req, _ := http.NewRequest("POST", e.base+"/upload", strings.NewReader("x"))
		req.Host = testHost
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatalf("POST %d: no answer: %v", i, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil || string(got) != answer {
			t.Fatalf("POST %d: %d, %d of %d bytes, %v", i, resp.StatusCode, len(got), len(answer), err)
		}
	}
}
