package listen

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// framingOracle reads p as net/http's server reads a connection: requests
// one after another, each body consumed, up to 4 CR/LF skipped after a
// POST, until an error or a request after which net/http closes. For each
// request read it reports whether its header had faulty framing
// (Transfer-Encoding with Content-Length, or in HTTP/1.0).
func framingOracle(p []byte) (faulty []bool) {
	rd := bytes.NewReader(p)
	br := bufio.NewReader(rd)
	consumed := func() int { return len(p) - rd.Len() - br.Buffered() }
	post := false
	for {
		if post {
			peek, _ := br.Peek(4)
			n := 0
			for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
				n++
			}
			br.Discard(n)
		}
		start := consumed()
		r, err := http.ReadRequest(br)
		if err != nil {
			return faulty
		}
		head := p[start:consumed()]
		faulty = append(faulty, rawFaulty(head))
		if r.ProtoAtLeast(1, 1) && rawCount(head, "Host") != 1 ||
			r.Header.Get("Expect") != "" && !strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
			return faulty // net/http answers and closes
		}
		if _, err := io.Copy(io.Discard, r.Body); err != nil || r.Close {
			return faulty
		}
		post = r.Method == "POST"
	}
}

// rawFaulty reads a raw request header: Transfer-Encoding together with
// Content-Length, or in HTTP/1.0.
func rawFaulty(head []byte) bool {
	line, _, _ := strings.Cut(string(head), "\n")
	te, cl := rawCount(head, "Transfer-Encoding") > 0, rawCount(head, "Content-Length") > 0
	return te && (cl || strings.HasSuffix(strings.TrimSpace(line), "HTTP/1.0"))
}

// rawCount counts the field lines called name in a raw request header.
func rawCount(head []byte, name string) int {
	lines := strings.Split(strings.ReplaceAll(string(head), "\r\n", "\n"), "\n")
	n := 0
	for _, l := range lines[1:] {
		if field, _, ok := strings.Cut(l, ":"); ok && strings.EqualFold(field, name) {
			n++
		}
	}
	return n
}

// FuzzReqFramer checks the framer against net/http's own reading of the
// same bytes, fed in pieces of a fuzzed size: it never blames a request
// that net/http reads as well framed, and it finds the first faulty one
// whenever it followed the stream that far.
func FuzzReqFramer(f *testing.F) {
	const h = "Host: site.test\r\n"
	for _, s := range []string{
		"GET / HTTP/1.1\r\n" + h + "\r\nGET /x HTTP/1.1\r\n" + h + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST /f HTTP/1.1\r\n" + h + "Content-Length: 3\r\n\r\nabc\r\nPOST /s HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
		"POST /f HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n" + h + "\r\n",
		"POST /f HTTP/1.1\r\n" + h + "Content-Length: 70\r\n\r\nGET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\nGET / HTTP/1.1\r\n" + h + "\r\n",
		"POST /s HTTP/1.0\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\n" + h + "\r\nGET / HTTP/1.1\r\n" + h + "transfer-encoding: chunked\r\ncontent-length: 0\r\n\r\n",
		"GET / HTTP/1.1\n" + "Host: a\n\nGET / HTTP/1.1\n" + "Host: a\nContent-Length: 1\nTransfer-Encoding: chunked\n\n",
		"POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXY\r\n",
		"PUT / HTTP/1.1\r\n" + h + "Content-Length: 2\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
	} {
		for _, piece := range []byte{0, 1, 7} {
			f.Add([]byte(s), piece)
		}
	}
	f.Fuzz(func(t *testing.T, p []byte, piece byte) {
		fr := newReqFramer(1 << 12)
		for rest := p; len(rest) > 0; {
			n := len(rest)
			if piece > 0 && int(piece) < n {
				n = int(piece)
			}
			fr.feed(rest[:n])
			rest = rest[n:]
		}
		faulty := framingOracle(p)
		// A request that net/http refuses or never reads (it closed the
		// connection before) never reaches the handler: blaming it is
		// harmless. One that it hands to the handler must be faulty.
		flagged := fr.ambiguous.Load() - 1
		if flagged >= 0 && flagged < int64(len(faulty)) && !faulty[flagged] {
			t.Fatalf("request %d blamed, but net/http read it as well framed (faulty %v): %q", flagged, faulty, p)
		}
		for i, bad := range faulty {
			if bad {
				if fr.count > int64(i) && flagged != int64(i) {
					t.Fatalf("request %d is faulty and the framer read its header, but it flagged %d: %q", i, flagged, p)
				}
				break
			}
		}
	})
}

// TestReqFramerFollowsBodies: the framer counts requests across bodies of
// every kind, in pieces of any size.
func TestReqFramerFollowsBodies(t *testing.T) {
	const h = "Host: a\r\n"
	stream := "GET /1 HTTP/1.1\r\n" + h + "\r\n" +
		"POST /2 HTTP/1.1\r\n" + h + "Content-Length: 11\r\n\r\nhello world\r\n" +
		"POST /3 HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext\r\n world\r\n0\r\n\r\n" +
		"OPTIONS * HTTP/1.1\r\n" + h + "\r\n" +
		"GET /5 HTTP/1.1\r\n" + h + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
		"GET /6 HTTP/1.1\r\n" + h + "\r\n"
	for piece := 1; piece <= len(stream); piece++ {
		fr := newReqFramer(4096)
		for i := 0; i < len(stream); i += piece {
			fr.feed([]byte(stream[i:min(i+piece, len(stream))]))
		}
		if fr.count != 5 || fr.ambiguous.Load() != 5 || fr.state != frBlind {
			t.Fatalf("pieces of %d: %d headers, ambiguous %d, state %d", piece, fr.count, fr.ambiguous.Load(), fr.state)
		}
		for i := 1; i <= 5; i++ {
			if got := fr.faultyNext(); got != (i == 5) {
				t.Fatalf("pieces of %d: request %d faulty %v", piece, i, got)
			}
		}
	}
}
