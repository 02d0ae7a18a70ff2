package rules

import (
	"fmt"
	"net/url"
	"path"
	"strings"
)

// PathMatch is the path condition of a rule: both of its fields must
// hold, and an empty one holds for every path. Paths are compared after
// CleanPath, case-sensitively.
type PathMatch struct {
	// Prefix holds for paths that start with it ("/static/"). Default
	// "": every path.
	Prefix string `yaml:"prefix"`
	// Path is a glob the whole path must match: '*' matches any run of
	// characters, '/' included ("/static/*", "*.css"), '?' one
	// character; every other character matches itself. Default "":
	// every path.
	Path string `yaml:"path"`
}

// Matches reports whether the cleaned path p meets the condition.
func (m PathMatch) Matches(p string) bool {
	return strings.HasPrefix(p, m.Prefix) && (m.Path == "" || Glob(m.Path, p))
}

// validate names a bad field under prefix (ending in '.' or empty).
func (m PathMatch) validate(prefix string) error {
	if m.Prefix != "" {
		if err := checkPattern(m.Prefix); err != nil {
			return fmt.Errorf("%sprefix: %w", prefix, err)
		}
		if strings.ContainsAny(m.Prefix, "*?") {
			return fmt.Errorf("%sprefix: %q: a prefix has no wildcards (use path for a glob)", prefix, m.Prefix)
		}
	}
	if m.Path != "" {
		if err := checkPattern(m.Path); err != nil {
			return fmt.Errorf("%spath: %w", prefix, err)
		}
	}
	return nil
}

// maxPattern bounds a prefix or glob's length.
const maxPattern = 1024

// checkPattern checks a prefix or glob: it starts with '/' or '*' (a path
// is absolute), is at most 1 KiB and has no control characters, spaces
// or '#'.
func checkPattern(p string) error {
	switch {
	case len(p) > maxPattern:
		return fmt.Errorf("longer than %d bytes", maxPattern)
	case p[0] != '/' && p[0] != '*':
		return fmt.Errorf("%q: must start with / (or * in a glob)", p)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c == 0x7f || c == '#' {
			return fmt.Errorf("%q: character %q not allowed", p, c)
		}
	}
	return nil
}

// Glob reports whether the whole of s matches pattern, where '*' matches
// any run of bytes ('/' included) and '?' any one byte. It runs in
// O(len(pattern)·len(s)) time at worst and allocates nothing.
func Glob(pattern, s string) bool {
	px, sx := 0, 0
	// The last '*' seen and the position in s it resumes from.
	starPx, starSx := -1, 0
	for sx < len(s) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				starPx, starSx = px, sx
				px++
				continue
			case '?':
				px++
				sx++
				continue
			default:
				if c == s[sx] {
					px++
					sx++
					continue
				}
			}
		}
		if starPx < 0 {
			return false
		}
		// Let the last '*' take one more byte and retry after it.
		starSx++
		px, sx = starPx+1, starSx
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}

// CleanPath is the form of a decoded request path that rule conditions
// match: dot segments resolved and repeated slashes merged (path.Clean),
// a trailing slash kept, "" taken as "/". A path that does not start
// with '/' (the "*" of OPTIONS *) is returned as it is.
func CleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		return p
	}
	if !needsClean(p) {
		return p
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// needsClean reports whether p (starting with '/') has a "//", a "."
// or a ".." segment: most paths have none and are returned as they are.
func needsClean(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] != '/' || i+1 >= len(p) {
			continue
		}
		switch rest := p[i+1:]; {
		case rest[0] == '/':
			return true
		case rest[0] == '.':
			if len(rest) == 1 || rest[1] == '/' || rest[1] == '.' && (len(rest) == 2 || rest[2] == '/') {
				return true
			}
		}
	}
	return false
}

// unescapePath decodes a raw path, or returns it as it is when it does
// not decode.
func unescapePath(raw string) string {
	u, err := url.ParseRequestURI(raw)
	if err != nil || u.Path == "" {
		return raw
	}
	return u.Path
}
