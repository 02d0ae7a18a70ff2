package edge

import (
	"context"
	"time"
)

// FillInfo describes an upstream request the edge makes to fill its cache.
// It travels in the request's context so that an upstream RoundTripper
// (such as a region's peer-fill transport) can route by cache key.
type FillInfo struct {
	// Key is the primary cache key: the normalized host and the request
	// target as keyed, after "https://" for an HTTPS request.
	Key string
	// Host is the Host the client asked for, normalized: lower case, no
	// port, no trailing dot (the request's Host may have been replaced by
	// a site's origin_host).
	Host string
	// Scheme is the scheme keyed, "http" or "https" (see Key); the request
	// tells upstream in X-Forwarded-Proto.
	Scheme string
	// FromPeer is set when the fill serves a peer's request: it must go
	// to the origin, never to another peer (the loop guard).
	FromPeer bool
	// Replica is set when the fill makes this edge a replica of the
	// key's owner: the owner's answer is kept in full, not as a hot copy.
	Replica bool
	// Peer is the verified peer request the fill serves (see
	// FromPeerHop); zero for the edge's own clients.
	Peer PeerInfo

	// slice is the slice the fill is for (Key is then the slice's key and
	// the request carries its Range); nil for a whole object.
	slice *sliceReq
}

// PeerInfo is what the peer endpoint verified about a peer's request: who
// signed it and why it was sent (the hop, covered by the signature). Tier
// and loop decisions rest on it, never on client headers such as Via.
type PeerInfo struct {
	// From is the signing member's name.
	From string
	// Hop is the signed reason for the request ("owner", "shield",
	// "failover", ...; see the cluster package), "" if unsigned.
	Hop string
}

type fillInfoKey struct{}
type fromPeerKey struct{}
type peerInfoKey struct{}

// FillInfoFrom returns the FillInfo of an upstream request made by an edge.
func FillInfoFrom(ctx context.Context) (FillInfo, bool) {
	fi, ok := ctx.Value(fillInfoKey{}).(FillInfo)
	return fi, ok
}

// FromPeer marks a request's context as an authenticated peer's request:
// the edge serves it from its cache or fills it from the origin, and never
// forwards it to a peer again. Only the peer endpoint, after verifying the
// peer's signature, may call it.
func FromPeer(ctx context.Context) context.Context {
	return context.WithValue(ctx, fromPeerKey{}, true)
}

// FromPeerHop is FromPeer that also records what the peer endpoint
// verified about the request; the fill carries it as FillInfo.Peer.
func FromPeerHop(ctx context.Context, p PeerInfo) context.Context {
	return context.WithValue(FromPeer(ctx), peerInfoKey{}, p)
}

func peerInfo(ctx context.Context) PeerInfo {
	p, _ := ctx.Value(peerInfoKey{}).(PeerInfo)
	return p
}

type replicaKey struct{}

// AsReplica marks a request's context as a replication fill: the edge
// fills it (from the key's owner) and stores the answer as a full copy.
// Only the cluster's internal endpoint, for a signed request, may call it.
func AsReplica(ctx context.Context) context.Context {
	return context.WithValue(ctx, replicaKey{}, true)
}

func isReplica(ctx context.Context) bool {
	v, _ := ctx.Value(replicaKey{}).(bool)
	return v
}

func isFromPeer(ctx context.Context) bool {
	v, _ := ctx.Value(fromPeerKey{}).(bool)
	return v
}

// PeerFillHeader is set on a response by an upstream RoundTripper when the
// response came from the peer that owns the key rather than from the
// origin. The edge then keeps a copy only if the key is hot, and never
// passes the field on.
const PeerFillHeader = "Meridian-Peer-Fill"

// hotTTL caps how long a hot peer-filled copy is kept: the owner holds the
// authoritative copy.
const hotTTL = 10 * time.Second

// hotAfter is how many peer fills of one key, within the counter's memory,
// make it hot.
const hotAfter = 2
