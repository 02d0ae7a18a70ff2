package origin

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// FuzzSimpleResponse feeds bytes to readSimpleResponse and to
// http.ReadResponse directly (no sockets, so many more inputs a second
// than FuzzResponse): when readSimpleResponse takes an answer, its
// response must be the one http.ReadResponse makes of the same bytes, and
// both must leave the same bytes unread (the body); when it declines, it
// must have consumed nothing.
func FuzzSimpleResponse(f *testing.F) {
	for _, c := range hostileAnswers {
		f.Add(strings.ReplaceAll(c.reply, "<<split>>", ""))
	}
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A:\tv\t \r\n\r\nok")
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: v\x7f\r\n\r\nok")
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-\x7fA: v\r\n\r\nok")
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: v\r\r\n\r\nok")
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A\r: v\r\n\r\nok")
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: \xff\xfe \r\n\r\nok")
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nx-a: 1\r\nX-A: 2\r\nx-A: 3\r\n\r\nok")
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCONNECTION: KEEP-ALIVE\r\n\r\nok")
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 2\r\ntransfer-encoding: identity\r\n\r\nok")
	f.Add("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nCONTENT-LENGTH: 2\r\n\r\nok")
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n\r\nok")
	f.Add("HTTP/1.1 200 OK\r\nContent-Length:2\r\nA:b\r\n\r\nok")
	f.Add("\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	f.Add("\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	f.Add("HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok")
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\nX: y\r\n\r\nok")
	f.Fuzz(func(t *testing.T, s string) {
		req := &http.Request{Method: http.MethodGet}
		br := bufio.NewReaderSize(strings.NewReader(s), 4096)
		resp, ok := readSimpleResponse(br, req)
		rest, _ := io.ReadAll(br)
		if !ok {
			if string(rest) != s {
				t.Fatalf("declined %q having consumed %d bytes", s, len(s)-len(rest))
			}
			return
		}
		sbr := bufio.NewReaderSize(strings.NewReader(s), 4096)
		want, err := http.ReadResponse(sbr, req)
		if err != nil {
			t.Fatalf("took %q, which http.ReadResponse refuses: %v", s, err)
		}
		wantRest, _ := io.ReadAll(sbr)
		if !bytes.Equal(rest, wantRest) {
			t.Fatalf("%q: left %q unread, http.ReadResponse %q", s, rest, wantRest)
		}
		got := *resp
		got.Body, want.Body = nil, nil
		if !reflect.DeepEqual(got, *want) {
			t.Fatalf("%q:\n got  %+v\n want %+v", s, got, *want)
		}
	})
}

// BenchmarkReadSimpleResponse parses a typical origin answer's head.
func BenchmarkReadSimpleResponse(b *testing.B) {
	const head = "HTTP/1.1 200 OK\r\nAccept-Ranges: bytes\r\nCache-Control: public, max-age=3600\r\n" +
		"Content-Length: 1024\r\nContent-Type: application/octet-stream\r\nDate: Mon, 07 Dec 2026 03:00:00 GMT\r\n" +
		"Etag: \"5f3c-400\"\r\nLast-Modified: Sun, 06 Dec 2026 12:00:00 GMT\r\nvary: Accept-Encoding\r\n\r\n"
	req := &http.Request{Method: http.MethodGet}
	r := strings.NewReader(head)
	br := bufio.NewReaderSize(r, 4096)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(head)
		br.Reset(r)
		if _, ok := readSimpleResponse(br, req); !ok {
			b.Fatal("declined")
		}
	}
}
