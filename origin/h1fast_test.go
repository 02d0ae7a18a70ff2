package origin

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// FuzzSimpleResponse feeds bytes to readSimpleResponse and to
// http.ReadResponse directly (no sockets, so many more inputs a second
// than FuzzResponse): when readSimpleResponse takes an answer, its
// response must be the one http.ReadResponse makes of the same bytes, and
// both must leave the same bytes unread (the body); when it declines, it
// must have consumed nothing. Read a byte at a time, the answer must be
// the same.
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
	// Heads around the sizes whose values share the Response's
	// allocation (newResponse), a repeated name among them.
	for _, n := range []int{7, 8, 9, 23, 24, 25, 40} {
		f.Add("HTTP/1.1 200 OK\r\n" + strings.Repeat("X-A: 1\r\nX-B: 2\r\n", n/2) + strings.Repeat("X-C: 3\r\n", n%2) + "Content-Length: 2\r\n\r\nok")
	}
	f.Fuzz(func(t *testing.T, s string) {
		req := &http.Request{Method: http.MethodGet}
		br := bufio.NewReaderSize(strings.NewReader(s), 4096)
		resp, ok := readSimpleResponse(br, req)
		rest, _ := io.ReadAll(br)
		// The same bytes a byte at a time, as a slow origin sends
		// them: the same answer.
		br1 := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(s)), 4096)
		resp1, ok1 := readSimpleResponse(br1, req)
		if ok1 != ok || ok && !reflect.DeepEqual(*resp1, *resp) {
			t.Fatalf("%q a byte at a time: took it %v, at once %v\n%+v\n%+v", s, ok1, ok, resp1, resp)
		}
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

// typicalHead is a typical origin answer's head.
const typicalHead = "HTTP/1.1 200 OK\r\nAccept-Ranges: bytes\r\nCache-Control: public, max-age=3600\r\n" +
	"Content-Length: 1024\r\nContent-Type: application/octet-stream\r\nDate: Mon, 07 Dec 2026 03:00:00 GMT\r\n" +
	"Etag: \"5f3c-400\"\r\nLast-Modified: Sun, 06 Dec 2026 12:00:00 GMT\r\nvary: Accept-Encoding\r\n\r\n"

// A typical head is read in five allocations: the head's string, the
// header map and its one group of slots, the Response with the values'
// slice, and the canonical name of its one field sent in lower case.
func TestReadSimpleResponseAllocations(t *testing.T) {
	req := &http.Request{Method: http.MethodGet}
	r := strings.NewReader(typicalHead)
	br := bufio.NewReaderSize(r, 4096)
	if n := testing.AllocsPerRun(100, func() {
		r.Reset(typicalHead)
		br.Reset(r)
		if _, ok := readSimpleResponse(br, req); !ok {
			t.Fatal("declined")
		}
	}); n != 5 {
		t.Errorf("%v allocations, want 5", n)
	}
}

// BenchmarkReadSimpleResponse parses a typical origin answer's head.
func BenchmarkReadSimpleResponse(b *testing.B) {
	const head = typicalHead
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

// BenchmarkReadSimpleResponseTrickled parses a head of about 4 KiB that
// arrives a byte at a time, as a hostile origin may send it.
func BenchmarkReadSimpleResponseTrickled(b *testing.B) {
	head := "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Pad: abcdefgh\r\n", 230) + "Content-Length: 0\r\n\r\n"
	req := &http.Request{Method: http.MethodGet}
	r := strings.NewReader(head)
	br := bufio.NewReaderSize(iotest.OneByteReader(r), 4096)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(head)
		br.Reset(iotest.OneByteReader(r))
		if _, ok := readSimpleResponse(br, req); !ok {
			b.Fatal("declined")
		}
	}
}
