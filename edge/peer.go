package edge

import (
	"context"
	"net/http"
	"time"

	"github.com/meridiancdn/meridian/edge/fill"
)

// ServePeer serves a request that a cluster's peer endpoint verified: a
// member of the region signed it, and peer says who and why (the hop).
// The edge serves it from its cache or fills it from upstream with
// fill.Info.FromPeer and Peer set, so that the site's upstream never sends
// it to another peer (the loop guard) and decides on its tier by the
// signed hop; it trusts the request's forwarding fields (a peer relays its
// client's), applies no per-client limits (a peer carries many clients)
// and shows it the stored Surrogate-Key (peers purge by it too).
//
// Only the peer endpoint, after verifying the signature, may call it.
// Nothing a client sends makes a request a peer's: the public listeners
// call ServeHTTP, and the mark is set here alone.
func (h *Handler) ServePeer(w http.ResponseWriter, r *http.Request, peer fill.Peer) {
	h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), peerKey{}, peerMark{peer: peer})))
}

// ServeReplica takes a replica's copy of the object r asks for (a GET,
// made by the node for a signed request of the key's owner): it fills
// with fill.Info.Replica set, which the site's upstream fills from the
// owner, never from the origin, and keeps the answer in full. It is
// filled alone, not joined with this edge's own fill of the key. w gets
// the answer, which the caller usually discards. Like ServePeer, only
// the cluster's internal endpoint may call it.
func (h *Handler) ServeReplica(w http.ResponseWriter, r *http.Request) {
	h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), peerKey{}, peerMark{replica: true})))
}

// peerKey is the context key of a request's peerMark. It is unexported:
// only ServePeer and ServeReplica set one, so no other package (and no
// client) can make a request a peer's.
type peerKey struct{}

// peerMark is what ServePeer or ServeReplica was told about a request.
type peerMark struct {
	peer    fill.Peer
	replica bool
}

func markOf(ctx context.Context) (peerMark, bool) {
	m, ok := ctx.Value(peerKey{}).(peerMark)
	return m, ok
}

// isFromPeer reports whether the request came through ServePeer.
func isFromPeer(ctx context.Context) bool {
	m, ok := markOf(ctx)
	return ok && !m.replica
}

// isReplica reports whether the request came through ServeReplica.
func isReplica(ctx context.Context) bool {
	m, ok := markOf(ctx)
	return ok && m.replica
}

// fillInfoOf returns the fill.Info of a request built by upstreamRequest
// (held by its fillContext); the fill hands it to the site's upstream as
// a parameter (fill.Upstream), never as a context value.
func fillInfoOf(r *http.Request) fill.Info {
	fc, _ := r.Context().(*fillContext)
	if fc == nil {
		return fill.Info{}
	}
	return fc.info
}

// hotTTL caps how long a hot peer-filled copy is kept: the owner holds the
// authoritative copy.
const hotTTL = 10 * time.Second

// hotAfter is how many peer fills of one key, within the counter's memory,
// make it hot.
const hotAfter = 2
