package cluster

import (
	"fmt"
	"io"
	"net/http"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/ring"
)

// Failover wraps a site's upstream path (shield and origin) so that when it
// fails — a transport error or a 5xx — a fill is tried at the owner of the
// key in each of regions in turn (nearest first) before the edge falls
// back to a stale copy or an error: a region whose own path to the origin
// is broken still serves. A request that already came through another
// region's edge (its Via names one) does not fail over again.
func (n *Node) Failover(regions []ShieldRegion, next http.RoundTripper) (http.RoundTripper, error) {
	t := &failoverTransport{n: n, next: next}
	for _, sr := range regions {
		r, err := ring.New(sr.Peers)
		if err != nil {
			return nil, fmt.Errorf("failover region %s: %w", sr.Name, err)
		}
		t.regions = append(t.regions, shieldRing{name: sr.Name, ring: r, addrs: sr.Addrs})
		for _, p := range sr.Peers {
			t.names = append(t.names, p.Name)
		}
	}
	return t, nil
}

type failoverTransport struct {
	n       *Node
	next    http.RoundTripper
	regions []shieldRing
	names   []string
}

func (t *failoverTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err == nil && resp.StatusCode < 500 {
		return resp, nil
	}
	fi, ok := edge.FillInfoFrom(req.Context())
	if !ok || req.Method != http.MethodGet || len(t.regions) == 0 || req.Context().Err() != nil ||
		viaNames(req, t.names) {
		return resp, err
	}
	for _, sr := range t.regions {
		owner, ok := sr.ring.Owner(fi.Key)
		addr := sr.addrs[owner.Name]
		if !ok || addr == "" || t.n.isSuspect(owner.Name) {
			continue
		}
		alt, aerr := t.n.askPeer(req, fi, owner.Name, addr)
		if aerr != nil {
			if req.Context().Err() != nil {
				break
			}
			t.n.markSuspect(owner.Name)
			continue
		}
		if alt.StatusCode >= 500 {
			io.Copy(io.Discard, io.LimitReader(alt.Body, drainBytes))
			alt.Body.Close()
			continue
		}
		t.n.log.Warn("upstream failed; filled from another region", "region", sr.name, "owner", owner.Name, "key", fi.Key)
		if resp != nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, drainBytes))
			resp.Body.Close()
		}
		return alt, nil
	}
	return resp, err
}

// CloseIdleConnections closes the wrapped upstream's idle connections.
func (t *failoverTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
