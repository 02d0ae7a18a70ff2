package chaos

import (
	"sync"
	"testing"

	"github.com/meridiancdn/meridian/internal/cdntest"
)

// Links are fault proxies on every peer link of a CDN: the edges of each
// region reach each edge's peer endpoint (the way to the shield and to
// failover regions) through a Proxy of that region's own, so that a test
// can delay, drop or cut the links from one region to another. Its
// PeerAddr is a cdntest.CDNOptions.PeerAddr; the proxies stay in front
// of the same addresses when an edge restarts, as cdntest's edges keep
// theirs.
type Links struct {
	t testing.TB

	mu      sync.Mutex
	proxies map[[2]string]*Proxy // (from region, to edge) → proxy
	region  map[string]string    // edge → its region
}

// NewLinks returns Links with no proxy yet; the test's Cleanup stops the
// proxies PeerAddr starts.
func NewLinks(t testing.TB) *Links {
	return &Links{t: t, proxies: map[[2]string]*Proxy{}, region: map[string]string{}}
}

// PeerAddr starts a Proxy to l.Addr for the edges of l.From and returns
// its address. StartCDN calls it (as CDNOptions.PeerAddr) once per
// region and edge.
func (ls *Links) PeerAddr(l cdntest.PeerLink) string {
	ls.t.Helper()
	p := StartProxy(ls.t, l.Addr)
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.proxies[[2]string{l.From, l.Edge}] = p // a start on other ports replaces it
	ls.region[l.Edge] = l.Region
	return p.Addr()
}

// Link returns the proxy through which the edges of region from reach
// edge to's peer endpoint.
func (ls *Links) Link(from, to string) *Proxy {
	ls.t.Helper()
	ls.mu.Lock()
	p := ls.proxies[[2]string{from, to}]
	ls.mu.Unlock()
	if p == nil {
		ls.t.Fatalf("chaos: no link from %s to %s", from, to)
	}
	return p
}

// Set sets the links from region from to every edge of region to: a
// partition between the two regions, one way, with Refuse or Drop.
func (ls *Links) Set(from, to string, l Link) {
	ls.t.Helper()
	ls.mu.Lock()
	var set []*Proxy
	for k, p := range ls.proxies {
		if k[0] == from && ls.region[k[1]] == to {
			set = append(set, p)
		}
	}
	ls.mu.Unlock()
	if len(set) == 0 {
		ls.t.Fatalf("chaos: no links from %s to %s", from, to)
	}
	for _, p := range set {
		p.SetLink(l)
	}
}
