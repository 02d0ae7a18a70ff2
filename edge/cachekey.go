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
	IgnoreParams []string `yaml:"ignore_params"`
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
	return c
}

// validate names the first bad field, under prefix.
func (c CacheKeyConfig) validate(prefix string) error {
	switch c.Query {
	case KeyQueryAsSent, KeyQuerySorted, KeyQueryIgnore:
	default:
		return fmt.Errorf("%s.query: %q (want %s, %s or %s)", prefix, c.Query, KeyQueryAsSent, KeyQuerySorted, KeyQueryIgnore)
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
	return c.Query != KeyQueryAsSent || len(c.IgnoreParams) > 0
}

// target returns the request target as it enters the key: the path as
// sent, and the query as c says. Parameters are compared as sent (not
// decoded), and a query left empty drops its "?".
func (c CacheKeyConfig) target(t string) string {
	if !c.rewrites() {
		return t
	}
	path, query, hasQuery := strings.Cut(t, "?")
	if !hasQuery {
		return t
	}
	if c.Query == KeyQueryIgnore {
		return path
	}
	params := strings.Split(query, "&")
	kept := params[:0]
	for _, p := range params {
		if p != "" && !c.ignored(p) {
			kept = append(kept, p)
		}
	}
	if c.Query == KeyQuerySorted {
		slices.Sort(kept)
	}
	if len(kept) == 0 {
		return path
	}
	return path + "?" + strings.Join(kept, "&")
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
