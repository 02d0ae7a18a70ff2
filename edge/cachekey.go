package edge

import (
	"fmt"
	"slices"
	"strings"
)

// CacheKeyConfig shapes the query part of a site's cache keys. The zero
// value keys on the request target byte for byte.
type CacheKeyConfig struct {
	// Query is how the query string enters the key: "as_sent" (default),
	// "sorted" (parameters in order, so that ?a=1&b=2 and ?b=2&a=1 share
	// an entry) or "ignore" (the key is the path alone).
	Query string `yaml:"query"`
	// IgnoreParams are query parameters left out of the key, by name as
	// sent; a trailing * matches any suffix ("utm_*"). Marketing and
	// click-tracking parameters are the usual ones: requests that differ
	// only in them share an entry. Default none.
	//
	// What is left out of the key is left out of the request to the
	// origin too (GET and HEAD): the origin gets the query as keyed, so
	// that it never answers a parameter the key did not account for.
	IgnoreParams []string `yaml:"ignore_params"`
	// Separators are the characters that separate query parameters, as
	// the origin splits them: "&" (default) or "&;" for an origin that
	// also splits on ';' (some frameworks do). With "&", a parameter that
	// contains ';' is never ignored, so that ?utm_x=1;id=2 cannot hide an
	// id from the key (parameter cloaking).
	Separators string `yaml:"separators"`
}

// Query handling of a site's cache keys (CacheKeyConfig.Query).
const (
	KeyQueryAsSent = "as_sent"
	KeyQuerySorted = "sorted"
	KeyQueryIgnore = "ignore"
)

// withDefaults fills in the default Query.
func (c CacheKeyConfig) withDefaults() CacheKeyConfig {
	if c.Query == "" {
		c.Query = KeyQueryAsSent
	}
	if c.Separators == "" {
		c.Separators = "&"
	}
	return c
}

// validate names the first bad field, under prefix.
func (c CacheKeyConfig) validate(prefix string) error {
	switch c.Query {
	case KeyQueryAsSent, KeyQuerySorted, KeyQueryIgnore:
	default:
		return fmt.Errorf("%s.query: %q (want %s, %s or %s)", prefix, c.Query, KeyQueryAsSent, KeyQuerySorted, KeyQueryIgnore)
	}
	switch c.Separators {
	case "", "&", "&;", ";&":
	default:
		return fmt.Errorf("%s.separators: %q (want \"&\" or \"&;\")", prefix, c.Separators)
	}
	for i, p := range c.IgnoreParams {
		name := strings.TrimSuffix(p, "*")
		if name == "" && p != "*" || strings.ContainsAny(name, "*&=#? \t") {
			return fmt.Errorf("%s.ignore_params[%d]: %q is not a parameter name (a trailing * may end it)", prefix, i, p)
		}
	}
	return nil
}

// rewrites reports whether the config changes any key.
func (c CacheKeyConfig) rewrites() bool {
	return c.Query != KeyQueryAsSent && c.Query != "" || len(c.IgnoreParams) > 0
}

// target returns the request target as it enters the key: the path as
// sent, and the query as c says (see query).
func (c CacheKeyConfig) target(t string) string {
	if !c.rewrites() {
		return t
	}
	path, q, hasQuery := strings.Cut(t, "?")
	if !hasQuery {
		return t
	}
	if q, hasQuery = c.query(q, true); !hasQuery {
		return path
	}
	return path + "?" + q
}

// query returns a raw query (present: the target has a "?") as it enters
// the key and goes to the origin. Parameters are compared as sent (not
// decoded), split on the configured separators and joined with '&';
// empty ones are dropped, and a query left empty drops its "?" (present
// false). A parameter that contains ';' when ';' is not a separator is
// kept whatever its name: an origin might split it, and what it would
// find inside must be in the key.
func (c CacheKeyConfig) query(q string, present bool) (string, bool) {
	if !c.rewrites() || !present {
		return q, present
	}
	if c.Query == KeyQueryIgnore {
		return "", false
	}
	seps := c.Separators
	if seps == "" {
		seps = "&"
	}
	params := strings.FieldsFunc(q, func(r rune) bool { return strings.ContainsRune(seps, r) })
	kept := params[:0]
	splitsSemicolon := strings.IndexByte(seps, ';') >= 0
	for _, p := range params {
		if !c.ignored(p) || !splitsSemicolon && strings.IndexByte(p, ';') >= 0 {
			kept = append(kept, p)
		}
	}
	if c.Query == KeyQuerySorted {
		slices.Sort(kept)
	}
	if len(kept) == 0 {
		return "", false
	}
	return strings.Join(kept, "&"), true
}

// ignored reports whether the parameter p (name=value) is one of
// IgnoreParams.
func (c CacheKeyConfig) ignored(p string) bool {
	name, _, _ := strings.Cut(p, "=")
	for _, pat := range c.IgnoreParams {
		if prefix, ok := strings.CutSuffix(pat, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if name == pat {
			return true
		}
	}
	return false
}
