package origin

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

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
		// would wait for bytes http.ReadResponse does not need).
		buf, _ := br.Peek(br.Buffered())
		i, j := bytes.Index(buf, []byte("\n\r\n")), bytes.Index(buf, []byte("\n\n"))
		if j >= 0 && (i < 0 || j < i) || i == 0 || i > 0 && buf[i-1] != '\r' {
			return nil, false
		}
		if i > 0 {
			head = buf[:i+3]
			break
		}
		if br.Buffered() >= br.Size() {
			return nil, false
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return nil, false
		}
	}
	if bytes.IndexByte(head, '\n') < 0 {
		return nil, false
	}
	s := string(head)
	// The status line.
	eol := strings.Index(s, "\r\n")
	line := s[:eol]
	if len(line) < 12 || line[:9] != "HTTP/1.1 " || (len(line) > 12 && line[12] != ' ') {
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
	for i := 0; i < len(line); i++ {
		if b := line[i]; b < ' ' || b == 0x7f {
			return nil, false
		}
	}
	// The field lines.
	rest := s[eol+2 : len(s)-2]
	n := strings.Count(rest, "\r\n")
	if strings.Count(rest, "\n") != n || strings.Count(rest, "\r") != n {
		return nil, false // a bare CR or LF
	}
	h := make(http.Header, n)
	values := make([]string, n)
	length := int64(-1)
	for i := 0; len(rest) > 0; i++ {
		eol := strings.Index(rest, "\r\n")
		line := rest[:eol]
		rest = rest[eol+2:]
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return nil, false
		}
		name, value := line[:colon], strings.Trim(line[colon+1:], " \t")
		if !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(value) {
			return nil, false
		}
		if !isCanonicalKey(name) {
			name = textproto.CanonicalMIMEHeaderKey(name)
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
		Status:        line[9:],
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		ContentLength: length,
		Request:       req,
	}, true
}

// isCanonicalKey reports whether name, a valid field name, is in its
// canonical form: upper case first and after each dash, lower case
// elsewhere.
func isCanonicalKey(name string) bool {
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}
