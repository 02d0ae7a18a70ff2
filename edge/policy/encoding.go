package policy

import "strings"

// knownCodings are the content codings that NormalizeAcceptEncoding keeps,
// in the order it writes them.
var knownCodings = [...]string{"br", "gzip", "zstd"}

// NormalizeAcceptEncoding reduces a request's Accept-Encoding field lines
// to a canonical value naming the content codings it accepts among br,
// gzip and zstd, so that the many ways clients spell the same wishes
// ("gzip, deflate, br, zstd", "br;q=1.0, gzip;q=0.8", ...) share one
// variant of a response that varies on Accept-Encoding, as Varnish and
// Fastly normalize it.
//
// The value asks for a subset of what the client accepts (RFC 9110
// §12.5.3), so any answer to it suits the client: the accepted codings as
// "br, gzip, zstd" (x-gzip counts as gzip, * accepts those not named),
// or "identity" when none of them is accepted, as for an empty field.
// Preference weights are dropped: the origin chooses among the codings.
//
// ok is false when the field says something the normalized value could not
// keep, identity or * refused or a malformed weight: the caller then
// leaves the field as it is.
func NormalizeAcceptEncoding(lines []string) (value string, ok bool) {
	var named, accepted [len(knownCodings)]bool
	star := false
	for _, line := range lines {
		for rest := line; rest != ""; {
			var item string
			item, rest = cutComma(rest)
			item = trimOWS(item)
			if item == "" {
				continue
			}
			coding, weight, hasWeight := strings.Cut(item, ";")
			coding = strings.ToLower(trimOWS(coding))
			q := true
			if hasWeight {
				var valid bool
				if q, valid = parseWeight(weight); !valid {
					return "", false
				}
			}
			switch coding {
			case "x-gzip":
				coding = "gzip"
			case "identity", "*":
				if !q {
					return "", false
				}
				if coding == "*" {
					star = true
				}
				continue
			}
			for i, c := range knownCodings {
				if c == coding {
					named[i] = true
					accepted[i] = accepted[i] || q
				}
			}
		}
	}
	var b strings.Builder
	for i, c := range knownCodings {
		if accepted[i] || star && !named[i] {
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(c)
		}
	}
	if b.Len() == 0 {
		return "identity", true
	}
	return b.String(), true
}

// parseWeight reads ` q=qvalue` (RFC 9110 §12.4.2) and reports whether the
// weight is above zero.
func parseWeight(s string) (positive, ok bool) {
	s = trimOWS(s)
	if len(s) < 3 || (s[0] != 'q' && s[0] != 'Q') || s[1] != '=' {
		return false, false
	}
	v := s[2:]
	switch {
	case v[0] == '1':
		if len(v) > 1 && (v[1] != '.' || len(v) > 5 || strings.Trim(v[2:], "0") != "") {
			return false, false
		}
		return true, true
	case v[0] == '0':
		if len(v) == 1 {
			return false, true
		}
		if v[1] != '.' || len(v) > 5 {
			return false, false
		}
		positive := false
		for _, c := range v[2:] {
			if c < '0' || c > '9' {
				return false, false
			}
			positive = positive || c != '0'
		}
		return positive, true
	}
	return false, false
}
