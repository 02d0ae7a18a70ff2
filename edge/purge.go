package edge

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// Purge names stored objects to remove: by URL, by surrogate key (the
// origin's Surrogate-Key field, as Fastly), or both. A soft purge marks them
// stale instead, so that stale-while-revalidate and stale-if-error still
// apply to them (a hard purge removes them outright).
type Purge struct {
	// URLs are absolute: http(s)://host/path?query. The scheme does not
	// matter: the URL's entries under both schemes are purged.
	URLs []string `json:"urls,omitempty"`
	// Keys are surrogate keys.
	Keys []string `json:"keys,omitempty"`
	// Soft marks stale instead of removing.
	Soft bool `json:"soft,omitempty"`
}

// Validate reports a malformed purge.
func (p Purge) Validate() error {
	if len(p.URLs) == 0 && len(p.Keys) == 0 {
		return fmt.Errorf("purge: no urls and no keys")
	}
	for i, raw := range p.URLs {
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("purge: urls[%d]: %v", i, err)
		}
		if u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return fmt.Errorf("purge: urls[%d]: %q is not an absolute http(s) URL", i, raw)
		}
	}
	for i, k := range p.Keys {
		if k == "" || strings.ContainsAny(k, " \t\r\n") {
			return fmt.Errorf("purge: keys[%d]: %q is not a surrogate key", i, k)
		}
	}
	return nil
}

// Purge applies p to this node's stores and returns how many entries it
// removed or marked stale. It does not reach other nodes: see Admin.
func (h *Handler) Purge(p Purge) (int, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	var keys []string
	for _, raw := range p.URLs {
		u, _ := url.Parse(raw)
		keys = append(keys, h.keysFor(u.Host, u.RequestURI())...)
	}
	// A URL's slices (slice.go) carry a tag of its key.
	tags := append(sliceTags(keys), p.Keys...)
	n := 0
	for _, s := range []*store{h.store, h.hot} {
		targets := keys
		for _, tag := range tags {
			targets = append(targets, s.tags.lookup(tag)...)
		}
		for _, k := range targets {
			if h.purgeKey(s, k, p.Soft) {
				n++
			}
		}
	}
	h.purges.record(keys, tags, p.Soft)
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
	gen  uint64
	keys []string // primary keys
	tags []string
	soft bool
}

// maxRecentPurges bounds the log: a fill slower than this many purges
// is treated as purged.
const maxRecentPurges = 256

func (r *recentPurges) generation() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gen
}

func (r *recentPurges) record(keys, tags []string, soft bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	r.log = append(r.log, purgeRecord{gen: r.gen, keys: keys, tags: tags, soft: soft})
	if len(r.log) > maxRecentPurges {
		r.log = r.log[len(r.log)-maxRecentPurges:]
	}
}

// since reports whether a purge after generation gen names the primary
// key or one of tags, and whether every such purge was soft.
func (r *recentPurges) since(gen uint64, primary string, tags []string) (hit, soft bool) {
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
		if rec.gen <= gen || !rec.matches(primary, tags) {
			continue
		}
		hit = true
		soft = soft && rec.soft
	}
	return hit, hit && soft
}

func (rec purgeRecord) matches(primary string, tags []string) bool {
	for _, k := range rec.keys {
		if k == primary {
			return true
		}
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
// the fill was on its way names it: then a hard purge drops it and a soft
// one stores it already stale.
func (h *Handler) putFilled(s *store, primary string, reqHeader http.Header, e *entry, purgeGen uint64) {
	hit, soft := h.purges.since(purgeGen, primary, strings.Fields(e.field("Surrogate-Key")))
	switch {
	case !hit:
	case soft:
		e = e.clone()
		e.setLifetime(e.currentAge(h.now()))
	default:
		return
	}
	h.put(s, primary, reqHeader, e)
}

// purgeKey removes or (soft) marks stale the entry at key. A vary index is
// always removed: its variants go with it.
func (h *Handler) purgeKey(s *store, key string, soft bool) bool {
	e := s.peek(key)
	if e == nil {
		return false
	}
	if !soft || e.isVaryIndex() {
		return s.remove(key)
	}
	stale := e.clone()
	// Stale from now on: the stale-* windows start at the purge.
	stale.setLifetime(e.currentAge(h.now()))
	return s.replaceIf(key, e, stale)
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
// Options.PurgeMethod): it purges the request's URL (under both schemes,
// with the site's cache-key rules) on this node and, through Propagate,
// every other, exactly as POST /purge {"urls": [...]} would, and answers
// with the same JSON. It needs the purge token as
// "Authorization: Bearer TOKEN": 405 when no token is configured, 401
// without credentials, 403 with a wrong token. "Soft-Purge: 1" marks the
// objects stale instead of removing them.
func (a *Admin) ServePurgeMethod(w http.ResponseWriter, r *http.Request) {
	if a.Token == "" {
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		http.Error(w, "purge: PURGE is not enabled (no purge token configured)", http.StatusMethodNotAllowed)
		return
	}
	if _, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="meridian purge"`)
		http.Error(w, "purge: bearer token required", http.StatusUnauthorized)
		return
	}
	if !a.authorized(r) {
		http.Error(w, "purge: wrong bearer token", http.StatusForbidden)
		return
	}
	u := url.URL{Scheme: "http", Host: r.Host}
	if r.TLS != nil {
		u.Scheme = "https"
	}
	target := requestTarget(r)
	p := Purge{URLs: []string{u.String() + target}, Soft: r.Header.Get("Soft-Purge") == "1"}
	n, err := a.Handler.Purge(p)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	res := PurgeResult{Purged: n, Acked: []string{}, Failed: []string{}, Complete: true}
	if a.Propagate != nil {
		acked, failed := a.Propagate(r.Context(), p)
		res.Acked = append(res.Acked, acked...)
		res.Failed = append(res.Failed, failed...)
		res.Complete = len(failed) == 0
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !res.Complete {
		w.WriteHeader(http.StatusAccepted)
	}
	json.NewEncoder(w).Encode(res)
}
