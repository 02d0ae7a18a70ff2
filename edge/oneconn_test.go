package edge_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestAnswersOnOneConnectionAreTheirOwn: the answers a client gets on one
// keep-alive connection are those it gets with each request on a new
// connection, over a cache that sees the same requests in the same
// order: no field of one answer (a miss's over the origin's fields, a
// Range answer's Content-Range, a pass answer's many origin fields, a
// 304's, a relayed 103's) reaches the next. The fast front keeps a
// connection's response writer and header map for its next request
// (listen's keptAnswerFields); net/http makes them per request.
func TestAnswersOnOneConnectionAreTheirOwn(t *testing.T) {
	origin := func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; p {
		case "/pass": // not stored, past the fields a kept map may hold
			w.Header().Set("Cache-Control", "no-store")
			for i := range 40 {
				w.Header().Set(fmt.Sprintf("X-Pass-%02d", i), "p")
			}
		case "/hints":
			w.Header().Set("Link", "</s.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			w.Header().Set("Cache-Control", "max-age=600")
		case "/private":
			w.Header().Set("Cache-Control", "private")
			w.Header().Set("X-Private", "1")
		default:
			w.Header().Set("Cache-Control", "max-age=600")
			w.Header().Set("X-Only"+strings.ReplaceAll(p, "/", "-"), "1") // this object's own
		}
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Last-Modified", "Thu, 26 Nov 2026 12:00:00 GMT")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "0123456789")
	}
	const h = hostHdr
	reqs := []string{
		"GET /a HTTP/1.1\r\n" + h + "\r\n",
		"GET /a HTTP/1.1\r\n" + h + "Range: bytes=0-3\r\n\r\n",
		"GET /a HTTP/1.1\r\n" + h + "If-None-Match: \"v1\"\r\n\r\n",
		"GET /b HTTP/1.1\r\n" + h + "\r\n",
		"GET /pass HTTP/1.1\r\n" + h + "\r\n",
		"GET /c HTTP/1.1\r\n" + h + "\r\n",
		"GET /hints HTTP/1.1\r\n" + h + "\r\n",
		"GET /d HTTP/1.1\r\n" + h + "\r\n",
		"GET /b HTTP/1.1\r\n" + h + "Range: bytes=2-5\r\n\r\n",
		"HEAD /e HTTP/1.1\r\n" + h + "\r\n",
		"GET /f HTTP/1.1\r\n" + h + "If-None-Match: \"v1\"\r\n\r\n",
		"GET /private HTTP/1.1\r\n" + h + "\r\n",
		"GET /g HTTP/1.1\r\n" + h + "\r\n",
		"GET /a HTTP/1.1\r\n" + h + "Range: bytes=50-\r\n\r\n",
		"GET /h HTTP/1.1\r\n" + h + "\r\n",
		"GET /g HTTP/1.1\r\n" + h + "Cache-Control: no-cache\r\n\r\n",
		"GET /i HTTP/1.1\r\n" + h + "\r\n",
	}
	answer := func(br *bufio.Reader, method string) (out []string, open bool) {
		resp, body, err := readResp(br, method)
		for err == nil && resp.StatusCode < 200 {
			out = append(out, resp.Status, fmt.Sprint(resp.Header))
			resp, body, err = readResp(br, method)
		}
		if err != nil {
			return append(out, "error "+err.Error()), false
		}
		out = append(out, resp.Status, fmt.Sprint("length ", resp.ContentLength, " te ", resp.TransferEncoding, " body ", body))
		delete(resp.Header, "Date")
		return append(out, fmt.Sprint(resp.Header)), !resp.Close
	}
	shared, alone := newEnv(t, origin), newEnv(t, origin)
	var c net.Conn
	var br *bufio.Reader
	for i, raw := range reqs {
		method := strings.Fields(raw)[0]
		if c == nil {
			c = dialFrom(t, shared.srv.Addr(), "")
			br = bufio.NewReader(c)
		}
		io.WriteString(c, raw)
		got, open := answer(br, method)
		if !open {
			c.Close()
			c = nil
		}
		own := dialFrom(t, alone.srv.Addr(), "")
		io.WriteString(own, raw)
		want, _ := answer(bufio.NewReader(own), method)
		own.Close()
		if !slices.Equal(got, want) {
			t.Errorf("request %d %q:\nalone      %q\nafter more %q", i, raw, want, got)
		}
	}
}
