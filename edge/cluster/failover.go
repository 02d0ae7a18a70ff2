package cluster

import (
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/meridiancdn/meridian/edge/fill"
	"github.com/meridiancdn/meridian/origin"
)

// Failover wraps a site's upstream path (shield and origin) so that when
// the path fails, a fill is tried at the owner of the key in each of
// regions in turn (nearest first) before the edge falls back to a stale
// copy or an error: a region whose own path to the origin is broken still
// serves.
//
// Only the path failing counts (see pathFailed): no shield answered and
// direct fills are not allowed, or no connection to the origin could be
// made. An answer from the origin, a 5xx included (relayed by the shield
// or not), goes back as it is, once: asking other regions would send the
// same failing origin more requests. Another region's answer is likewise
// the answer, whatever its status; only a region that does not answer is
// passed over. A fill that serves another region's request (a shield or
// failover hop, or any request an edge of those regions signed) does not
// fail over again; the decision rests on the signed peer request
// (fill.Info.Peer), never on a client's Via. It fails only when a
// region has no Ring and its Peers make none.
func (n *Member) Failover(regions []ShieldRegion, next fill.Upstream) (fill.Upstream, error) {
	t := &failoverTransport{n: n, next: next}
	for _, sr := range regions {
		r, err := sr.ring()
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
	n       *Member
	next    fill.Upstream
	regions []shieldRing
	names   []string // every other region's edge names (signed senders)
}

var _ fill.Upstream = (*failoverTransport)(nil)

func (t *failoverTransport) Fill(req *http.Request, fi fill.Info) (*http.Response, error) {
	resp, err := t.next.Fill(req, fi)
	if err == nil || !pathFailed(err) {
		return resp, err
	}
	if req.Method != http.MethodGet || len(t.regions) == 0 || req.Context().Err() != nil ||
		fi.Peer.Hop == hopShield || fi.Peer.Hop == hopFailover || signedBy(fi, t.names) {
		return resp, err
	}
	for _, sr := range t.regions {
		owner, ok := sr.ring.Owner(fi.Key)
		addr := sr.addrs[owner.Name]
		if !ok || addr == "" || t.n.isSuspect(owner.Name) {
			continue
		}
		alt, aerr := t.n.askPeer(req, fi, owner.Name, addr, hopFailover)
		if aerr != nil {
			if req.Context().Err() != nil {
				break
			}
			t.n.markSuspect(owner.Name)
			continue
		}
		t.n.log.Warn("upstream path failed; filled from another region", "region", sr.name, "owner", owner.Name, "key", fi.Key, "err", err)
		return alt, nil
	}
	return resp, err
}

// pathFailed reports whether an upstream error means this region's path
// to the origin failed, rather than the origin: no shield answered (and
// direct fills are not allowed), or no connection to the origin could be
// made (refused, unreachable, no address, or connecting timed out). A
// timeout waiting for the origin's answer, a reset after connecting or an
// open circuit breaker are the origin's trouble: another region would
// meet it too.
func pathFailed(err error) bool {
	if errors.Is(err, errNoShield) {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var oe *origin.Error
	return errors.As(err, &oe) && oe.Kind == origin.KindRefused
}
