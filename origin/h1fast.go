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
// http.ReadResponse reads the answer (FuzzResponse compares the two).
func readSimpleResponse(br *bufio.Reader, req *http.Request) (*http.Response, bool) {
	if req.Method != http.MethodGet && req.Method != "" {
		return nil, false
	}
	var head []byte
	for {
		// The head ends at the first empty line, however its lines
		// end; only one ending in CRLF CRLF is read here, and more is
		// read only while the head has not ended by any rule (else this
		// would wait for bytes http.ReadResponse does not need). A
		// bare-LF end ("\n\n") counts only before the CRLF one, so it
		// is looked for within the head, not through the body after it.
		buf, _ := br.Peek(br.Buffered())
		i := bytes.Index(buf, []byte("\n\r\n"))
		if i == 0 || i > 0 && buf[i-1] != '\r' {
			return nil, false
		}
		if i > 0 {
			if bytes.Index(buf[:i+1], []byte("\n\n")) >= 0 {
				return nil, false
			}
			head = buf[:i+3]
			break
		}
		if bytes.Index(buf, []byte("\n\n")) >= 0 || br.Buffered() >= br.Size() {
			return nil, false
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return nil, false
		}
	}
	// The status line, checked before the head is copied. Each line ends
	// at its LF, which must follow a CR; a CR or LF anywhere else is a
	// control byte that the checks of the line, name or value refuse.
	eol := bytes.IndexByte(head, '\n')
	if eol < 1 || head[eol-1] != '\r' {
		return nil, false
	}
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
	// The field lines: one per LF but the status line's and the empty
	// line's.
	rest := s[eol+1 : len(s)-2]
	n := strings.Count(rest, "\n")
	h := make(http.Header, n)
	values := make([]string, n)
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
	return &http.Response{
		Status:        status,
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		ContentLength: length,
		Request:       req,
	}, true
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
