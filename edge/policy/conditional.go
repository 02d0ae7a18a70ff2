package policy

import (
	"net/http"
	"time"
)

// HasPreconditions reports whether reqHeader has a field that
// CheckPreconditions reads: without one it returns 0 for any stored
// representation, so that a caller need not look up the validators.
func HasPreconditions(reqHeader http.Header) bool {
	for _, name := range [...]string{"If-Match", "If-Unmodified-Since", "If-None-Match", "If-Modified-Since"} {
		if _, ok := reqHeader[name]; ok {
			return true
		}
	}
	return false
}

// CheckPreconditions evaluates a client's conditional request against a
// stored representation, in the order of RFC 9110 §13.2.2: If-Match,
// If-Unmodified-Since, If-None-Match, If-Modified-Since. It returns 304,
// 412, or 0 (no condition applies: serve normally).
//
// etag is the stored ETag field value ("" if none), lastModified the parsed
// Last-Modified (zero if none). If-Match uses the strong comparison,
// If-None-Match the weak one; "*" matches (the stored representation
// exists). If-Unmodified-Since is ignored when If-Match is present, and
// If-Modified-Since when If-None-Match is present or the method is not GET
// or HEAD. A date condition is ignored when the date is not a valid
// HTTP-date (ParseHTTPDate: RFC 9110 §13.1.3, §13.1.4), the field has
// several lines, or lastModified is zero. The century of an rfc850-date in
// a condition is resolved against lastModified, the only time it is
// compared with.
func CheckPreconditions(method string, reqHeader http.Header, etag string, lastModified time.Time) int {
	getOrHead := method == http.MethodGet || method == http.MethodHead
	stored, hasTag := parseETag(trimOWS(etag))
	if im, ok := reqHeader["If-Match"]; ok {
		if !matchETags(im, stored, hasTag, true) {
			return http.StatusPreconditionFailed
		}
	} else if t, ok := singleDate(reqHeader["If-Unmodified-Since"], lastModified); ok && !lastModified.IsZero() {
		if lastModified.Unix() > t.Unix() {
			return http.StatusPreconditionFailed
		}
	}
	if inm, ok := reqHeader["If-None-Match"]; ok {
		if matchETags(inm, stored, hasTag, false) {
			if getOrHead {
				return http.StatusNotModified
			}
			return http.StatusPreconditionFailed
		}
		return 0
	}
	if !getOrHead || lastModified.IsZero() {
		return 0
	}
	if t, ok := singleDate(reqHeader["If-Modified-Since"], lastModified); ok && lastModified.Unix() <= t.Unix() {
		return http.StatusNotModified
	}
	return 0
}

// singleDate parses a date field that must have exactly one line.
func singleDate(lines []string, now time.Time) (time.Time, bool) {
	if len(lines) != 1 {
		return time.Time{}, false
	}
	return ParseHTTPDate(trimOWS(lines[0]), now)
}

// eTag is a parsed entity-tag.
type eTag struct {
	weak   bool
	opaque string // without the quotes
}

// parseETag parses one entity-tag: [W/] DQUOTE *etagc DQUOTE.
func parseETag(s string) (eTag, bool) {
	var t eTag
	if len(s) >= 2 && s[0] == 'W' && s[1] == '/' {
		t.weak = true
		s = s[2:]
	}
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return eTag{}, false
	}
	t.opaque = s[1 : len(s)-1]
	for i := 0; i < len(t.opaque); i++ {
		if c := t.opaque[i]; c == '"' || c < 0x21 && c != 0 || c == 0x7f || c == 0 {
			return eTag{}, false
		}
	}
	return t, true
}

// matchETags reports whether any member of an If-Match / If-None-Match
// field matches the stored tag: "*" always does (the representation
// exists); otherwise strong or weak comparison (RFC 9110 §8.8.3.2).
// Malformed members are skipped.
func matchETags(lines []string, stored eTag, hasTag, strong bool) bool {
	for _, l := range lines {
		i := 0
		for i < len(l) {
			for i < len(l) && (l[i] == ',' || isOWS(l[i])) {
				i++
			}
			if i >= len(l) {
				break
			}
			start := i
			if l[i] == '*' {
				i++
			} else {
				if l[i] == 'W' && i+1 < len(l) && l[i+1] == '/' {
					i += 2
				}
				if i < len(l) && l[i] == '"' {
					i++
					for i < len(l) && l[i] != '"' {
						i++
					}
					if i < len(l) {
						i++
					}
				}
			}
			member := l[start:i]
			// A member must end at OWS or a comma; else skip the garbage.
			clean := true
			for i < len(l) && l[i] != ',' {
				if !isOWS(l[i]) {
					clean = false
				}
				i++
			}
			if !clean {
				continue
			}
			if member == "*" {
				return true
			}
			t, ok := parseETag(member)
			if !ok || !hasTag || t.opaque != stored.opaque {
				continue
			}
			if !strong || (!t.weak && !stored.weak) {
				return true
			}
		}
	}
	return false
}
