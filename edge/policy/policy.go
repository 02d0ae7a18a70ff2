package policy

import (
	"fmt"
	"math"
	"net/http"
	"time"
)

// Options are the per-site inputs to Evaluate. The zero value is valid.
type Options struct {
	// GraceWhileRevalidate is the stale-while-revalidate window used when
	// the response gives none. Default 0: none.
	GraceWhileRevalidate time.Duration
	// GraceIfError is the stale-if-error window used when the response
	// gives none. Default 0: none.
	GraceIfError time.Duration
	// StoreUnvalidated stores responses that have no explicit freshness AND
	// no validator (ETag/Last-Modified). Default false: such responses are
	// not stored (Reason "no-freshness").
	StoreUnvalidated bool
	// DefaultTTL is the freshness lifetime of a response without explicit
	// freshness when no heuristic applies (no Last-Modified, or a status
	// that is not heuristically cacheable). Default 0: stored stale, so
	// each reuse is revalidated.
	DefaultTTL time.Duration
	// HeuristicFraction is the share of (Date − Last-Modified) used as a
	// heuristic lifetime (RFC 9111 §4.2.2). Default 0.1 (when 0).
	HeuristicFraction float64
	// HeuristicMax caps the heuristic lifetime. Default 24h (when 0).
	HeuristicMax time.Duration
	// IgnoreRequestNoStore stores responses even when the request carried
	// Cache-Control: no-store. Default false: such responses are not
	// stored, as RFC 9111 §3 requires; set it for sites that ignore client
	// Cache-Control.
	IgnoreRequestNoStore bool
}

// Default values filled in by Options.withDefaults.
const (
	defaultHeuristicFraction = 0.1
	defaultHeuristicMax      = 24 * time.Hour
)

// withDefaults returns o with zero (or nonsensical) fields replaced by their
// defaults. It is the one place where defaults are filled in.
func (o Options) withDefaults() Options {
	if !(o.HeuristicFraction > 0) || math.IsInf(o.HeuristicFraction, 0) {
		o.HeuristicFraction = defaultHeuristicFraction
	}
	if o.HeuristicMax <= 0 {
		o.HeuristicMax = defaultHeuristicMax
	}
	o.GraceWhileRevalidate = max(o.GraceWhileRevalidate, 0)
	o.GraceIfError = max(o.GraceIfError, 0)
	o.DefaultTTL = max(o.DefaultTTL, 0)
	return o
}

// Validate reports the first invalid field of o. Evaluate itself tolerates
// invalid options (it clamps them), so Validate is for config loading.
func (o Options) Validate() error {
	switch {
	case o.GraceWhileRevalidate < 0:
		return fmt.Errorf("GraceWhileRevalidate: negative (%v)", o.GraceWhileRevalidate)
	case o.GraceIfError < 0:
		return fmt.Errorf("GraceIfError: negative (%v)", o.GraceIfError)
	case o.DefaultTTL < 0:
		return fmt.Errorf("DefaultTTL: negative (%v)", o.DefaultTTL)
	case math.IsNaN(o.HeuristicFraction) || o.HeuristicFraction < 0 || o.HeuristicFraction > 1:
		return fmt.Errorf("HeuristicFraction: %v not in [0, 1]", o.HeuristicFraction)
	case o.HeuristicMax < 0:
		return fmt.Errorf("HeuristicMax: negative (%v)", o.HeuristicMax)
	}
	return nil
}

// Policy is the verdict on one response, computed once when it is received
// and kept with the stored entry.
type Policy struct {
	// Store reports whether a shared cache may store the response.
	Store bool
	// Reason is a short token saying why the response is not stored:
	// "method", "status", "partial", "no-store", "private", "authorization",
	// "vary-star", "set-cookie", "no-freshness" or "credentials" (a request
	// with Cookie or Authorization, a response without explicit
	// freshness); "" when stored.
	Reason string
	// Lifetime is the freshness lifetime (RFC 9111 §4.2.1), or the
	// heuristic one (§4.2.2) when Heuristic; never negative.
	Lifetime time.Duration
	// Heuristic reports that Lifetime is heuristic.
	Heuristic bool
	// StaleWhileRevalidate is how long after Lifetime ends the response may
	// be served while a background refresh runs; 0 when NoStale.
	StaleWhileRevalidate time.Duration
	// StaleIfError is how long after Lifetime ends the response may be
	// served when upstream fails; 0 when NoStale.
	StaleIfError time.Duration
	// NoStale means the response must never be served stale. It is set by
	// must-revalidate, proxy-revalidate and unqualified no-cache, and by
	// s-maxage (which implies proxy-revalidate in a shared cache, RFC 9111
	// §5.2.2.10) unless the origin also sent an explicit stale-while-
	// revalidate or stale-if-error: those explicit windows are taken as the
	// origin's wish and win over the implication. Site grace never applies
	// to a response with s-maxage.
	NoStale bool
	// AlwaysRevalidate is set by unqualified no-cache: every reuse needs
	// successful validation first.
	AlwaysRevalidate bool
	// Immutable is the response's "immutable" (RFC 8246): while fresh, a
	// client's max-age (a plain reload) does not force revalidation.
	Immutable bool
	// StripFields are the header fields to remove before storing: the
	// names of qualified no-cache and private, sorted.
	StripFields []string
	// InitialAge is corrected_initial_age (RFC 9111 §4.2.3) at the
	// response time.
	InitialAge time.Duration
}

// Evaluate decides, for a shared cache, whether the response to a request
// may be stored and how it may be reused (RFC 9111 §3 and §4.2).
//
// Request directives are not consulted except no-store (see
// Options.IgnoreRequestNoStore) and Authorization. Only GET responses are
// stored: for any other method Store is false with Reason "method", but the
// other fields are still computed (a HEAD response may update a stored
// GET). A 206 is never stored ("partial").
//
// When the response carries a valid CDN-Cache-Control field (RFC 9213: an
// sf-dictionary with at least one member, an unknown one such as "none"
// included, and the right value type for each directive known here; see
// parseTargeted), only that field is used: Cache-Control and Expires are
// ignored for storage and freshness. An invalid one is ignored as a whole.
//
// A response with Set-Cookie is not stored unless the origin qualifies the
// field with private="Set-Cookie" or no-cache="Set-Cookie": then it is
// stored with Set-Cookie in StripFields (Varnish's behaviour; a shared
// cache must never hand one client's cookie to another).
//
// A response to a request that carried Cookie or Authorization is stored
// only with explicit freshness (s-maxage, max-age or Expires): never by
// heuristic freshness, DefaultTTL or StoreUnvalidated (Reason
// "credentials"). That is the defence against web cache deception: a
// personal page under a static-looking URL usually has Last-Modified and
// no Cache-Control.
func Evaluate(method string, reqHeader http.Header, status int, respHeader http.Header, requestTime, responseTime time.Time, opts Options) Policy {
	opts = opts.withDefaults()
	var p Policy

	cc, targeted := parseTargeted(respHeader["Cdn-Cache-Control"])
	if !targeted {
		cc = ParseCacheControl(respHeader["Cache-Control"])
	}

	// An invalid Date is as good as none: the response time stands in for
	// it (RFC 9110 §6.6.1, RFC 9111 §4.2.3).
	date, ok := parseDate(respHeader["Date"], responseTime)
	if !ok {
		date = responseTime
	}
	p.InitialAge = initialAge(respHeader["Age"], date, requestTime, responseTime)

	// Freshness lifetime, §4.2.1.
	explicit := true
	switch {
	case cc.SMaxAge >= 0:
		p.Lifetime = cc.SMaxAge
	case cc.MaxAge >= 0:
		p.Lifetime = cc.MaxAge
	case !targeted && len(respHeader["Expires"]) > 0:
		if exp, ok := parseDate(respHeader["Expires"], responseTime); ok {
			p.Lifetime = max(subSat(exp.Round(0), date.Round(0)), 0)
		} // invalid Expires: already expired (RFC 9111 §5.3)
	default:
		explicit = false
	}
	lastMod, hasLM := parseDate(respHeader["Last-Modified"], responseTime)
	if !explicit {
		if hasLM && (heuristicStatus(status) || cc.Public) {
			p.Heuristic = true
			p.Lifetime = heuristic(date, lastMod, opts)
		} else {
			p.Lifetime = opts.DefaultTTL
		}
	}

	// Stale windows.
	explicitStale := cc.StaleWhileRevalidate >= 0 || cc.StaleIfError >= 0
	p.NoStale = cc.MustRevalidate || cc.ProxyRevalidate || cc.NoCache || (cc.SMaxAge >= 0 && !explicitStale)
	if !p.NoStale {
		p.StaleWhileRevalidate = window(cc.StaleWhileRevalidate, cc.SMaxAge, opts.GraceWhileRevalidate)
		p.StaleIfError = window(cc.StaleIfError, cc.SMaxAge, opts.GraceIfError)
	}
	p.AlwaysRevalidate = cc.NoCache
	p.Immutable = cc.Immutable
	p.StripFields = stripFields(cc.NoCacheFields, cc.PrivateFields)

	p.Reason = reason(method, reqHeader, status, respHeader, &cc, &p, explicit, hasLM, opts)
	p.Store = p.Reason == ""
	return p
}

// reason returns why the response must not be stored, "" if it may be.
func reason(method string, reqHeader http.Header, status int, respHeader http.Header, cc *Directives, p *Policy, explicit, hasLM bool, opts Options) string {
	switch {
	case method != http.MethodGet:
		return "method"
	case status == http.StatusPartialContent:
		return "partial"
	case status < 200 || status > 599 || status == http.StatusNotModified:
		return "status"
	case cc.MustUnderstand && !understood(status):
		return "status"
	case !heuristicStatus(status) && !explicit && !cc.Public:
		return "status"
	case cc.NoStore && !cc.MustUnderstand:
		return "no-store"
	case !opts.IgnoreRequestNoStore && requestNoStore(reqHeader):
		return "no-store"
	case cc.Private:
		return "private"
	case len(reqHeader["Authorization"]) > 0 && !cc.Public && cc.SMaxAge < 0 && !cc.MustRevalidate:
		return "authorization"
	}
	var arr [16]string
	if _, ok := appendVary(arr[:0], respHeader["Vary"]); !ok {
		return "vary-star"
	}
	if len(respHeader["Set-Cookie"]) > 0 && !contains(p.StripFields, "Set-Cookie") {
		return "set-cookie"
	}
	if !explicit && !hasLM && len(respHeader["Etag"]) == 0 && !opts.StoreUnvalidated {
		return "no-freshness"
	}
	if !explicit && (len(reqHeader["Cookie"]) > 0 || len(reqHeader["Authorization"]) > 0) {
		// Web cache deception: a personal page reached under a static-
		// looking URL (/account/x.css) comes back with Last-Modified and
		// no Cache-Control. Heuristic freshness, DefaultTTL and
		// StoreUnvalidated are guesses; for a request with credentials the
		// origin must say the answer may be shared (max-age, s-maxage,
		// Expires), else it is not stored.
		return "credentials"
	}
	return ""
}

// requestNoStore reports a no-store directive in the request.
func requestNoStore(h http.Header) bool {
	v := h["Cache-Control"]
	if len(v) == 0 {
		return false
	}
	return ParseCacheControl(v).NoStore
}

// contains reports whether sorted holds s.
func contains(sorted []string, s string) bool {
	for _, f := range sorted {
		if f == s {
			return true
		}
	}
	return false
}

// window is an effective stale window: the explicit directive if present,
// else the site grace unless s-maxage is present.
func window(explicit, sMaxAge, grace time.Duration) time.Duration {
	switch {
	case explicit >= 0:
		return explicit
	case sMaxAge >= 0:
		return 0
	}
	return grace
}

// stripFields merges two sorted field lists.
func stripFields(a, b []string) []string {
	if len(a) == 0 && len(b) == 0 {
		return nil
	}
	out := make([]string, 0, len(a)+len(b))
	out = append(out, a...)
	out = append(out, b...)
	return sortFields(out)
}

// heuristic is the §4.2.2 lifetime: a fraction of the time since the
// last modification, capped.
func heuristic(date, lastMod time.Time, opts Options) time.Duration {
	since := subSat(date.Round(0), lastMod.Round(0))
	if since <= 0 {
		return 0
	}
	f := float64(since) * opts.HeuristicFraction
	if f >= float64(opts.HeuristicMax) {
		return opts.HeuristicMax
	}
	return time.Duration(f)
}

// initialAge is corrected_initial_age (§4.2.3).
func initialAge(ageField []string, date, requestTime, responseTime time.Time) time.Duration {
	var ageValue time.Duration
	if len(ageField) > 0 {
		first, _ := cutComma(ageField[0])
		if n, ok := parseDelta(trimOWS(first)); ok {
			ageValue = n
		}
	}
	apparent := max(subSat(responseTime, date), 0)
	delay := max(subSat(responseTime, requestTime), 0)
	corrected := addSat(ageValue, delay)
	return max(apparent, corrected)
}

// parseDate parses a singleton HTTP-date field strictly (ParseHTTPDate,
// now resolving an rfc850-date's century). More than one line that
// disagree, or an invalid date, give ok=false.
func parseDate(lines []string, now time.Time) (time.Time, bool) {
	if len(lines) == 0 {
		return time.Time{}, false
	}
	for _, l := range lines[1:] {
		if l != lines[0] {
			return time.Time{}, false
		}
	}
	return ParseHTTPDate(trimOWS(lines[0]), now)
}

// heuristicStatus reports the status codes that are heuristically
// cacheable (RFC 9110 §15.1).
func heuristicStatus(status int) bool {
	switch status {
	case 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// understood reports the final status codes whose caching requirements this
// package implements (RFC 9110 §15), for must-understand (RFC 9111
// §5.2.2.3): their semantics put no extra conditions on storing.
func understood(status int) bool {
	switch status {
	case 200, 201, 202, 203, 204, 205, 206,
		300, 301, 302, 303, 307, 308,
		400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 426,
		500, 501, 502, 503, 504, 505:
		return true
	}
	return false
}

// addSat adds two non-negative durations, saturating.
func addSat(a, b time.Duration) time.Duration {
	if s := a + b; s >= a {
		return s
	}
	return math.MaxInt64
}

// subSat is a − b between times, saturating (time.Time.Sub saturates).
func subSat(a, b time.Time) time.Duration { return a.Sub(b) }

// subDur is a − b for durations, saturating.
func subDur(a, b time.Duration) time.Duration {
	d := a - b
	if (b > 0 && d > a) || (b < 0 && d < a) {
		if b > 0 {
			return math.MinInt64
		}
		return math.MaxInt64
	}
	return d
}

// Verdict says how a stored response may be used now.
type Verdict struct {
	// Fresh: the response can be served without contacting upstream
	// (fresh, or stale within the client's max-stale).
	Fresh bool
	// StaleWhileRevalidate: stale, but may be served now while a
	// background refresh runs.
	StaleWhileRevalidate bool
	// StaleIfError: not Fresh, but may be served if upstream fails.
	StaleIfError bool
	// TTL is Lifetime − age: negative once stale (Cache-Status ttl=).
	TTL time.Duration
}

// Judge decides how a stored response of current age age may be used. req
// holds the client's request directives; nil (or NoDirectives()) ignores
// them. Judge does not allocate.
//
// Request max-age (fresh only if age ≤ it), min-fresh and no-cache can only
// take Fresh away; max-stale makes a stale response Fresh unless NoStale.
// When a request directive takes Fresh away, stale-while-revalidate does
// not apply either (the client asked for a newer response), but
// StaleIfError still does. AlwaysRevalidate is never Fresh and never
// StaleIfError. only-if-cached is the caller's business.
func (p *Policy) Judge(age time.Duration, req *Directives) Verdict {
	age = max(age, 0)
	v := Verdict{TTL: subDur(p.Lifetime, age)}
	fresh := p.Lifetime > age
	staleness := time.Duration(0)
	if !fresh {
		staleness = age - p.Lifetime // both ≥ 0: cannot overflow
	}
	reqOK, stale := true, false
	if req != nil {
		switch {
		case req.NoCache:
			reqOK = false
		case req.MaxAge >= 0 && age > req.MaxAge && !(p.Immutable && fresh):
			reqOK = false
		case req.MinFresh >= 0 && v.TTL < req.MinFresh:
			reqOK = false
		}
		if req.MaxStale >= 0 {
			stale = staleness <= req.MaxStale
		} else {
			stale = req.MaxStaleAny
		}
	}
	if p.AlwaysRevalidate {
		return v
	}
	if reqOK && (fresh || (stale && !p.NoStale)) {
		v.Fresh = true
		return v
	}
	if !fresh && !p.NoStale && reqOK && staleness < p.StaleWhileRevalidate {
		v.StaleWhileRevalidate = true
	}
	if fresh || (!p.NoStale && staleness < p.StaleIfError) {
		v.StaleIfError = true
	}
	return v
}

// CurrentAge is the response's age at now: InitialAge plus the time it has
// been resident since responseTime (RFC 9111 §4.2.3). A now before
// responseTime counts as no residence.
func (p *Policy) CurrentAge(responseTime, now time.Time) time.Duration {
	return addSat(p.InitialAge, max(now.Sub(responseTime), 0))
}
