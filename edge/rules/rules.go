package rules

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Config is a site's rules, as its section of the edge's config (inline
// in the site). The zero value has no rules.
type Config struct {
	// Headers are the request and response header rules.
	Headers HeadersConfig `yaml:"headers"`
	// Redirects are the redirect and rewrite rules, first match wins.
	Redirects []Redirect `yaml:"redirects"`
	// SignedURLs makes URLs need a token and an expiry.
	SignedURLs SignedURLConfig `yaml:"signed_urls"`
	// GeoAccess allows or denies clients by country and continent.
	GeoAccess GeoAccessConfig `yaml:"geo_access"`
}

// Empty reports whether c has no rule at all: the edge then spends
// nothing on rules for the site.
func (c Config) Empty() bool {
	return len(c.Headers.Request) == 0 && len(c.Headers.Response) == 0 && len(c.Redirects) == 0 &&
		!c.SignedURLs.Enabled() && !c.GeoAccess.Enabled()
}

// WithDefaults returns c with every unset field given its default.
func (c Config) WithDefaults() Config {
	rs := make([]Redirect, len(c.Redirects))
	for i, r := range c.Redirects {
		rs[i] = r.withDefaults(i)
	}
	c.Redirects = rs
	c.SignedURLs = c.SignedURLs.WithDefaults()
	c.GeoAccess = c.GeoAccess.WithDefaults()
	return c
}

// Validate reports the first problem in c (after WithDefaults), naming
// the field under prefix ("sites[0]."); it does no I/O (the GeoIP
// database is opened by whoever builds the Locator).
func (c Config) Validate(prefix string) error {
	if err := validateHeaderRules(prefix+"headers.request", c.Headers.Request, false); err != nil {
		return err
	}
	if err := validateHeaderRules(prefix+"headers.response", c.Headers.Response, true); err != nil {
		return err
	}
	for i, r := range c.Redirects {
		if err := r.validate(fmt.Sprintf("%sredirects[%d]", prefix, i)); err != nil {
			return err
		}
	}
	if err := c.SignedURLs.validate(prefix + "signed_urls"); err != nil {
		return err
	}
	return c.GeoAccess.validate(prefix + "geo_access")
}

// Options are what a Set needs besides its config.
type Options struct {
	// HTTPSPort is the port of an https redirect's Location when the
	// rule gives none: the edge's TLS port. 0 or 443: none in the URL.
	HTTPSPort int
	// Locator places clients for the geo rules. Required when the
	// config has geo rules.
	Locator Locator
	// Count, when not nil, is called once per rule at Compile for the
	// Counter of its matches; the Set then increments it on every
	// match. kind is "redirect", "rewrite", "header", "signed_url" or
	// "geo"; rule names it: a redirect's or rewrite's name,
	// "headers.request[i]" or "headers.response[i]", "valid",
	// "invalid" or "expired" for signed URLs (one counter each), and
	// "geo_access.rules[i]" for a geo rule, counted when it denies.
	// The names come from the config only, so they are bounded. Nil:
	// nothing is counted.
	Count func(kind, rule string) Counter
}

// Counter counts matches of a rule; a prometheus.Counter is one.
type Counter interface{ Inc() }

// noCount is the Counter of a Set compiled without Options.Count.
type noCount struct{}

func (noCount) Inc() {}

// Kinds of rule, as Options.Count names them.
const (
	KindRedirect  = "redirect"
	KindRewrite   = "rewrite"
	KindHeader    = "header"
	KindSignedURL = "signed_url"
	KindGeo       = "geo"
)

// Set is a site's compiled rules. It is immutable and safe for
// concurrent use.
type Set struct {
	request, response []headerRule
	redirects         []redirectRule
	signed            *signedURLs
	geo               *GeoAccessConfig
	locator           Locator
	httpsPort         int
	// geoDenied counts denials by geo rule (index as geo.Rules).
	geoDenied []Counter
	// signedValid, signedInvalid and signedExpired count signature
	// checks by outcome.
	signedValid, signedInvalid, signedExpired Counter
}

// Compile builds the Set of a validated config (see Config.Validate);
// it returns nil when the config has no rules.
func Compile(c Config, opt Options) (*Set, error) {
	if c.Empty() {
		return nil, nil
	}
	s := &Set{
		request:   compileHeaderRules(c.Headers.Request),
		response:  compileHeaderRules(c.Headers.Response),
		signed:    compileSigned(c.SignedURLs),
		httpsPort: opt.HTTPSPort,
	}
	for _, r := range c.Redirects {
		s.redirects = append(s.redirects, compileRedirect(r))
	}
	if c.GeoAccess.Enabled() {
		if opt.Locator == nil {
			return nil, errors.New("geo_access: no GeoIP database")
		}
		g := c.GeoAccess
		s.geo, s.locator = &g, opt.Locator
	}
	s.counters(opt.Count)
	return s, nil
}

// counters resolves the Counter of every rule of s through count (nil:
// none counts).
func (s *Set) counters(count func(kind, rule string) Counter) {
	if count == nil {
		count = func(string, string) Counter { return noCount{} }
	}
	for i := range s.redirects {
		r := &s.redirects[i]
		kind := KindRedirect
		if r.isRewrite() {
			kind = KindRewrite
		}
		r.hits = count(kind, r.Name)
	}
	for i := range s.request {
		s.request[i].hits = count(KindHeader, fmt.Sprintf("headers.request[%d]", i))
	}
	for i := range s.response {
		s.response[i].hits = count(KindHeader, fmt.Sprintf("headers.response[%d]", i))
	}
	if s.signed != nil {
		s.signedValid = count(KindSignedURL, "valid")
		s.signedInvalid = count(KindSignedURL, "invalid")
		s.signedExpired = count(KindSignedURL, "expired")
	}
	if s.geo != nil {
		s.geoDenied = make([]Counter, len(s.geo.Rules))
		for i := range s.geo.Rules {
			s.geoDenied[i] = count(KindGeo, fmt.Sprintf("geo_access.rules[%d]", i))
		}
	}
}

// Request is what the rules read of a request.
type Request struct {
	// Scheme is "http" or "https", as the edge keys the request.
	Scheme string
	// Host is the normalized host (lower case, no port); Port the port
	// of the Host field ("" when none).
	Host, Port string
	// Target is the request target as sent, in origin form (path and
	// query, escaped).
	Target string
	// Path is the decoded path (url.URL.Path); the rules clean it.
	Path string
	// Client returns the client's address (called only by geo rules).
	Client func() netip.Addr
}

// Decision is what the rules decided for a request.
type Decision struct {
	// Status, when not 0, is the answer: a redirect (with Location) or
	// 403 (with Body of ContentType). The request goes no further.
	Status      int
	Location    string
	Body        string
	ContentType string
	// Rule names the rule that answered or rewrote the request, for
	// Cache-Status (detail); "" when none did.
	Rule string
	// Target, when not "", is the request target to key and send
	// upstream in place of the client's: rewritten, or without the
	// signature's parameters.
	Target string
}

// Decide runs a request through the redirects, the geo rules, the
// signature check and the rewrite, in that order (see the package doc).
// now is the clock of signed URLs' expiry.
func (s *Set) Decide(req Request, now time.Time) Decision {
	p := CleanPath(req.Path)
	var rewrite *redirectRule
	for i := range s.redirects {
		r := &s.redirects[i]
		if !r.Matches(p) || !r.hostOK(req.Host) {
			continue
		}
		if r.isRewrite() {
			rewrite = r
			break
		}
		if loc, ok := s.location(r, req, p); ok {
			r.hits.Inc()
			return Decision{Status: r.Status, Location: loc, Rule: r.Name}
		}
	}
	if s.geo != nil {
		for i := range s.geo.Rules {
			g := &s.geo.Rules[i]
			if !g.Matches(p) {
				continue
			}
			var country, continent string
			if a := req.Client(); a.IsValid() {
				country, continent = s.locator.Locate(a)
			}
			if !g.allows(country, continent) {
				s.geoDenied[i].Inc()
				return Decision{Status: http.StatusForbidden, Body: s.geo.DenyBody, ContentType: s.geo.DenyContentType,
					Rule: "geo-denied"}
			}
			break
		}
	}
	var d Decision
	target := req.Target
	if s.signed != nil && s.signed.covers(p) {
		stripped, err := s.signed.verify(target, now)
		if err != nil {
			detail := "signature-invalid"
			if err == ErrExpired {
				detail = "signature-expired"
				s.signedExpired.Inc()
			} else {
				s.signedInvalid.Inc()
			}
			return Decision{Status: http.StatusForbidden, Body: err.Error() + "\n", ContentType: "text/plain; charset=utf-8", Rule: detail}
		}
		s.signedValid.Inc()
		target, d.Target = stripped, stripped
	}
	if rewrite != nil {
		rewrite.hits.Inc()
		_, query, hasQuery := strings.Cut(target, "?")
		d.Target = escapePath(rewrite.newPath(p))
		if hasQuery {
			d.Target += "?" + query
		}
		d.Rule = rewrite.Name
	}
	return d
}

// location is the Location of redirect r for req (path p cleaned), and
// whether r has anything to do for it.
func (s *Set) location(r *redirectRule, req Request, p string) (string, bool) {
	query := ""
	if _, q, ok := strings.Cut(req.Target, "?"); ok {
		query = "?" + q
	}
	switch {
	case r.HTTPS:
		if req.Scheme == "https" {
			return "", false
		}
		port := r.HTTPSPort
		if port == 0 {
			port = s.httpsPort
		}
		host := hostPort(req.Host, "")
		if port != 0 && port != 443 {
			host = hostPort(req.Host, fmt.Sprint(port))
		}
		return "https://" + host + req.Target, true
	case r.CanonicalHost != "":
		canon := strings.ToLower(strings.TrimSuffix(r.CanonicalHost, "."))
		if req.Host == canon {
			return "", false
		}
		return req.Scheme + "://" + hostPort(canon, req.Port) + req.Target, true
	default:
		loc := escapePath(r.newPath(p))
		if r.origin == "" && strings.HasPrefix(loc, "//") {
			loc = "/" + strings.TrimLeft(loc, "/") // a path, never another host
		}
		return r.origin + loc + query, true
	}
}

// hostPort joins a host (an IPv6 literal comes bracketed) and a port.
func hostPort(host, port string) string {
	if port == "" {
		return host
	}
	return host + ":" + port
}

// HasRequestRules reports whether s changes requests' header fields.
func (s *Set) HasRequestRules() bool { return len(s.request) > 0 }

// HasResponseRules reports whether s changes responses' header fields.
func (s *Set) HasResponseRules() bool { return len(s.response) > 0 }

// RequestHeaders applies the request header rules to h, the header of a
// request for the decoded path p.
func (s *Set) RequestHeaders(h http.Header, p string) {
	p = CleanPath(p)
	for i := range s.request {
		if r := &s.request[i]; r.applies(p, 0) {
			r.hits.Inc()
			r.apply(h)
		}
	}
}

// ResponseHeaders applies the response header rules to h, the header of
// a response of status to a request for the decoded path p (the
// client's). h's value slices are replaced, never written in place.
func (s *Set) ResponseHeaders(h http.Header, p string, status int) {
	p = CleanPath(p)
	for i := range s.response {
		if r := &s.response[i]; r.applies(p, status) {
			r.hits.Inc()
			r.apply(h)
		}
	}
}

// KeyTarget is target (origin form), a client's URL of a site's host
// (normalized), as the rules make it before it is keyed and sent
// upstream: without the signature's parameters, rewritten. It is what a
// purge of the client's URL must remove. Redirects, geo rules and
// signatures decide nothing here.
func (s *Set) KeyTarget(host, target string) string {
	rawPath, _, _ := strings.Cut(target, "?")
	p := CleanPath(unescapePath(rawPath))
	if s.signed != nil && s.signed.covers(p) {
		path, query, _ := strings.Cut(target, "?")
		rest, _, _ := splitSignature(query, s.signed.cfg)
		target = path
		if rest != "" {
			target += "?" + rest
		}
	}
	_, query, hasQuery := strings.Cut(target, "?")
	for i := range s.redirects {
		r := &s.redirects[i]
		if !r.Matches(p) || !r.hostOK(host) {
			continue
		}
		if r.RedirectTo != "" {
			return target // always answered with a redirect: nothing is stored
		}
		if !r.isRewrite() {
			continue // https and canonical_host redirect some requests only
		}
		t := escapePath(r.newPath(p))
		if hasQuery {
			t += "?" + query
		}
		return t
	}
	return target
}
