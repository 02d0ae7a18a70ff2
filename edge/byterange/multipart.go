package byterange

import (
	"fmt"
	"io"
)

// defaultBoundary is used when Multipart.Boundary is empty or not a valid
// RFC 2046 boundary. Callers should supply a boundary that cannot occur in
// the body.
const defaultBoundary = "MERIDIAN_BYTERANGES_7d3f0a9c51e2b846"

// Multipart describes a multipart/byteranges body (RFC 9110 §14.6).
type Multipart struct {
	// Ranges are the parts, in order, as returned by Parse.
	Ranges []Range
	// Size is the representation's length, for each part's Content-Range.
	Size int64
	// ContentType is each part's Content-Type; omitted when empty or
	// when it contains control characters.
	ContentType string
	// Boundary separates the parts: 1 to 70 RFC 2046 bchars, not ending
	// in a space. Empty or invalid → a fixed default.
	Boundary string
}

// boundary is the boundary actually used.
func (m Multipart) boundary() string {
	if validBoundary(m.Boundary) {
		return m.Boundary
	}
	return defaultBoundary
}

// contentType is the part Content-Type actually written, "" for none.
func (m Multipart) contentType() string {
	for i := 0; i < len(m.ContentType); i++ {
		if c := m.ContentType[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return ""
		}
	}
	return m.ContentType
}

// ContentTypeHeader returns the response's Content-Type field value,
// "multipart/byteranges; boundary=...", quoting the boundary if needed.
func (m Multipart) ContentTypeHeader() string {
	b := m.boundary()
	if isTokenString(b) {
		return "multipart/byteranges; boundary=" + b
	}
	return `multipart/byteranges; boundary="` + b + `"`
}

// ContentLength returns the exact number of bytes WriteTo writes.
func (m Multipart) ContentLength() int64 {
	var n int64
	var buf [128]byte
	for _, r := range m.Ranges {
		n += int64(len(m.appendPartHeader(buf[:0], r))) + r.Length + 2 // CRLF after data
	}
	return n + int64(len(m.boundary())) + 6 // "--" boundary "--" CRLF
}

// appendPartHeader appends a part's delimiter and header block to b.
func (m Multipart) appendPartHeader(b []byte, r Range) []byte {
	b = append(b, "--"...)
	b = append(b, m.boundary()...)
	b = append(b, "\r\n"...)
	if ct := m.contentType(); ct != "" {
		b = append(b, "Content-Type: "...)
		b = append(b, ct...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Content-Range: "...)
	b = r.appendContentRange(b, m.Size)
	return append(b, "\r\n\r\n"...)
}

// WriteTo writes the multipart/byteranges body to w, reading each range
// from body. It returns the bytes written; a body shorter than a range gives
// io.ErrUnexpectedEOF.
func (m Multipart) WriteTo(w io.Writer, body io.ReaderAt) (int64, error) {
	var total int64
	buf := make([]byte, 0, 256)
	for i, r := range m.Ranges {
		buf = m.appendPartHeader(buf[:0], r)
		n, err := w.Write(buf)
		total += int64(n)
		if err != nil {
			return total, fmt.Errorf("byterange: part %d header: %w", i, err)
		}
		c, err := io.Copy(w, io.NewSectionReader(body, r.Start, r.Length))
		total += c
		if err != nil {
			return total, fmt.Errorf("byterange: part %d (%s): %w", i, r.ContentRange(m.Size), err)
		}
		if c != r.Length {
			return total, fmt.Errorf("byterange: part %d (%s): %w", i, r.ContentRange(m.Size), io.ErrUnexpectedEOF)
		}
		n, err = io.WriteString(w, "\r\n")
		total += int64(n)
		if err != nil {
			return total, fmt.Errorf("byterange: part %d trailer: %w", i, err)
		}
	}
	n, err := io.WriteString(w, "--"+m.boundary()+"--\r\n")
	total += int64(n)
	if err != nil {
		return total, fmt.Errorf("byterange: closing delimiter: %w", err)
	}
	return total, nil
}

// validBoundary reports an RFC 2046 boundary: 1-70 bchars, last not space.
func validBoundary(b string) bool {
	if len(b) == 0 || len(b) > 70 || b[len(b)-1] == ' ' {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		default:
			switch c {
			case '\'', '(', ')', '+', '_', ',', '-', '.', '/', ':', '=', '?', ' ':
			default:
				return false
			}
		}
	}
	return true
}

// isTokenString reports whether a valid boundary needs no quoting as a
// parameter value: it holds none of the RFC 2045 tspecials (or space) that
// RFC 2046 allows in a boundary.
func isTokenString(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(', ')', ',', '/', ':', '=', '?', ' ':
			return false
		}
	}
	return s != ""
}
