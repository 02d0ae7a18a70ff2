package rules

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Redirect is one redirect or rewrite rule. A site's rules are tried in
// the order listed, and the first that matches wins: a redirect answers
// the client, a rewrite changes the path that is keyed and sent to the
// origin. A rule matches when its conditions (path, hosts) hold and its
// action has something to do: an https rule only matches plain HTTP, a
// canonical_host rule only another host.
type Redirect struct {
	// Name is what Cache-Status says of a request the rule answered or
	// rewrote (detail=NAME): a token starting with a letter. Default
	// "redirect-rule-N" or "rewrite-rule-N", N its index in the list
	// from 0, as config errors count.
	Name string `yaml:"name"`
	// Prefix and Path are the path condition (see PathMatch). With a
	// prefix, redirect_to and rewrite_to replace just the prefix, and
	// the rest of the path follows; otherwise they replace the whole
	// path. The query is always kept.
	PathMatch `yaml:",inline"`
	// Hosts limits the rule to requests for these of the site's hosts.
	// Default: every host of the site.
	Hosts []string `yaml:"hosts"`

	// The action: exactly one of HTTPS, CanonicalHost, RedirectTo and
	// RewriteTo.

	// HTTPS redirects plain HTTP requests to the same URL over HTTPS
	// (as the edge sees the scheme: a trusted proxy's X-Forwarded-Proto
	// counts).
	HTTPS bool `yaml:"https"`
	// HTTPSPort is the port in the Location of an https redirect.
	// Default: the edge's tls.listen port (none in the URL when it is
	// 443, or when the edge has no tls section).
	HTTPSPort int `yaml:"https_port"`
	// CanonicalHost redirects requests for any other host of the site
	// to this one, keeping the scheme, the port the client used, the
	// path and the query.
	CanonicalHost string `yaml:"canonical_host"`
	// RedirectTo redirects to this path ("/new/") or absolute URL
	// ("https://example.com/new/").
	RedirectTo string `yaml:"redirect_to"`
	// RewriteTo is the path ("/v2/") the origin is asked for, and which
	// is keyed, in place of the client's. The client is not told.
	RewriteTo string `yaml:"rewrite_to"`

	// Status is a redirect's status: 301, 302, 303, 307 or 308. Default
	// 308 for https (the method and body are kept, as Caddy does), 301
	// for the others. Not allowed on a rewrite.
	Status int `yaml:"status"`
}

// isRewrite reports whether the rule rewrites rather than redirects.
func (r Redirect) isRewrite() bool { return r.RewriteTo != "" }

func (r Redirect) withDefaults(i int) Redirect {
	if r.Name == "" {
		kind := "redirect"
		if r.isRewrite() {
			kind = "rewrite"
		}
		r.Name = kind + "-rule-" + strconv.Itoa(i)
	}
	if r.Status == 0 && !r.isRewrite() {
		r.Status = 301
		if r.HTTPS {
			r.Status = 308
		}
	}
	return r
}

// validate names the first bad field under f ("redirects[2]").
func (r Redirect) validate(f string) error {
	if !validName(r.Name) {
		return fmt.Errorf("%s.name: %q (a token starting with a letter: letters, digits and !#$%%&'*+-.^_`|~:/)", f, r.Name)
	}
	if err := r.PathMatch.validate(f + "."); err != nil {
		return err
	}
	for j, h := range r.Hosts {
		if !validHost(h) {
			return fmt.Errorf("%s.hosts[%d]: %q is not a host name", f, j, h)
		}
	}
	actions := 0
	for _, set := range []bool{r.HTTPS, r.CanonicalHost != "", r.RedirectTo != "", r.RewriteTo != ""} {
		if set {
			actions++
		}
	}
	if actions != 1 {
		return fmt.Errorf("%s: want exactly one of https, canonical_host, redirect_to and rewrite_to (has %d)", f, actions)
	}
	switch {
	case r.HTTPSPort != 0 && !r.HTTPS:
		return fmt.Errorf("%s.https_port: only for an https rule", f)
	case r.HTTPSPort < 0 || r.HTTPSPort > 65535:
		return fmt.Errorf("%s.https_port: %d is not a port", f, r.HTTPSPort)
	case r.CanonicalHost != "" && !validHost(r.CanonicalHost):
		return fmt.Errorf("%s.canonical_host: %q is not a host name", f, r.CanonicalHost)
	case r.isRewrite() && r.Status != 0:
		return fmt.Errorf("%s.status: a rewrite answers nothing itself", f)
	case !r.isRewrite() && !validRedirectStatus(r.Status):
		return fmt.Errorf("%s.status: %d (want 301, 302, 303, 307 or 308)", f, r.Status)
	}
	if r.RewriteTo != "" {
		if err := checkTargetPath(r.RewriteTo); err != nil {
			return fmt.Errorf("%s.rewrite_to: %w", f, err)
		}
	}
	if r.RedirectTo != "" {
		if err := checkRedirectTo(r.RedirectTo); err != nil {
			return fmt.Errorf("%s.redirect_to: %w", f, err)
		}
	}
	return nil
}

func validRedirectStatus(s int) bool {
	switch s {
	case 301, 302, 303, 307, 308:
		return true
	}
	return false
}

// validName reports whether s may be a Cache-Status detail token
// (RFC 8941 sf-token) starting with a letter.
func validName(s string) bool {
	if s == "" || !('a' <= s[0] && s[0] <= 'z' || 'A' <= s[0] && s[0] <= 'Z') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isToken(string(c)) && c != ':' && c != '/' {
			return false
		}
	}
	return len(s) <= 64
}

// validHost reports whether h is a bare host name (no port).
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// checkTargetPath checks a path that replaces (part of) a request's
// path: absolute, decoded (it is escaped when sent), no query.
func checkTargetPath(p string) error {
	if p[0] != '/' {
		return fmt.Errorf("%q: must start with /", p)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < ' ' || c == 0x7f || c == '?' || c == '#' {
			return fmt.Errorf("%q: character %q not allowed (a path, without query)", p, c)
		}
	}
	return nil
}

// checkRedirectTo checks a redirect's target: a path, or an absolute
// http(s) URL without query or fragment.
func checkRedirectTo(t string) error {
	if t[0] == '/' {
		if strings.HasPrefix(t, "//") {
			return fmt.Errorf("%q: a scheme-relative URL; write the scheme", t)
		}
		return checkTargetPath(t)
	}
	u, err := url.Parse(t)
	if err != nil {
		return err
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: want a path or an http(s) URL", t)
	case u.Host == "" || u.User != nil:
		return fmt.Errorf("%q: want a host and no user", t)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return fmt.Errorf("%q: no query or fragment (the request's query is kept)", t)
	}
	if u.Path != "" {
		return checkTargetPath(u.Path)
	}
	return nil
}

// redirectRule is a Redirect ready to match.
type redirectRule struct {
	Redirect
	origin string  // RedirectTo's scheme://host of an absolute URL, else ""
	to     string  // RedirectTo's or RewriteTo's path
	hits   Counter // its matches (Options.Count)
}

func compileRedirect(r Redirect) redirectRule {
	rr := redirectRule{Redirect: r, to: r.RewriteTo}
	if r.RedirectTo != "" {
		rr.to = r.RedirectTo
		if r.RedirectTo[0] != '/' {
			u, _ := url.Parse(r.RedirectTo) // validated
			rr.origin = u.Scheme + "://" + u.Host
			rr.to = u.Path
			if rr.to == "" {
				rr.to = "/"
			}
		}
	}
	return rr
}

// newPath is the rule's path for the cleaned path p: its target path,
// followed by what p has after the prefix when the rule has one.
func (r *redirectRule) newPath(p string) string {
	if r.Prefix == "" {
		return r.to
	}
	rest := p[len(r.Prefix):]
	if strings.HasSuffix(r.to, "/") && strings.HasPrefix(rest, "/") {
		rest = rest[1:] // "/new/" + "/x": one slash, so never "//host" (an open redirect)
	}
	return r.to + rest
}

// hostOK reports whether the rule applies to host (normalized).
func (r *redirectRule) hostOK(host string) bool {
	if len(r.Hosts) == 0 {
		return true
	}
	for _, h := range r.Hosts {
		if strings.EqualFold(strings.TrimSuffix(h, "."), host) {
			return true
		}
	}
	return false
}

// escapePath is p escaped as a URL path.
func escapePath(p string) string {
	return (&url.URL{Path: p}).EscapedPath()
}
