package edge

import (
	"fmt"
	"net/url"
	"strings"
)

// Purge names stored objects to remove: by URL, by surrogate key (the
// origin's Surrogate-Key field, as Fastly), or both. A soft purge marks them
// stale instead, so that stale-while-revalidate and stale-if-error still
// apply to them (a hard purge removes them outright).
type Purge struct {
	// URLs are absolute: http(s)://host/path?query. The scheme does not
	// matter (entries are shared by every scheme).
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
		keys = append(keys, strings.ToLower(hostOnly(u.Host))+u.RequestURI())
	}
	n := 0
	for _, s := range []*store{h.store, h.hot} {
		targets := keys
		for _, tag := range p.Keys {
			targets = append(targets, s.tags.lookup(tag)...)
		}
		for _, k := range targets {
			if h.purgeKey(s, k, p.Soft) {
				n++
			}
		}
	}
	if n > 0 && h.metrics != nil {
		h.metrics.purged.Add(float64(n))
	}
	return n, nil
}

// purgeKey removes or (soft) marks stale the entry at key. A vary index is
// always removed: its variants go with it.
func (h *Handler) purgeKey(s *store, key string, soft bool) bool {
	e := s.peek(key)
	if e == nil {
		return false
	}
	if !soft || e.vary != nil {
		return s.remove(key)
	}
	stale := e.clone()
	// Stale from now on: the stale-* windows start at the purge.
	stale.pol.Lifetime = e.pol.CurrentAge(e.respTime, h.now())
	return s.replaceIf(key, e, stale)
}
