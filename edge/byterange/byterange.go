// Package byterange parses HTTP Range requests (RFC 9110 §14) and writes
// 206 partial and multipart/byteranges bodies.
package byterange

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meridiancdn/meridian/edge/policy"
)

// MaxRanges is the most range-specs a Range field may hold; more is treated
// as abuse and the field is ignored (ErrInvalid).
const MaxRanges = 16

var (
	// ErrInvalid means the Range field is to be ignored and the whole
	// representation sent with 200 (RFC 9110 §14.2): a syntax error, a unit
	// other than "bytes", more than MaxRanges ranges, ranges that add up to
	// more than the representation, or a satisfiable suffix range of an
	// empty representation (a 206 cannot describe zero bytes).
	ErrInvalid = errors.New("byterange: invalid or ignored Range")
	// ErrUnsatisfiable means no range overlaps the representation: the
	// caller sends 416 with Content-Range: bytes */size.
	ErrUnsatisfiable = errors.New("byterange: range not satisfiable")
)

// Range is a satisfiable byte range: Length bytes from offset Start.
type Range struct{ Start, Length int64 }

// Parse parses a Range field value against a representation of size bytes.
// It supports first-last, first- and -suffix range-specs, several of them
// separated by commas; the unit name is case-insensitive.
//
// The ranges returned are satisfiable, lie within [0, size), are sorted by
// Start, and overlapping or adjacent ranges are coalesced. Unsatisfiable
// specs are dropped; if none is left the error is ErrUnsatisfiable. As a
// defence against abuse (RFC 9110 §14.2, CVE-2011-3192), more than
// MaxRanges specs, or specs whose lengths add up to more than size, give
// ErrInvalid: serve the whole representation. Numbers too large for int64
// saturate.
func Parse(header string, size int64) ([]Range, error) {
	if size < 0 {
		return nil, ErrInvalid
	}
	s := trimOWS(header)
	const unit = "bytes="
	if len(s) < len(unit) || !equalFold(s[:len(unit)-1], "bytes") || s[len(unit)-1] != '=' {
		return nil, ErrInvalid
	}
	s = s[len(unit):]

	var (
		arr       [MaxRanges]Range
		ranges    = arr[:0]
		specs     int
		sum       int64
		emptyFull bool // a satisfiable suffix range of an empty representation
	)
	for s != "" {
		var spec string
		spec, s = cutComma(s)
		spec = trimOWS(spec)
		if spec == "" {
			continue // empty list elements are allowed (RFC 9110 §5.6.1)
		}
		if specs++; specs > MaxRanges {
			return nil, ErrInvalid
		}
		dash := -1
		for i := 0; i < len(spec); i++ {
			if spec[i] == '-' {
				dash = i
				break
			}
		}
		if dash < 0 {
			return nil, ErrInvalid
		}
		first, last := spec[:dash], spec[dash+1:]
		var r Range
		if first == "" {
			n, ok := parseNum(last)
			if !ok {
				return nil, ErrInvalid
			}
			if n == 0 {
				continue // unsatisfiable
			}
			if size == 0 {
				emptyFull = true
				continue
			}
			n = min(n, size)
			r = Range{Start: size - n, Length: n}
		} else {
			a, ok := parseNum(first)
			if !ok {
				return nil, ErrInvalid
			}
			b := int64(math.MaxInt64)
			if last != "" {
				if b, ok = parseNum(last); !ok || b < a {
					return nil, ErrInvalid
				}
			}
			if a >= size {
				continue // unsatisfiable
			}
			b = min(b, size-1)
			r = Range{Start: a, Length: b - a + 1}
		}
		if r.Length > size-sum {
			return nil, ErrInvalid
		}
		sum += r.Length
		ranges = append(ranges, r)
	}
	if specs == 0 {
		return nil, ErrInvalid
	}
	if len(ranges) == 0 {
		if emptyFull {
			return nil, ErrInvalid
		}
		return nil, ErrUnsatisfiable
	}
	return coalesce(ranges), nil
}

// coalesce sorts ranges and merges overlapping or adjacent ones, returning
// a new slice.
func coalesce(rs []Range) []Range {
	slices.SortFunc(rs, func(a, b Range) int {
		switch {
		case a.Start < b.Start:
			return -1
		case a.Start > b.Start:
			return 1
		}
		return 0
	})
	out := make([]Range, 0, len(rs))
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if end := last.Start + last.Length; r.Start <= end {
				if e := r.Start + r.Length; e > end {
					last.Length = e - last.Start
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// ParseContentRange parses the Content-Range of a 206 answer, "bytes
// first-last/complete" (RFC 9110 §14.4), whose complete length is known.
// ok is false for anything else: another unit, the unsatisfied form
// ("bytes */n"), an unknown length ("/*"), a sign or space in a number,
// a number past int64, last < first, or complete <= last.
func ParseContentRange(v string) (first, last, complete int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, size, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, z, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	first, ok1 := parseExact(a)
	last, ok2 := parseExact(z)
	complete, ok3 := parseExact(size)
	if !ok1 || !ok2 || !ok3 || last < first || complete <= last {
		return 0, 0, 0, false
	}
	return first, last, complete, true
}

// parseExact parses 1*DIGIT that fits an int64 (below math.MaxInt64).
func parseExact(s string) (int64, bool) {
	n, ok := parseNum(s)
	return n, ok && n != math.MaxInt64
}

// parseNum parses 1*DIGIT, saturating at math.MaxInt64.
func parseNum(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			n = math.MaxInt64
			continue
		}
		n = n*10 + d
	}
	return n, true
}

// ContentRange returns the Content-Range field value of r in a
// representation of size bytes, e.g. "bytes 0-99/1000".
func (r Range) ContentRange(size int64) string {
	var buf [72]byte
	return string(r.appendContentRange(buf[:0], size))
}

// appendContentRange appends r.ContentRange(size) to b.
func (r Range) appendContentRange(b []byte, size int64) []byte {
	b = append(b, "bytes "...)
	b = strconv.AppendInt(b, r.Start, 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, r.Start+r.Length-1, 10)
	b = append(b, '/')
	return strconv.AppendInt(b, size, 10)
}

// IfRange reports whether an If-Range value matches the stored validators
// (RFC 9110 §13.1.5): an entity-tag matches by strong comparison (a weak
// tag never matches), an HTTP-date only when valid (policy.ParseHTTPDate,
// an rfc850-date's century resolved against lastModified) and exactly
// equal to a non-zero lastModified. An empty ifRange is true (no
// condition); anything else that does not match, an invalid date
// included, is false, so the caller ignores Range and sends 200.
func IfRange(ifRange, etag string, lastModified time.Time) bool {
	v := trimOWS(ifRange)
	if v == "" {
		return true
	}
	if v[0] == '"' || (len(v) > 1 && v[0] == 'W' && v[1] == '/') {
		a, ok := strongTag(v)
		if !ok {
			return false
		}
		b, ok := strongTag(trimOWS(etag))
		return ok && a == b
	}
	if lastModified.IsZero() {
		return false
	}
	t, ok := policy.ParseHTTPDate(v, lastModified)
	return ok && t.Unix() == lastModified.Unix()
}

// strongTag returns the opaque part of a strong entity-tag; ok=false for
// weak or malformed tags.
func strongTag(s string) (string, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", false
	}
	o := s[1 : len(s)-1]
	for i := 0; i < len(o); i++ {
		if c := o[i]; c == '"' || c <= 0x20 || c == 0x7f {
			return "", false
		}
	}
	return o, true
}

// trimOWS trims leading and trailing SP and HTAB.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// cutComma splits s at its first comma.
func cutComma(s string) (before, after string) {
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// equalFold compares ASCII strings ignoring case.
func equalFold(a, lower string) bool {
	if len(a) != len(lower) {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
