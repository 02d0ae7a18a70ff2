package listen

import (
	"bytes"
	"strconv"
	"sync/atomic"

	"github.com/meridiancdn/meridian/edge/policy"
)

// reqFramer follows the requests of an HTTP/1.1 connection the way
// net/http reads them — a header, then a body of Content-Length bytes or
// chunked, then the next header — to find what net/http hides from a
// handler: a request with both Content-Length and Transfer-Encoding
// (net/http drops the Content-Length and reads the chunked body, and
// keeps the connection), or with Transfer-Encoding in HTTP/1.0 (which
// net/http ignores). RFC 9112 §6.1 calls such framing faulty and asks to
// close the connection after it; nginx and Varnish answer 400, and so
// does the edge (see Server.plainGuard).
//
// It is fed the bytes net/http reads, in order, from one goroutine at a
// time (net/http's reads of a connection never overlap). It stops
// following (goes blind) at anything that net/http refuses, since
// net/http then answers and closes the connection itself, and at anything
// it does not understand: it may then miss a request, but never blames
// the wrong one.
type reqFramer struct {
	state   int
	line    []byte // the unfinished line carried to the next feed
	maxHead int    // header bytes net/http reads before answering 431
	headLen int
	skip    int // CR/LF bytes that net/http skips after a POST, left to skip

	// The header being read.
	post, http10, lastCL, lastTE bool
	cl                           []byte
	hasCL                        bool
	te                           int
	chunked                      bool

	remain uint64 // bytes left in the body or the chunk

	count     int64        // headers read (requests)
	ambiguous atomic.Int64 // 1 + the index of the first request with faulty framing; 0: none
	served    int64        // requests handed to the handler so far (its goroutine only)
}

// Framer states.
const (
	frRequestLine = iota
	frField
	frBody
	frChunkSize
	frChunkData
	frChunkEnd // the CRLF after a chunk's data
	frTrailer
	frBlind
)

func newReqFramer(maxHeaderBytes int) *reqFramer {
	return &reqFramer{maxHead: maxHeaderBytes + 4096 + 4096} // net/http's read limit, plus its buffer
}

// feed follows p, the next bytes read from the connection.
func (f *reqFramer) feed(p []byte) {
	for len(p) > 0 && f.state != frBlind {
		switch f.state {
		case frBody, frChunkData:
			n := uint64(len(p))
			if n > f.remain {
				n = f.remain
			}
			p = p[n:]
			f.remain -= n
			if f.remain == 0 {
				if f.state == frBody {
					f.endRequest()
				} else {
					f.state = frChunkEnd
				}
			}
			continue
		case frRequestLine:
			for f.skip > 0 && len(f.line) == 0 && len(p) > 0 && (p[0] == '\r' || p[0] == '\n') {
				p, f.skip = p[1:], f.skip-1
			}
			if len(p) == 0 {
				return
			}
			f.skip = 0
		}
		var line []byte
		line, p = f.nextLine(p)
		if line == nil {
			return // the line goes on in the next read
		}
		f.onLine(line)
	}
}

// nextLine returns the next complete line of p, through its LF, and the
// rest of p; a nil line when p ends first (p is then kept in f.line).
func (f *reqFramer) nextLine(p []byte) (line, rest []byte) {
	i := bytes.IndexByte(p, '\n')
	limit := f.maxHead
	if f.state == frChunkSize || f.state == frChunkEnd {
		limit = 4096 // net/http's chunk line limit
	}
	if i < 0 {
		if len(f.line)+len(p) > limit {
			f.blind()
			return nil, nil
		}
		f.line = append(f.line, p...)
		return nil, nil
	}
	line, rest = p[:i+1], p[i+1:]
	if len(f.line) > 0 {
		f.line = append(f.line, line...)
		line = f.line
	}
	if len(line) > limit {
		f.blind()
		return nil, nil
	}
	return line, rest
}

// onLine handles a complete line (LF included).
func (f *reqFramer) onLine(raw []byte) {
	defer func() { f.line = f.line[:0] }()
	switch f.state {
	case frChunkSize:
		f.chunkSize(raw)
		return
	case frChunkEnd:
		if string(raw) != "\r\n" {
			f.blind() // net/http: malformed chunked encoding
			return
		}
		f.state = frChunkSize
		return
	case frTrailer:
		if string(raw) != "\r\n" {
			f.blind() // a trailer field, or a bare LF: rare, not followed
			return
		}
		f.endRequest()
		return
	}
	f.headLen += len(raw)
	if f.headLen > f.maxHead {
		f.blind() // net/http answers 431
		return
	}
	line := raw[:len(raw)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if f.state == frRequestLine {
		f.requestLine(line)
		return
	}
	if len(line) == 0 {
		f.endHeader()
		return
	}
	if line[0] == ' ' || line[0] == '\t' {
		if f.lastCL || f.lastTE {
			f.blind() // obs-fold on a framing field: not followed
		}
		return
	}
	colon := bytes.IndexByte(line, ':')
	if colon < 1 {
		f.blind() // net/http: malformed MIME header line
		return
	}
	for _, c := range line[:colon] {
		if !policy.IsTchar(c) {
			f.blind() // net/http: invalid header field name
			return
		}
	}
	name, value := line[:colon], trimOWS(line[colon+1:])
	f.lastCL, f.lastTE = equalFold(name, "content-length"), equalFold(name, "transfer-encoding")
	switch {
	case f.lastCL:
		if f.hasCL && !bytes.Equal(f.cl, value) {
			f.blind() // net/http: differing Content-Length values
			return
		}
		f.hasCL, f.cl = true, append(f.cl[:0], value...)
	case f.lastTE:
		f.te++
		f.chunked = equalFold(value, "chunked")
	}
}

// requestLine starts a request: METHOD SP target SP HTTP/1.x.
func (f *reqFramer) requestLine(line []byte) {
	sp := bytes.IndexByte(line, ' ')
	last := bytes.LastIndexByte(line, ' ')
	version := line[last+1:]
	if sp < 1 || last == sp || len(version) != 8 || string(version[:7]) != "HTTP/1." || version[7] < '0' || version[7] > '9' {
		f.blind() // net/http answers 400 or 505
		return
	}
	f.post = string(line[:sp]) == "POST"
	f.http10 = version[7] == '0'
	f.hasCL, f.cl, f.te, f.chunked, f.lastCL, f.lastTE = false, f.cl[:0], 0, false, false, false
	f.state = frField
}

// endHeader decides how the body is framed, as net/http does.
func (f *reqFramer) endHeader() {
	idx := f.count
	f.count++
	if f.te > 0 && (f.hasCL || f.http10) {
		// Faulty framing (RFC 9112 §6.1, §6.3): the handler answers 400
		// and closes; what follows is not read.
		f.ambiguous.CompareAndSwap(0, idx+1)
		f.blind()
		return
	}
	switch {
	case f.te > 0:
		if f.te != 1 || !f.chunked {
			f.blind() // net/http answers 501
			return
		}
		f.state = frChunkSize
	case f.hasCL:
		n, err := strconv.ParseUint(string(f.cl), 10, 63)
		if err != nil {
			f.blind() // net/http answers 400
			return
		}
		if n == 0 {
			f.endRequest()
			return
		}
		f.remain, f.state = n, frBody
	default:
		f.endRequest()
	}
}

// chunkSize reads a chunk-size line, as net/http's chunked reader does:
// CRLF only, no other CR, extensions dropped, at most 16 hex digits.
func (f *reqFramer) chunkSize(raw []byte) {
	if i := bytes.IndexByte(raw, '\r'); i < 0 || i != len(raw)-2 {
		f.blind()
		return
	}
	p := bytes.TrimRight(raw[:len(raw)-2], " \t\r\n")
	if i := bytes.IndexByte(p, ';'); i >= 0 {
		p = p[:i]
	}
	if len(p) == 0 || len(p) > 16 {
		f.blind()
		return
	}
	var n uint64
	for _, c := range p {
		switch {
		case '0' <= c && c <= '9':
			n = n<<4 | uint64(c-'0')
		case 'a' <= c && c <= 'f':
			n = n<<4 | uint64(c-'a'+10)
		case 'A' <= c && c <= 'F':
			n = n<<4 | uint64(c-'A'+10)
		default:
			f.blind()
			return
		}
	}
	if n == 0 {
		f.state = frTrailer
		return
	}
	f.remain, f.state = n, frChunkData
}

// endRequest readies for the next request's header.
func (f *reqFramer) endRequest() {
	f.state, f.headLen = frRequestLine, 0
	if f.post {
		f.skip = 4 // net/http skips up to 4 CR/LF bytes after a POST
	}
}

func (f *reqFramer) blind() {
	f.state, f.line = frBlind, nil
}

// faultyNext reports whether the next request handed to the handler had
// faulty framing. The handler calls it once per request, in order.
func (f *reqFramer) faultyNext() bool {
	f.served++
	return f.ambiguous.Load() == f.served
}
