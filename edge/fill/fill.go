// Package fill is the contract between an edge and the upstream path that
// fills its cache: what one fill is for ([Info], [Peer]) and who answers
// it ([Upstream]). It is a leaf: the edge calls an Upstream, the region's
// cluster implements one (the owner peer, the shield, the failover
// regions), and neither imports the other.
//
// The metadata is a parameter, not a context value: an upstream sees in
// its signature what it decides on (the key it routes by, the verified
// peer request a fill serves), and nothing a client sends can stand in
// for it. Only the edge builds an Info, from its own routing and from
// what its peer entry point was told by the cluster, which verified the
// peer's signature; client header fields never reach it. Where a fill
// crosses the network to a peer, the cluster signs what the receiving
// edge may rest decisions on (the sender and the hop).
package fill

import "net/http"

// Info describes one fill: the upstream request an edge makes to fill
// its cache for a key.
type Info struct {
	// Key is the primary cache key: the normalized host and the request
	// target as keyed, after "https://" for an HTTPS request.
	Key string
	// Host is the Host the client asked for, normalized: lower case, no
	// port, no trailing dot (the request's Host may have been replaced by
	// a site's origin_host).
	Host string
	// Scheme is the scheme keyed, "http" or "https" (see Key); the
	// request tells upstream in X-Forwarded-Proto.
	Scheme string
	// FromPeer is set when the fill serves a verified peer's request: it
	// must go to the origin (or the tier the hop allows), never to another
	// peer of the region (the loop guard).
	FromPeer bool
	// Peer is the verified peer request the fill serves (who signed it and
	// why); zero for the edge's own clients.
	Peer Peer
	// Replica is set when the fill makes this edge a replica of the key's
	// owner: the copy comes from the owner, never from the origin, and the
	// owner's answer is kept in full, not as a hot copy.
	Replica bool
}

// Peer is what a cluster's peer endpoint verified about a peer's request:
// who signed it and why it was sent (the hop, covered by the signature).
// Tier and loop decisions rest on it, never on client header fields such
// as Via.
type Peer struct {
	// From is the signing member's name.
	From string
	// Hop is the signed reason for the request ("owner", "shield",
	// "failover", ...; see the cluster package), "" for a signature
	// version that carries none.
	Hop string
}

// Upstream answers an edge's fills. The edge calls Fill with the request
// to send (a bodiless GET for the site's origin, with the edge's own
// validators) and the fill's Info; the answer's body is read by the edge
// and closed. An Upstream must not modify req: clone it to change it.
// The request's context ends when the fill is called off or times out.
type Upstream interface {
	Fill(req *http.Request, info Info) (*http.Response, error)
}

// Func is an Upstream made of a function.
type Func func(req *http.Request, info Info) (*http.Response, error)

// Fill calls f.
func (f Func) Fill(req *http.Request, info Info) (*http.Response, error) { return f(req, info) }

// PeerHeader is set on a fill's response by an Upstream when the answer
// came from a peer of the region (the key's owner, or its replica) rather
// than from the origin. The edge then keeps a copy only if the key is hot
// (unless the fill is a replica's), and never passes the field on. An
// origin cannot set it: [Origin] removes it from the origin's answers.
const PeerHeader = "Meridian-Peer-Fill"

// Origin is the Upstream at the end of every path: it sends the fill to
// rt (an origin pool) as it is. The origin's answer never carries
// PeerHeader, whatever the origin sent.
func Origin(rt http.RoundTripper) Upstream { return origin{rt} }

type origin struct{ rt http.RoundTripper }

func (o origin) Fill(req *http.Request, _ Info) (*http.Response, error) {
	resp, err := o.rt.RoundTrip(req)
	if resp != nil {
		resp.Header.Del(PeerHeader)
	}
	return resp, err
}
