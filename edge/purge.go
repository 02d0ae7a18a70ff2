package edge

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meridiancdn/meridian/edge/store"
)

// Purge names stored objects to remove: by URL, by surrogate key (the
// origin's Surrogate-Key field, as Fastly), by URL prefix, by host, by
// site, or by ban expression (see parseBan). URLs and surrogate keys are
// purged at once; prefixes, hosts, sites and expressions become bans,
// applied at lookup and by the sweeper to the objects stored before them
// (see ban). A soft purge marks objects stale instead, so that
// stale-while-revalidate and stale-if-error still apply to them (a hard
// purge removes them outright).
type Purge struct {
	// URLs are absolute: http(s)://host/path?query. The scheme does not
	// matter: the URL's entries under both schemes are purged.
	URLs []string `json:"urls,omitempty"`
	// Keys are surrogate keys.
	Keys []string `json:"keys,omitempty"`
	// Prefixes are absolute URLs whose host's objects under the path
	// (and query) prefix are purged: http(s)://host/static/ (either
	// scheme).
	Prefixes []string `json:"prefixes,omitempty"`
	// Hosts are hosts whose every object is purged.
	Hosts []string `json:"hosts,omitempty"`
	// Sites name sites, each by one of its hosts: every object of every
	// host of the site is purged.
	Sites []string `json:"sites,omitempty"`
	// Bans are ban expressions (see deploy/README.md): for example
	// `req.url ~ "^/img/" && obj.http.Content-Type ~ "^image/"`.
	Bans []string `json:"bans,omitempty"`
	// Soft marks stale instead of removing.
	Soft bool `json:"soft,omitempty"`
	// Scope, when set, limits the purge to these hosts: URLs, prefixes,
	// hosts and sites outside it are refused, and surrogate keys and ban
	// expressions affect only its hosts' objects. A site's purge token
	// sets it to the site's hosts.
	Scope []string `json:"scope,omitempty"`
}

// ErrOutOfScope is wrapped by the errors of a purge that names a host
// outside its Scope.
var ErrOutOfScope = errors.New("outside the purge token's site")

// Validate reports a malformed purge.
func (p Purge) Validate() error {
	if len(p.URLs)+len(p.Keys)+len(p.Prefixes)+len(p.Hosts)+len(p.Sites)+len(p.Bans) == 0 {
		return fmt.Errorf("purge: nothing to purge (no urls, keys, prefixes, hosts, sites or bans)")
	}
	for i, raw := range p.URLs {
		if _, err := purgeURL(raw); err != nil {
			return fmt.Errorf("purge: urls[%d]: %v", i, err)
		}
	}
	for i, raw := range p.Prefixes {
		if _, err := purgeURL(raw); err != nil {
			return fmt.Errorf("purge: prefixes[%d]: %v", i, err)
		}
	}
	for i, k := range p.Keys {
		if k == "" || strings.ContainsAny(k, " \t\r\n") {
			return fmt.Errorf("purge: keys[%d]: %q is not a surrogate key", i, k)
		}
	}
	for _, list := range []struct {
		name  string
		hosts []string
	}{{"hosts", p.Hosts}, {"sites", p.Sites}, {"scope", p.Scope}} {
		for i, host := range list.hosts {
			if name, ok := splitHost(host); !ok || len(name) != len(strings.TrimSuffix(host, ".")) {
				return fmt.Errorf("purge: %s[%d]: %q is not a host name", list.name, i, host)
			}
		}
	}
	for i, expr := range p.Bans {
		if _, err := parseBan(expr); err != nil {
			return fmt.Errorf("purge: bans[%d]: %v", i, err)
		}
	}
	return nil
}

// purgeURL parses an absolute http(s) URL of a purge.
func purgeURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	if _, ok := normalizeHost(u.Host); !ok {
		return nil, fmt.Errorf("%q: malformed host", raw)
	}
	return u, nil
}

// bans returns the bans p makes on this node at now: one per prefix,
// host, site and expression. p is valid; a host outside its scope or a
// site that no site here serves is an error.
func (h *Handler) bansOf(p Purge, scope []string, now time.Time) ([]*ban, error) {
	var out []*ban
	inScope := func(field string, i int, host string) error {
		if scope != nil && !slices.Contains(scope, host) {
			return fmt.Errorf("purge: %s[%d]: host %q is %w", field, i, host, ErrOutOfScope)
		}
		return nil
	}
	for i, raw := range p.Prefixes {
		u, _ := purgeURL(raw)
		host, _ := normalizeHost(u.Host)
		if err := inScope("prefixes", i, host); err != nil {
			return nil, err
		}
		cond := banCond{field: banURL, op: opPrefix, arg: u.RequestURI()}
		out = append(out, newBan([]banCond{cond}, []string{host}, p.Soft, now))
	}
	for i, raw := range p.Hosts {
		host, _ := normalizeHost(raw)
		if err := inScope("hosts", i, host); err != nil {
			return nil, err
		}
		out = append(out, newBan(nil, []string{host}, p.Soft, now))
	}
	for i, raw := range p.Sites {
		host, _ := normalizeHost(raw)
		st := h.route(host)
		if st == nil {
			return nil, fmt.Errorf("purge: sites[%d]: no site serves %q", i, raw)
		}
		hosts := siteHosts(st)
		for _, sh := range hosts {
			if err := inScope("sites", i, sh); err != nil {
				return nil, err
			}
		}
		out = append(out, newBan(nil, hosts, p.Soft, now))
	}
	for _, expr := range p.Bans {
		conds, _ := parseBan(expr)
		out = append(out, newBan(conds, scope, p.Soft, now))
	}
	return out, nil
}

// siteHosts are a site's hosts, normalized as keys hold them.
func siteHosts(st *site) []string {
	out := make([]string, len(st.cfg.Hosts))
	for i, host := range st.cfg.Hosts {
		out[i] = strings.TrimSuffix(strings.ToLower(host), ".")
	}
	return out
}

// Purge applies p to this node's stores and returns how many entries it
// removed or marked stale at once (URLs and surrogate keys; the bans that
// prefixes, hosts, sites and expressions make act from now on, at lookup
// and in the sweeper). It does not reach other nodes: see Admin. A purge
// that would exceed purge.max_bans is refused whole with ErrTooManyBans.
func (h *Handler) Purge(p Purge) (int, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	var scope []string
	if p.Scope != nil {
		scope = make([]string, len(p.Scope))
		for i, host := range p.Scope {
			scope[i], _ = normalizeHost(host)
		}
	}
	var keys []string
	for i, raw := range p.URLs {
		u, _ := purgeURL(raw)
		if host, _ := normalizeHost(u.Host); scope != nil && !slices.Contains(scope, host) {
			return 0, fmt.Errorf("purge: urls[%d]: host %q is %w", i, host, ErrOutOfScope)
		}
		keys = append(keys, h.keysFor(u.Host, u.RequestURI())...)
	}
	bans, err := h.bansOf(p, scope, h.now())
	if err != nil {
		return 0, err
	}
	if err := h.addBans(bans); err != nil {
		return 0, err
	}
	// A URL's slices (slice.go) carry a tag of its key.
	tags := append(sliceTags(keys), p.Keys...)
	n := 0
	for _, s := range []*store.Store{h.store, h.hot} {
		targets := keys
		for _, tag := range tags {
			for _, k := range s.KeysByTag(tag) {
				if host, _ := keyParts(k); scope == nil || slices.Contains(scope, host) {
					targets = append(targets, k)
				}
			}
		}
		for _, k := range targets {
			if h.purgeKey(s, k, p.Soft) {
				n++
			}
		}
	}
	if h.disk != nil {
		// On disk a soft purge removes too: an entry there is not
		// rewritten. The removals are on disk before the purge is
		// answered, so that a restart does not bring them back. The
		// entries evicted from memory and still queued for the disk
		// are written first (Flush of nothing waits for the queue):
		// the tag lookup finds them there, and neither pass above did.
		h.disk.Flush(nil, h.now())
		targets := keys
		for _, tag := range tags {
			for _, k := range h.disk.KeysByTag(tag) {
				if host, _ := keyParts(k); scope == nil || slices.Contains(scope, host) {
					targets = append(targets, k)
				}
			}
		}
		for _, k := range targets {
			if h.disk.Remove(k) {
				n++
			}
		}
	}
	h.purges.record(purgeRecord{keys: keys, tags: tags, scope: scope, bans: bans, soft: p.Soft})
	if n > 0 && h.metrics != nil {
		h.metrics.purged.Add(float64(n))
	}
	return n, nil
}

// recentPurges remembers the last purges, so that a fill that was already
// on its way when a purge came does not store what the purge removed
// (the client had the object before the purge; the store must not keep
// it after).
type recentPurges struct {
	mu  sync.Mutex
	gen uint64
	log []purgeRecord // the last maxRecentPurges, oldest first
}

type purgeRecord struct {
	gen   uint64
	keys  []string // primary keys
	tags  []string
	scope []string // hosts the tags are limited to; nil: every host
	bans  []*ban
	soft  bool
}

// maxRecentPurges bounds the log: a fill slower than this many purges
// is treated as purged.
const maxRecentPurges = 256

func (r *recentPurges) generation() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gen
}

func (r *recentPurges) record(rec purgeRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	rec.gen = r.gen
	r.log = append(r.log, rec)
	if len(r.log) > maxRecentPurges {
		r.log = r.log[len(r.log)-maxRecentPurges:]
	}
}

// since reports whether a purge after generation gen names the primary
// key or one of tags, or makes a ban that affects the entry e filled for
// it, and whether every such purge was soft.
func (r *recentPurges) since(gen uint64, primary string, tags []string, e *store.Entry) (hit, soft bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen == gen {
		return false, false
	}
	if len(r.log) == 0 || r.log[0].gen > gen+1 {
		return true, false // older than the log: assume the worst
	}
	soft = true
	for _, rec := range r.log {
		if rec.gen <= gen || !rec.matches(primary, tags, e) {
			continue
		}
		hit = true
		soft = soft && rec.soft
	}
	return hit, hit && soft
}

func (rec purgeRecord) matches(primary string, tags []string, e *store.Entry) bool {
	for _, k := range rec.keys {
		if k == primary {
			return true
		}
	}
	for _, b := range rec.bans {
		if b.matches(primary, e) {
			return true
		}
	}
	if host, _ := keyParts(primary); rec.scope != nil && !slices.Contains(rec.scope, host) {
		return false
	}
	for _, t := range rec.tags {
		for _, have := range tags {
			if t == have {
				return true
			}
		}
	}
	return false
}

// putFilled stores what a fill brought, unless a purge that came while
// the fill was on its way names it (afterPurges).
func (h *Handler) putFilled(s *store.Store, primary string, reqHeader http.Header, e *store.Entry, purgeGen uint64) *store.Entry {
	if e = h.afterPurges(primary, e, purgeGen); e != nil && h.put(s, primary, reqHeader, e) {
		return e
	}
	return nil
}

// afterPurges is e, filled for primary by a fill that started at
// purgeGen, as it may be stored given the purges that came since: as it
// is when none names it, already stale after a soft one, nil (not
// stored) after a hard one.
func (h *Handler) afterPurges(primary string, e *store.Entry, purgeGen uint64) *store.Entry {
	hit, soft := h.purges.since(purgeGen, primary, strings.Fields(e.Field("Surrogate-Key")), e)
	switch {
	case !hit:
		return e
	case soft:
		e = e.Clone()
		e.SetLifetime(e.CurrentAge(h.now()))
		return e
	}
	return nil
}

// purgeKey removes or (soft) marks stale the entry at key. A vary index is
// always removed: its variants go with it.
func (h *Handler) purgeKey(s *store.Store, key string, soft bool) bool {
	e := s.Peek(key)
	if e == nil {
		return false
	}
	if !soft || e.IsVaryIndex() {
		return s.Remove(key)
	}
	stale := e.Clone()
	// Stale from now on: the stale-* windows start at the purge.
	stale.SetLifetime(e.CurrentAge(h.now()))
	return s.ReplaceIf(key, e, stale)
}

// methodPurge is the HTTP method that purges the request's URL (Varnish's
// and Fastly's PURGE), mapped to the purge API.
const methodPurge = "PURGE"

// servePurgeMethod answers a PURGE request for a configured site: through
// Options.PurgeMethod (the purge API, token required), or 405 when there
// is none. It is never forwarded, so that no client evicts objects with it.
func (h *Handler) servePurgeMethod(w http.ResponseWriter, r *http.Request) {
	if h.opt.PurgeMethod == nil {
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		h.writeError(w, r, http.StatusMethodNotAllowed, "PURGE is not enabled on this edge (no purge token)", cacheStatus{fwd: "request", detail: "purge"})
		return
	}
	h.opt.PurgeMethod.ServeHTTP(w, r)
}

// ServePurgeMethod serves the PURGE method on the public listeners (see
// Options.PurgeMethod), as Varnish users send it: it purges on this node
// and, through Propagate, every other, exactly as the matching POST
// /purge would, and answers with the same JSON. It needs the admin purge
// token or the purge token of the site that serves the request's Host,
// as "Authorization: Bearer TOKEN"; without a valid one it is a 405, as
// Varnish answers a PURGE from outside its purge ACL. What it purges
// (see purgeOfRequest): the request's URL (under both schemes, with the
// site's cache-key rules); with "X-Purge-Method: regex" (WordPress's
// Varnish plugins) or "X-Purge-Regex: RE" the host's objects whose path
// and query match the regular expression; with "xkey-purge: K1 K2" or
// "xkey-softpurge" (varnish-modules xkey, FOSHttpCache) the site's
// objects with those surrogate keys; with "X-Magento-Tags-Pattern: RE"
// (Magento 2) the site's objects whose X-Magento-Tags match.
// "Soft-Purge: 1" or "Fastly-Soft-Purge: 1" marks stale instead of
// removing.
func (a *Admin) ServePurgeMethod(w http.ResponseWriter, r *http.Request) {
	host, _ := normalizeHost(r.Host)
	st := a.Handler.route(host)
	scope, ok := a.scopeOf(r)
	if st == nil || !ok || scope != nil && !slices.Contains(scope, host) {
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "purge: PURGE needs a valid purge token for this site (Authorization: Bearer TOKEN)", http.StatusMethodNotAllowed)
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	p, err := purgeOfRequest(scheme, host, requestTarget(r), r.Header, siteHosts(st))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	a.purge(w, r, p, true)
}

// purgeOfRequest maps a PURGE request for target at host (normalized),
// of the site whose hosts are siteHosts, to the purge it asks for (see
// ServePurgeMethod).
func purgeOfRequest(scheme, host, target string, hdr http.Header, siteHosts []string) (Purge, error) {
	p := Purge{Soft: hdr.Get("Soft-Purge") == "1" || hdr.Get("Fastly-Soft-Purge") == "1"}
	xkey, xsoft := hdr.Values("Xkey-Purge"), hdr.Values("Xkey-Softpurge")
	switch {
	case len(xkey) > 0 || len(xsoft) > 0:
		for _, v := range append(xkey, xsoft...) {
			p.Keys = append(p.Keys, strings.Fields(v)...)
		}
		if len(p.Keys) == 0 {
			return Purge{}, fmt.Errorf("purge: xkey-purge: no keys")
		}
		p.Soft = p.Soft || len(xkey) == 0
		p.Scope = siteHosts
	case hdr.Get("X-Magento-Tags-Pattern") != "":
		p.Bans = []string{"obj.http.X-Magento-Tags ~ " + quoteBanArg(hdr.Get("X-Magento-Tags-Pattern"))}
		p.Scope = siteHosts
	case hdr.Get("X-Purge-Regex") != "":
		p.Bans = []string{"req.url ~ " + quoteBanArg(hdr.Get("X-Purge-Regex"))}
		p.Scope = []string{host}
	case strings.EqualFold(hdr.Get("X-Purge-Method"), "regex"):
		p.Bans = []string{"req.url ~ " + quoteBanArg(target)}
		p.Scope = []string{host}
	default:
		if target == "" || target[0] != '/' {
			return Purge{}, fmt.Errorf("purge: PURGE target %q is not a path", target)
		}
		p.URLs = []string{scheme + "://" + host + target}
	}
	return p, p.Validate()
}

// quoteBanArg quotes s as an argument of a ban expression.
func quoteBanArg(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// bans counts the bans p makes.
func (p Purge) bans() int { return len(p.Prefixes) + len(p.Hosts) + len(p.Sites) + len(p.Bans) }
