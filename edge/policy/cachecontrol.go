// Package policy decides, per RFC 9111, whether a shared cache may store a
// response, how long it stays fresh, and when it may be served stale.
//
// Everything here is pure: no I/O and no clock. Times are passed in by the
// caller, so the functions can be tested and fuzzed in isolation.
package policy

import (
	"net/textproto"
	"slices"
	"time"
)

// maxDelta is the largest delta-seconds value a cache honours; larger values
// are clamped to it (RFC 9111 §1.2.2).
const maxDelta = (1 << 31) * time.Second

// Directives is a parsed Cache-Control field, or a CDN-Cache-Control one
// (parseTargeted). Durations are -1 when absent.
type Directives struct {
	// NoStore is "no-store": the message must not be stored.
	NoStore bool
	// NoCache is unqualified "no-cache": every reuse needs validation.
	// A malformed or empty qualified form (no-cache="") counts as
	// unqualified, the more restrictive reading.
	NoCache bool
	// Private is unqualified "private": a shared cache must not store it.
	// A malformed or empty qualified form counts as unqualified.
	Private bool
	// Public is "public".
	Public bool
	// MustRevalidate is "must-revalidate".
	MustRevalidate bool
	// ProxyRevalidate is "proxy-revalidate".
	ProxyRevalidate bool
	// Immutable is "immutable" (RFC 8246).
	Immutable bool
	// OnlyIfCached is the request directive "only-if-cached".
	OnlyIfCached bool
	// NoTransform is "no-transform".
	NoTransform bool
	// MustUnderstand is "must-understand" (RFC 9111 §5.2.2.3).
	MustUnderstand bool
	// MaxStaleAny is request "max-stale" without a value.
	MaxStaleAny bool

	// NoCacheFields are the field names of qualified no-cache
	// (no-cache="Set-Cookie"), canonicalised, sorted and without
	// duplicates; nil when none.
	NoCacheFields []string
	// PrivateFields are the field names of qualified private, canonicalised,
	// sorted and without duplicates; nil when none.
	PrivateFields []string

	// MaxAge is "max-age"; -1 when absent. An invalid value (max-age=abc,
	// max-age=-1, max-age=) or duplicates that disagree give 0: the
	// response is stale (RFC 9111 §4.2.1).
	MaxAge time.Duration
	// SMaxAge is "s-maxage"; -1 when absent; invalid or conflicting → 0.
	SMaxAge time.Duration
	// StaleWhileRevalidate is "stale-while-revalidate" (RFC 5861); -1 when
	// absent; invalid → 0; duplicates → the smallest.
	StaleWhileRevalidate time.Duration
	// StaleIfError is "stale-if-error" (RFC 5861); -1 when absent;
	// invalid → 0; duplicates → the smallest.
	StaleIfError time.Duration
	// MaxStale is request "max-stale=N"; -1 when absent or valueless (see
	// MaxStaleAny); invalid → 0; duplicates → the smallest.
	MaxStale time.Duration
	// MinFresh is request "min-fresh"; -1 when absent; an invalid value is
	// ignored; duplicates → the largest.
	MinFresh time.Duration
}

// NoDirectives returns the Directives of an absent field: every flag false
// and every duration -1. It equals ParseCacheControl(nil).
func NoDirectives() Directives {
	return Directives{MaxAge: -1, SMaxAge: -1, StaleWhileRevalidate: -1, StaleIfError: -1, MaxStale: -1, MinFresh: -1}
}

// ParseCacheControl parses the field lines of a Cache-Control field
// (RFC 9111 §5.2). It never fails: names are case-insensitive, values may
// be tokens or quoted strings, unknown extensions and garbage are skipped,
// and the work is linear in the input. CDN-Cache-Control is not parsed
// this way: it is a Structured Field (parseTargeted).
func ParseCacheControl(values []string) Directives {
	d := NoDirectives()
	var p ccParser
	for _, v := range values {
		p.parse(&d, v)
	}
	if p.maxAgeConflict {
		d.MaxAge = 0
	}
	if p.sMaxAgeConflict {
		d.SMaxAge = 0
	}
	d.NoCacheFields = sortFields(d.NoCacheFields)
	d.PrivateFields = sortFields(d.PrivateFields)
	return d
}

// ccParser holds the state that spans field lines.
type ccParser struct {
	maxAgeConflict, sMaxAgeConflict bool
}

// parse adds the directives of one field line to d.
func (p *ccParser) parse(d *Directives, s string) {
	i := 0
	for i < len(s) {
		// Skip empty list elements and whitespace.
		for i < len(s) && (s[i] == ',' || isOWS(s[i])) {
			i++
		}
		if i >= len(s) {
			return
		}
		start := i
		for i < len(s) && s[i] != ',' && s[i] != '=' && !isOWS(s[i]) {
			i++
		}
		name := s[start:i]
		for i < len(s) && isOWS(s[i]) {
			i++
		}
		var (
			val      string
			hasVal   bool
			quoted   bool
			escaped  bool
			malvalue bool
		)
		if i < len(s) && s[i] == '=' {
			hasVal = true
			i++
			for i < len(s) && isOWS(s[i]) {
				i++
			}
			if i < len(s) && s[i] == '"' {
				quoted = true
				i++
				vs := i
				closed := false
				for i < len(s) {
					c := s[i]
					if c == '\\' {
						escaped = true
						i += 2
						continue
					}
					if c == '"' {
						closed = true
						break
					}
					i++
				}
				if i > len(s) {
					i = len(s)
				}
				val = s[vs:i]
				if closed {
					i++ // closing quote
				} else {
					malvalue = true
				}
			} else {
				vs := i
				for i < len(s) && s[i] != ',' && !isOWS(s[i]) {
					i++
				}
				val = s[vs:i]
			}
		}
		// Anything else before the next comma is garbage: it spoils a value.
		for i < len(s) && s[i] != ',' {
			if !isOWS(s[i]) {
				malvalue = true
				if s[i] == '"' {
					i = skipQuoted(s, i)
					continue
				}
			}
			i++
		}
		if quoted && escaped {
			val = unescape(val)
		}
		p.directive(d, name, val, hasVal, malvalue)
	}
}

// directive records one parsed directive.
func (p *ccParser) directive(d *Directives, name, val string, hasVal, bad bool) {
	switch len(name) {
	case 6:
		if eq(name, "public") {
			d.Public = true
		}
	case 7:
		switch {
		case eq(name, "max-age"):
			n := delta(val, hasVal, bad)
			if d.MaxAge >= 0 && d.MaxAge != n {
				p.maxAgeConflict = true
			}
			d.MaxAge = n
		case eq(name, "private"):
			if !hasVal {
				d.Private = true
				return
			}
			var ok bool
			if d.PrivateFields, ok = appendFields(d.PrivateFields, val, bad); !ok {
				d.Private = true
			}
		}
	case 8:
		switch {
		case eq(name, "no-store"):
			d.NoStore = true
		case eq(name, "no-cache"):
			if !hasVal {
				d.NoCache = true
				return
			}
			var ok bool
			if d.NoCacheFields, ok = appendFields(d.NoCacheFields, val, bad); !ok {
				d.NoCache = true
			}
		case eq(name, "s-maxage"):
			n := delta(val, hasVal, bad)
			if d.SMaxAge >= 0 && d.SMaxAge != n {
				p.sMaxAgeConflict = true
			}
			d.SMaxAge = n
		}
	case 9:
		switch {
		case eq(name, "immutable"):
			d.Immutable = true
		case eq(name, "max-stale"):
			if !hasVal {
				d.MaxStaleAny = true
				return
			}
			d.MaxStale = minDur(d.MaxStale, delta(val, hasVal, bad))
		case eq(name, "min-fresh"):
			if n, ok := parseDelta(val); ok && hasVal && !bad && n > d.MinFresh {
				d.MinFresh = n
			}
		}
	case 12:
		if eq(name, "no-transform") {
			d.NoTransform = true
		}
	case 14:
		switch {
		case eq(name, "only-if-cached"):
			d.OnlyIfCached = true
		case eq(name, "stale-if-error"):
			d.StaleIfError = minDur(d.StaleIfError, delta(val, hasVal, bad))
		}
	case 15:
		switch {
		case eq(name, "must-revalidate"):
			d.MustRevalidate = true
		case eq(name, "must-understand"):
			d.MustUnderstand = true
		}
	case 16:
		if eq(name, "proxy-revalidate") {
			d.ProxyRevalidate = true
		}
	case 22:
		if eq(name, "stale-while-revalidate") {
			d.StaleWhileRevalidate = minDur(d.StaleWhileRevalidate, delta(val, hasVal, bad))
		}
	}
}

// eq reports whether name equals the lower-case directive want, ignoring
// ASCII case. Unlike strings.EqualFold it folds nothing beyond ASCII, so
// "ſ" (U+017F) does not match "s".
func eq(name, want string) bool {
	if len(name) != len(want) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

// delta is the value of a delta-seconds directive, 0 when invalid.
func delta(val string, hasVal, bad bool) time.Duration {
	if !hasVal || bad {
		return 0
	}
	n, ok := parseDelta(val)
	if !ok {
		return 0
	}
	return n
}

// parseDelta parses delta-seconds (1*DIGIT), clamping at 2^31 seconds.
func parseDelta(s string) (time.Duration, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n <= 1<<31 {
			n = n*10 + int64(c-'0')
		}
	}
	if n > 1<<31 {
		n = 1 << 31
	}
	return time.Duration(n) * time.Second, true
}

// minDur returns the smaller of a present (≥0) old value and v.
func minDur(old, v time.Duration) time.Duration {
	if old >= 0 && old < v {
		return old
	}
	return v
}

// maxQualifiedFields bounds the field names kept for each of qualified
// no-cache and private; a longer list is treated as unqualified, the
// restrictive reading, so a hostile field cannot make the parser allocate
// without bound.
const maxQualifiedFields = 128

// appendFields appends the canonical field names of a qualified directive's
// list to dst. ok is false when the value is malformed, names no valid
// field, or takes dst past maxQualifiedFields; the caller then treats the
// directive as unqualified.
func appendFields(dst []string, val string, bad bool) ([]string, bool) {
	if bad {
		return dst, false
	}
	n := 0
	for rest := val; rest != ""; {
		var item string
		item, rest = cutComma(rest)
		item = trimOWS(item)
		if item == "" {
			continue
		}
		if !isToken(item) || len(dst) >= maxQualifiedFields {
			return dst, false
		}
		dst = append(dst, textproto.CanonicalMIMEHeaderKey(item))
		n++
	}
	return dst, n > 0
}

// sortFields sorts and de-duplicates field names in place.
func sortFields(f []string) []string {
	if len(f) < 2 {
		return f
	}
	slices.Sort(f)
	return slices.Compact(f)
}

// skipQuoted returns the index after the quoted string starting at s[i].
func skipQuoted(s string, i int) int {
	for i++; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(s)
}

// unescape removes quoted-pair backslashes from a quoted-string's content.
func unescape(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b = append(b, s[i])
	}
	return string(b)
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

// isOWS reports whether c is optional whitespace (SP or HTAB).
func isOWS(c byte) bool { return c == ' ' || c == '\t' }

// trimOWS trims leading and trailing SP and HTAB.
func trimOWS(s string) string {
	for len(s) > 0 && isOWS(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isOWS(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// isToken reports whether s is a non-empty RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !IsTchar(s[i]) {
			return false
		}
	}
	return true
}

// IsTchar reports whether c is an RFC 9110 tchar (a byte of a token, such
// as a field name or a directive).
func IsTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
