package origin

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"
)

// readSimpleResponse reads the common answer to a GET without
// http.ReadResponse, in fewer allocations (one string for the whole head,
// values and canonical names sliced from it, one slice for the values): a
// status line "HTTP/1.1 NNN reason" with a status from 200 to 599 but 204
// and 304, CRLF-terminated field lines of token names and valid values
// (no obs-fold), exactly one Content-Length, no Transfer-Encoding, Trailer
// or Pragma, no Connection but "keep-alive", and the whole head already in
// (or readable into) br's buffer. Its response is what http.ReadResponse
// makes of those bytes, with a nil Body: the caller reads ContentLength
// bytes. For anything else it returns false having consumed nothing, and
// http.ReadResponse reads the answer (FuzzSimpleResponse compares the two
// parsers, FuzzResponse the two clients).
func readSimpleResponse(br *bufio.Reader, req *http.Request) (*http.Response, bool) {
	if req.Method != http.MethodGet && req.Method != "" {
		return nil, false
	}
	var head []byte
	from, lines := 0, 0 // where the walk goes on; lines before it, the status line's included
	for {
		// Only a head whose every line ends in CRLF, up to an empty
		// one, is read here: more is read only while the lines so far
		// do, and any other ending is declined at once (else this would
		// wait for bytes http.ReadResponse does not need).
		buf, _ := br.Peek(br.Buffered())
		var end int
		end, from, lines = crlfHeadEnd(buf, from, lines)
		if end < 0 {
			return nil, false
		}
		if end > 0 {
			head = buf[:end]
			break
		}
		if br.Buffered() >= br.Size() {
			return nil, false
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return nil, false
		}
	}
	if lines == 0 {
		return nil, false // no status line
	}
	// The status line, checked before the head is copied. A CR or LF
	// within a line is a control byte that the checks of the line, name
	// or value refuse.
	eol := bytes.IndexByte(head, '\n')
	line := head[:eol-1]
	if len(line) < 12 || string(line[:9]) != "HTTP/1.1 " || (len(line) > 12 && line[12] != ' ') {
		return nil, false
	}
	code := 0
	for i := 9; i < 12; i++ {
		if line[i] < '0' || line[i] > '9' {
			return nil, false
		}
		code = code*10 + int(line[i]-'0')
	}
	if code < 200 || code > 599 || code == http.StatusNoContent || code == http.StatusNotModified {
		return nil, false
	}
	for _, b := range line {
		if b < ' ' || b == 0x7f {
			return nil, false
		}
	}
	s := string(head)
	status := s[9 : eol-1]
	// The field lines.
	rest := s[eol+1 : len(s)-2]
	n := lines - 1
	h := make(http.Header, n)
	resp, values := newResponse(n)
	length := int64(-1)
	for i := 0; len(rest) > 0; i++ {
		eol := strings.IndexByte(rest, '\n')
		if eol < 1 || rest[eol-1] != '\r' {
			return nil, false
		}
		line := rest[:eol-1]
		rest = rest[eol+1:]
		// The name: token bytes up to the colon, noting whether it is
		// canonical (upper case first and after each dash, lower case
		// elsewhere) on the way.
		colon, canonical, upper := -1, true, true
		for j := 0; j < len(line); j++ {
			c := line[j]
			if c == ':' {
				colon = j
				break
			}
			if !tokenByte[c] {
				return nil, false
			}
			if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
				canonical = false
			}
			upper = c == '-'
		}
		if colon <= 0 {
			return nil, false
		}
		name := line[:colon]
		if !canonical {
			name = textproto.CanonicalMIMEHeaderKey(name)
		}
		// The value: without leading and trailing blanks, no control
		// byte but a tab.
		a, z := colon+1, len(line)
		for a < z && (line[a] == ' ' || line[a] == '\t') {
			a++
		}
		for z > a && (line[z-1] == ' ' || line[z-1] == '\t') {
			z--
		}
		value := line[a:z]
		for j := 0; j < len(value); j++ {
			if c := value[j]; c < ' ' && c != '\t' || c == 0x7f {
				return nil, false
			}
		}
		switch name {
		case "Transfer-Encoding", "Trailer", "Pragma":
			return nil, false
		case "Connection":
			if !strings.EqualFold(value, "keep-alive") {
				return nil, false
			}
		case "Content-Length":
			if length >= 0 || value == "" {
				return nil, false
			}
			n, err := strconv.ParseUint(value, 10, 63)
			if err != nil {
				return nil, false
			}
			length = int64(n)
		}
		values[i] = value
		if vv, ok := h[name]; ok {
			h[name] = append(vv, value)
		} else {
			h[name] = values[i : i+1 : i+1]
		}
	}
	if length < 0 {
		return nil, false
	}
	br.Discard(len(head))
	*resp = http.Response{
		Status:        status,
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		ContentLength: length,
		Request:       req,
	}
	return resp, true
}

// newResponse returns a Response to fill in and room for the values of
// its n field lines, in one allocation for a head of up to 24 fields
// (most answers): the header's value slices keep the Response, as the
// Response keeps the header.
func newResponse(n int) (*http.Response, []string) {
	switch {
	case n <= 8:
		x := new(struct {
			resp http.Response
			vals [8]string
		})
		return &x.resp, x.vals[:n]
	case n <= 24:
		x := new(struct {
			resp http.Response
			vals [24]string
		})
		return &x.resp, x.vals[:n]
	}
	return new(http.Response), make([]string, n)
}

// crlfHeadEnd finds the end of the head at the start of buf, going on
// from the line that starts at from, lines lines into it: it returns the
// length of the head, its final empty line included, or 0 when buf ends
// before the head does, or -1 when a line ends in a bare LF; with the
// start of the line it stopped in and the number of lines before it.
// Going on from where the last call stopped keeps the walk linear in the
// head's length however the origin splits it.
func crlfHeadEnd(buf []byte, from, lines int) (end, next, nlines int) {
	for {
		k := bytes.IndexByte(buf[from:], '\n')
		if k < 0 {
			return 0, from, lines
		}
		k += from
		if k == 0 || buf[k-1] != '\r' {
			return -1, from, lines
		}
		if k-1 == from {
			return k + 1, from, lines
		}
		lines++
		from = k + 1
	}
}

// tokenByte reports whether a byte may be part of a token (RFC 9110
// §5.6.2), as httpguts.ValidHeaderFieldName decides: a lookup where that
// decodes runes. Never written after it is made.
var tokenByte = func() (t [256]bool) {
	for b := 0; b < utf8.RuneSelf; b++ {
		t[b] = httpguts.IsTokenRune(rune(b))
	}
	return t
}()
