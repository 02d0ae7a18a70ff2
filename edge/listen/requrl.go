package listen

import "net/url"

// parseOriginForm sets *u to what url.ParseRequestURI makes of target and
// reports true, when target is an origin-form target whose URL it can
// build without decoding: a path starting with '/' with no '%', then an
// optional '?' and query, no control byte anywhere. For anything else
// (an empty target, "*", absolute-form, a '%' in the path, a control
// byte) it reports false with *u untouched, and the caller asks
// url.ParseRequestURI.
//
// It exists so that a miss's URL lives in an allocation the request
// makes anyway (the reqContext) instead of one of its own, and the
// general parse is skipped: BenchmarkNewRequest 5 allocations, was 6,
// and about 890 CPU ns, was about 980 (medians of 8 interleaved runs);
// an all-miss edge makes one allocation fewer per miss.
// FuzzParseOriginForm compares it with url.ParseRequestURI.
//
// For such a target ParseRequestURI finds no scheme (a '/' cannot start
// one) and no authority (a request's "//x" is a path), cuts the query at
// the first '?' (a lone trailing '?' is ForceQuery instead), and sets
// Path to the path as it is (without '%' there is nothing to unescape)
// and RawPath to it too when url's own escaping of it would differ, that
// is when a byte of it is one the path encoding escapes.
func parseOriginForm(target string, u *url.URL) bool {
	if target == "" || target[0] != '/' {
		return false
	}
	q := -1       // where the query's '?' is
	plain := true // no byte of the path that url escapes
	for i := 0; i < len(target); i++ {
		b := target[i]
		if b < ' ' || b == 0x7f {
			return false // ParseRequestURI refuses control bytes
		}
		if q < 0 {
			switch {
			case b == '?':
				q = i
			case b == '%':
				return false
			case !pathByte[b]:
				plain = false
			}
		}
	}
	path, query, force := target, "", false
	if q >= 0 {
		path, query = target[:q], target[q+1:]
		force = q == len(target)-1 // the only '?', last: "/a?"
	}
	raw := ""
	if !plain {
		raw = path
	}
	*u = url.URL{Path: path, RawPath: raw, RawQuery: query, ForceQuery: force}
	return true
}

// pathByte holds the bytes that url's path encoding leaves as they are
// (net/url's shouldEscape(c, encodePath) is false; '%' aside, which
// parseOriginForm never lets through): unreserved, '/' and the
// sub-delims and ':' '@' that net/url keeps in a path.
// TestPathByteAsNetURL checks it against net/url for every byte.
var pathByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range []byte("-._~/$&+,:;=@") {
		t[c] = true
	}
	return t
}()
