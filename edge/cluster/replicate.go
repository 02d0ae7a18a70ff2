package cluster

import (
	"context"
	"net/http"
	"net/url"

	"github.com/meridiancdn/meridian/edge/fill"
)

// ReplicaHeader marks the fill a replica makes from the owner, so that an
// owner of an earlier version does not replicate it again. Only members
// send it; an owner believes it only on a request the peer endpoint
// verified (a client's cannot stop replication), and decides first on
// the signed hop "replica". The origin never sees it.
const ReplicaHeader = "Meridian-Replica"

// ReplicatePath is the internal endpoint where the owner of a key asks a
// replica to take a copy (signed, Host InternalHost).
const ReplicatePath = "/_meridian/replicate"

// replicate asks the key's other replicas to take a copy of what this
// member, its owner, is filling from upstream: each fetches it from this
// member (joining the fill in flight, or a hit once stored), so the copy
// costs no origin request. It runs in the background, owned by the Member.
func (t *peerTransport) replicate(req *http.Request, fi fill.Info, resp *http.Response) {
	n := t.n
	if n.cfg.Replicas < 2 || resp == nil || resp.StatusCode != http.StatusOK || isReplicaFill(req, fi) || n.closed.Load() {
		return
	}
	v := n.view.Load()
	if v == nil {
		return
	}
	if owner, ok := v.ring.Owner(fi.Key); !ok || owner.Name != n.cfg.Name {
		return
	}
	q := url.Values{"host": {fi.Host}, "target": {req.URL.RequestURI()}}
	if fi.Scheme == "https" {
		q.Set("scheme", "https") // part of the key: the copy must be the same one
	}
	target := ReplicatePath + "?" + q.Encode()
	for _, p := range v.ring.Replicas(fi.Key, n.cfg.Replicas)[1:] {
		addr := v.addrs[p.Name]
		if addr == "" || p.Name == n.cfg.Name {
			continue
		}
		n.wg.Add(1)
		go func(name, addr string) {
			defer n.wg.Done()
			ctx, cancel := context.WithTimeout(n.ctx, 2*n.cfg.PeerTimeout)
			defer cancel()
			if err := n.send(ctx, name, addr, target); err != nil {
				n.log.Debug("replica copy not taken", "replica", name, "key", fi.Key, "err", err)
			}
		}(p.Name, addr)
	}
}

// isReplicaFill reports whether an owner's fill serves a replica taking its
// copy: the peer endpoint verified the hop "replica", or (from a member of
// an earlier version) verified a request that carries ReplicaHeader.
func isReplicaFill(req *http.Request, fi fill.Info) bool {
	return fi.FromPeer && (fi.Peer.Hop == hopReplica || req.Header.Get(ReplicaHeader) != "")
}

// ReplicaRequest turns a replicate request that the peer endpoint verified
// into the fill a replica makes: a GET for the object, for the edge's
// replica entry point (edge.Handler.ServeReplica), which keeps the owner's
// answer in full and fills it from the owner only. ok is false for a
// malformed request.
func ReplicaRequest(r *http.Request) (*http.Request, bool) {
	q := r.URL.Query()
	host, target := q.Get("host"), q.Get("target")
	if host == "" || len(target) == 0 || target[0] != '/' {
		return nil, false
	}
	// A fresh context: the copy is taken in the background, whatever
	// becomes of the owner's request.
	out, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+host+target, nil)
	if err != nil {
		return nil, false
	}
	out.Host = host
	out.RequestURI = target
	out.RemoteAddr = r.RemoteAddr
	out.Header.Set(ReplicaHeader, "1")
	if q.Get("scheme") == "https" {
		// The edge believes a replica fill's X-Forwarded-Proto, as a
		// peer's: the copy is keyed, and filled, as the owner's.
		out.Header.Set("X-Forwarded-Proto", "https")
	}
	return out, true
}
