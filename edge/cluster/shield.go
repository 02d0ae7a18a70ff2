package cluster

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/meridiancdn/meridian/edge/fill"
	"github.com/meridiancdn/meridian/ring"
)

// ShieldRegion is a region that can act as the origin shield: its published
// peer list. Every region of the CDN shares the peer-signing secret.
type ShieldRegion struct {
	// Name is the region's name.
	Name string
	// Peers are the region's edges; their names must be their edge names
	// (the Cache-Status names their answers carry).
	Peers []ring.Peer
	// Addrs maps each peer's name to its peer endpoint (host:port).
	Addrs map[string]string
	// Ring, when set, is the ring of Peers, built once and shared by every
	// site's Shield and Failover (a ring costs tens of milliseconds and
	// megabytes to build). Nil builds one from Peers.
	Ring *ring.Ring
}

// ring returns the region's ring, building it when the caller did not.
func (sr ShieldRegion) ring() (*ring.Ring, error) {
	if sr.Ring != nil {
		return sr.Ring, nil
	}
	return ring.New(sr.Peers)
}

// ShieldOptions configure the origin shield of one site.
type ShieldOptions struct {
	// Regions are the shields in order of preference: the first reachable
	// one fills. A region's own name ends the list for its edges (they are
	// the shield, or closer to origin than what follows).
	Regions []ShieldRegion
	// Direct allows filling straight from the origin when no shield
	// answers. Without it such a fill fails (and the edge serves stale, or
	// 502/504).
	Direct bool
	// OnFallback, when set, is called each time a shield is passed over
	// (to: the next region's name, or "origin"), for metrics.
	OnFallback func(from, to string)
	// OnAnswer, when set, is called for each fill a shield answered, with
	// whether the shield had the object (a hit) or fetched it, for metrics.
	OnAnswer func(shield string, hit bool)
}

// errNoShield is returned when every shield failed and direct fills are
// not allowed.
var errNoShield = errors.New("no origin shield answered and direct origin fills are not allowed")

// Shield wraps a site's origin so that this region's fills go to the owner
// of the key in the shield region (found on a ring of that region's
// published peers), which alone talks to the origin: one origin fetch per
// object for the whole CDN. The shield's answer, whatever its status (the
// origin's 5xx included), is the answer: only a shield that does not
// answer (refused, silent for PeerTimeout, reset, not its own answer) is
// passed over, for the next one, then (when allowed) the origin. A fill
// that serves a shield request, or any request signed by an edge of a
// shield region, goes to the origin: a shield request is never shielded
// again. The decision rests on the signed peer request (fill.Info.Peer),
// never on a client's Via.
//
// Put it under Transport: a member fills from the key's owner in its own
// region first, and only the owner's fill reaches the shield. It fails
// only when a region has no Ring and its Peers make none.
func (n *Member) Shield(opt ShieldOptions, origin fill.Upstream) (fill.Upstream, error) {
	t := &shieldTransport{n: n, origin: origin, direct: opt.Direct, onFallback: opt.OnFallback, onAnswer: opt.OnAnswer}
	for _, sr := range opt.Regions {
		r, err := sr.ring()
		if err != nil {
			return nil, fmt.Errorf("shield region %s: %w", sr.Name, err)
		}
		t.regions = append(t.regions, shieldRing{name: sr.Name, ring: r, addrs: sr.Addrs})
		for _, p := range sr.Peers {
			t.names = append(t.names, p.Name)
		}
	}
	return t, nil
}

type shieldRing struct {
	name  string
	ring  *ring.Ring
	addrs map[string]string
}

type shieldTransport struct {
	n          *Member
	origin     fill.Upstream
	regions    []shieldRing
	names      []string // every shield edge's name, for the loop guard (signed sender)
	direct     bool
	onFallback func(from, to string)
	onAnswer   func(shield string, hit bool)
}

var _ fill.Upstream = (*shieldTransport)(nil)

func (t *shieldTransport) Fill(req *http.Request, fi fill.Info) (*http.Response, error) {
	if req.Method != http.MethodGet || len(t.regions) == 0 || t.cameThroughShield(fi) {
		return t.origin.Fill(req, fi)
	}
	return t.fillFrom(req, fi, 0)
}

// fillFrom fills from the shields from regions[first] on, then (when
// allowed) the origin. A shield's streaming answer is resumable as a
// peer's is (see peerTransport.resumable): if its body breaks mid-way (the
// shield died, or its link was cut or tampered with, which over mutual
// TLS fails a record's MAC), the shield is passed over and the rest is
// asked from the next shield or the origin, so that the edge reads one
// unbroken body instead of a truncated one.
func (t *shieldTransport) fillFrom(req *http.Request, fi fill.Info, first int) (*http.Response, error) {
	var errs []error
	for i := first; i < len(t.regions); i++ {
		sr := t.regions[i]
		owner, ok := sr.ring.Owner(fi.Key)
		addr := sr.addrs[owner.Name]
		if ok && addr != "" && !t.n.isSuspect(owner.Name) {
			resp, err := t.n.askPeer(req, fi, owner.Name, addr, hopShield)
			if err == nil {
				if t.onAnswer != nil {
					t.onAnswer(sr.name, lastEntryHit(resp.Header))
				}
				if i > 0 {
					resp.Header["Cache-Status"] = append([]string{fallbackStatus(t.regions[:i])}, resp.Header["Cache-Status"]...)
				}
				(&peerTransport{n: t.n}).resumable(req, resp, owner.Name, func(r *http.Request) (*http.Response, error) {
					return t.fillFrom(r, fi, i+1)
				})
				return resp, nil
			}
			if req.Context().Err() != nil {
				return nil, err
			}
			t.n.markSuspect(owner.Name)
			errs = append(errs, fmt.Errorf("shield %s: %w", sr.name, err))
		} else {
			errs = append(errs, fmt.Errorf("shield %s: owner %s passed over", sr.name, owner.Name))
		}
		next := "origin"
		if i+1 < len(t.regions) {
			next = t.regions[i+1].name
		}
		if t.onFallback != nil {
			t.onFallback(sr.name, next)
		}
		t.n.log.Warn("origin shield passed over", "shield", sr.name, "next", next, "key", fi.Key, "err", errs[len(errs)-1])
	}
	if !t.direct {
		return nil, fmt.Errorf("%w: %w", errNoShield, errors.Join(errs...))
	}
	resp, err := t.origin.Fill(req, fi)
	if resp != nil {
		resp.Header["Cache-Status"] = append([]string{fallbackStatus(t.regions)}, resp.Header["Cache-Status"]...)
	}
	return resp, err
}

// fallbackStatus is a Cache-Status entry (RFC 9211) that says which shields
// were passed over before the answer was found.
func fallbackStatus(skipped []shieldRing) string {
	var b strings.Builder
	for i, sr := range skipped {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "shield-%s; fwd=bypass; detail=shield-unreachable", sr.name)
	}
	return b.String()
}

// cameThroughShield reports whether the fill serves a shield request or a
// request a shield edge signed: the peer endpoint verified both.
func (t *shieldTransport) cameThroughShield(fi fill.Info) bool {
	return fi.Peer.Hop == hopShield || signedBy(fi, t.names)
}

// signedBy reports whether the fill serves a verified peer request from
// one of the named edges.
func signedBy(fi fill.Info, names []string) bool {
	return fi.FromPeer && fi.Peer.From != "" && slices.Contains(names, fi.Peer.From)
}

// lastEntryHit reports whether the last Cache-Status entry (the answering
// cache's) says hit.
func lastEntryHit(h http.Header) bool {
	vs := h["Cache-Status"]
	if len(vs) == 0 {
		return false
	}
	last := vs[len(vs)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	for _, p := range strings.Split(last, ";") {
		if strings.TrimSpace(p) == "hit" {
			return true
		}
	}
	return false
}
