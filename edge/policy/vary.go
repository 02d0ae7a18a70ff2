package policy

import (
	"net/http"
	"net/textproto"
	"slices"
)

// VaryFields returns the canonicalised, sorted, de-duplicated field names of
// a Vary header (nil if none); members that are not valid field names are
// skipped. A "*" member gives ok=false: the response can never be served
// from cache.
func VaryFields(vary []string) (fields []string, ok bool) {
	fields, ok = appendVary(nil, vary)
	if !ok || len(fields) == 0 {
		return nil, ok
	}
	return fields, true
}

// appendVary appends Vary's canonical field names to dst, sorted and
// de-duplicated; ok=false on "*".
func appendVary(dst []string, vary []string) ([]string, bool) {
	for _, line := range vary {
		for rest := line; rest != ""; {
			var item string
			item, rest = cutComma(rest)
			item = trimOWS(item)
			switch item {
			case "":
				continue
			case "*":
				return nil, false
			}
			if !isToken(item) {
				continue // not a field name: no request can carry it
			}
			dst = append(dst, textproto.CanonicalMIMEHeaderKey(item))
		}
	}
	slices.Sort(dst)
	return slices.Compact(dst), true
}

// SecondaryKey returns the normalised values of the request fields named by
// the response's Vary, for the secondary cache key. ok=false for Vary: *
// (never served from cache).
//
// vary may be the raw Vary field lines or the result of VaryFields: the key
// is the same. The same inputs in a different field order or name case
// produce the same key. A field's lines are joined with ",", and each
// comma-separated element is trimmed of whitespace with empty elements
// dropped (so "gzip, br" and "gzip,br" and two lines "gzip" and "br" agree).
// An absent field and an empty one give different keys (RFC 9111 §4.1).
// The key is unambiguous: names and values are escaped.
func SecondaryKey(vary []string, reqHeader http.Header) (key string, ok bool) {
	var arr [16]string
	fields, ok := appendVary(arr[:0], vary)
	if !ok {
		return "", false
	}
	if len(fields) == 0 {
		return "", true
	}
	var buf [256]byte
	b := buf[:0]
	for _, f := range fields {
		b = appendEscaped(b, f)
		lines, present := reqHeader[f]
		if !present {
			b = append(b, '\n')
			continue
		}
		b = append(b, ':')
		first := true
		for _, l := range lines {
			for rest := l; rest != ""; {
				var item string
				item, rest = cutComma(rest)
				item = trimOWS(item)
				if item == "" {
					continue
				}
				if !first {
					b = append(b, ',')
				}
				first = false
				b = appendEscaped(b, item)
			}
		}
		b = append(b, '\n')
	}
	return string(b), true
}

// appendEscaped appends s to b with '%', ':', ',' and control bytes
// percent-encoded, so they cannot be confused with the key's separators.
func appendEscaped(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' || c == ':' || c == ',' || c < 0x20 || c == 0x7f {
			b = append(b, '%', hex[c>>4], hex[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}
