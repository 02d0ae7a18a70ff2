package rules

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// HeadersConfig is a site's header rules. Every rule whose conditions
// hold applies, in the order listed; within a rule, remove comes first,
// then set, then add.
type HeadersConfig struct {
	// Request rules change the request that is keyed and sent to the
	// origin (a fill or a pass), before the cache looks it up. Default
	// none.
	Request []HeaderRule `yaml:"request"`
	// Response rules change every answer to the client, after the cache
	// (the stored response stays the origin's). Default none.
	Response []HeaderRule `yaml:"response"`
}

// HeaderRule sets, adds and removes header fields when its conditions
// hold.
type HeaderRule struct {
	PathMatch `yaml:",inline"`
	// Status limits a response rule to these statuses: "200", or a class
	// such as "2xx". Default: every status. Not allowed on request rules.
	Status []string `yaml:"status"`
	// Set replaces a field's values with one value (name: value).
	Set map[string]string `yaml:"set"`
	// Add appends a value to a field's values.
	Add map[string]string `yaml:"add"`
	// Remove deletes fields by name ("Server", "Set-Cookie").
	Remove []string `yaml:"remove"`
}

// forbiddenFields frame the message or the connection, or route the
// request: no rule may touch them (the Host sent upstream is the site's
// origin_host).
var forbiddenFields = []string{"Connection", "Content-Length", "Host", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// headerRule is a HeaderRule ready to apply.
type headerRule struct {
	match    PathMatch
	statuses []statusCond
	remove   []string    // canonical names
	set, add [][2]string // canonical name, value; in name order
	hits     Counter     // its matches (Options.Count)
}

// statusCond holds for one status (lo == hi) or a class (lo..lo+99).
type statusCond struct{ lo, hi int }

func parseStatus(s string) (statusCond, bool) {
	if len(s) != 3 || s[0] < '1' || s[0] > '5' {
		return statusCond{}, false
	}
	if s[1:] == "xx" {
		lo := int(s[0]-'0') * 100
		return statusCond{lo, lo + 99}, true
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return statusCond{}, false
	}
	return statusCond{n, n}, true
}

// validateHeaderRules names the first bad field under field ("headers.request").
func validateHeaderRules(field string, rs []HeaderRule, response bool) error {
	for i, r := range rs {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := r.PathMatch.validate(f + "."); err != nil {
			return err
		}
		if len(r.Set)+len(r.Add)+len(r.Remove) == 0 {
			return fmt.Errorf("%s: sets, adds and removes nothing", f)
		}
		if len(r.Status) > 0 && !response {
			return fmt.Errorf("%s.status: only response rules have a status condition", f)
		}
		for j, s := range r.Status {
			if _, ok := parseStatus(s); !ok {
				return fmt.Errorf("%s.status[%d]: %q (want a status such as 404, or a class such as 2xx)", f, j, s)
			}
		}
		for _, kind := range []struct {
			name string
			m    map[string]string
		}{{"set", r.Set}, {"add", r.Add}} {
			seen := map[string]string{}
			for _, name := range sortedKeys(kind.m) {
				if err := checkFieldName(name); err != nil {
					return fmt.Errorf("%s.%s: %w", f, kind.name, err)
				}
				c := http.CanonicalHeaderKey(name)
				if prev, dup := seen[c]; dup {
					return fmt.Errorf("%s.%s: %q and %q are the same field", f, kind.name, prev, name)
				}
				seen[c] = name
				if v := kind.m[name]; !validFieldValue(v) {
					return fmt.Errorf("%s.%s.%s: value %q has a control character", f, kind.name, name, v)
				}
			}
		}
		for j, name := range r.Remove {
			if err := checkFieldName(name); err != nil {
				return fmt.Errorf("%s.remove[%d]: %w", f, j, err)
			}
		}
	}
	return nil
}

func checkFieldName(name string) error {
	if !isToken(name) {
		return fmt.Errorf("%q is not a field name", name)
	}
	if slices.Contains(forbiddenFields, http.CanonicalHeaderKey(name)) {
		return fmt.Errorf("%q frames the message or routes it: no rule may change it", name)
	}
	return nil
}

// validFieldValue reports whether v may be sent as a field value: no
// control character but tab (RFC 9110 §5.5), no leading or trailing
// whitespace.
func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return strings.TrimSpace(v) == v
}

func compileHeaderRules(rs []HeaderRule) []headerRule {
	out := make([]headerRule, 0, len(rs))
	for _, r := range rs {
		hr := headerRule{match: r.PathMatch}
		for _, s := range r.Status {
			c, _ := parseStatus(s) // validated
			hr.statuses = append(hr.statuses, c)
		}
		for _, name := range r.Remove {
			hr.remove = append(hr.remove, http.CanonicalHeaderKey(name))
		}
		for _, name := range sortedKeys(r.Set) {
			hr.set = append(hr.set, [2]string{http.CanonicalHeaderKey(name), r.Set[name]})
		}
		for _, name := range sortedKeys(r.Add) {
			hr.add = append(hr.add, [2]string{http.CanonicalHeaderKey(name), r.Add[name]})
		}
		out = append(out, hr)
	}
	return out
}

// applies reports whether the rule's conditions hold for the cleaned
// path p and status (0: a request, which has none).
func (r *headerRule) applies(p string, status int) bool {
	if !r.match.Matches(p) {
		return false
	}
	if len(r.statuses) == 0 {
		return true
	}
	for _, c := range r.statuses {
		if c.lo <= status && status <= c.hi {
			return true
		}
	}
	return false
}

// apply changes h. Value slices are never written in place: h may share
// them with a stored entry.
func (r *headerRule) apply(h http.Header) {
	for _, name := range r.remove {
		delete(h, name)
	}
	for _, kv := range r.set {
		h[kv[0]] = []string{kv[1]}
	}
	for _, kv := range r.add {
		vs := h[kv[0]]
		h[kv[0]] = append(vs[:len(vs):len(vs)], kv[1])
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
