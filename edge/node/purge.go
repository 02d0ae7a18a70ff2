package node

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/cluster"
)

// purgePath is the internal endpoint, on the peer listener, where members
// and other regions deliver purges (signed, Host cluster.InternalHost).
const purgePath = "/_meridian/purge"

// maxPending bounds the purges kept for one unreachable peer; past it the
// oldest are dropped (that peer's cache is long out of date by then, and a
// restart empties it anyway).
const maxPending = 1024

// purgeTarget encodes a purge as an internal request target (decoded
// by purgeOfTarget).
func purgeTarget(p edge.Purge) string {
	q := url.Values{}
	for _, f := range purgeFields(&p) {
		for _, v := range *f.list {
			q.Add(f.name, v)
		}
	}
	if p.Scope != nil {
		// An empty scope (no host at all) stays distinct from none.
		q.Set("scoped", "1")
	}
	if p.Soft {
		q.Set("soft", "1")
	}
	return purgePath + "?" + q.Encode()
}

// purgeOfTarget decodes an internal purge's query (see purgeTarget).
func purgeOfTarget(q url.Values) edge.Purge {
	var p edge.Purge
	for _, f := range purgeFields(&p) {
		*f.list = q[f.name]
	}
	if q.Get("scoped") == "1" && p.Scope == nil {
		p.Scope = []string{}
	}
	p.Soft = q.Get("soft") == "1"
	return p
}

// purgeFields names the lists of a purge in an internal target.
func purgeFields(p *edge.Purge) []struct {
	name string
	list *[]string
} {
	return []struct {
		name string
		list *[]string
	}{{"url", &p.URLs}, {"key", &p.Keys}, {"prefix", &p.Prefixes}, {"host", &p.Hosts},
		{"site", &p.Sites}, {"ban", &p.Bans}, {"scope", &p.Scope}}
}

// serveInternal answers the members' internal requests (after the peer
// endpoint verified their signature).
func (n *Node) serveInternal(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == cluster.ReplicatePath {
		n.serveReplicate(w, r)
		return
	}
	if r.URL.Path != purgePath {
		http.NotFound(w, r)
		return
	}
	p := purgeOfTarget(r.URL.Query())
	purged, err := n.handler.Purge(p)
	if errors.Is(err, edge.ErrTooManyBans) {
		// Not acknowledged: the sender keeps it and retries.
		http.Error(w, err.Error(), http.StatusTooManyRequests)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set(cluster.AckHeader, n.config().Name)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]int{"purged": purged})
}

// purger propagates purges to every peer and region and keeps, for each
// peer that did not acknowledge, the purges it missed, retrying until it
// does: a peer that comes back does not serve what was purged while it was
// away.
type purger struct {
	n *Node

	mu      sync.Mutex
	pending map[string][]string // peer name → internal targets not yet acked
}

// propagate is the admin API's Propagate hook.
func (p *purger) propagate(ctx context.Context, pg edge.Purge) (acked, failed []string) {
	target := purgeTarget(pg)
	acked, failed = p.n.cluster.Broadcast(ctx, target, p.n.publishedPeers())
	if len(failed) > 0 {
		p.n.purgeUnacked.Add(float64(len(failed)))
		p.mu.Lock()
		for _, name := range failed {
			q := append(p.pending[name], target)
			if len(q) > maxPending {
				q = q[len(q)-maxPending:]
			}
			p.pending[name] = q
		}
		p.mu.Unlock()
	}
	return acked, failed
}

// retryLoop redelivers missed purges until ctx ends.
func (p *purger) retryLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		work := make(map[string][]string, len(p.pending))
		for name, q := range p.pending {
			work[name] = append([]string(nil), q...)
		}
		p.mu.Unlock()
		published := p.n.publishedPeers()
		for name, targets := range work {
			done := 0
			for _, target := range targets {
				if err := p.n.cluster.SendTo(ctx, name, published[name], target); err != nil {
					break
				}
				done++
			}
			if done == 0 {
				continue
			}
			p.n.log.Info("missed purges delivered", "peer", name, "purges", done)
			p.mu.Lock()
			q := p.pending[name]
			if len(q) >= done {
				q = q[done:]
			}
			if len(q) == 0 {
				delete(p.pending, name)
			} else {
				p.pending[name] = q
			}
			p.mu.Unlock()
		}
	}
}

// pendingPeers returns how many purges each peer still misses.
func (p *purger) pendingPeers() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.pending))
	for name, q := range p.pending {
		out[name] = len(q)
	}
	return out
}

// publishedPeers maps every published edge but this one to its peer
// endpoint: the regions table, this node's own region included, so that a
// member that is down now is still expected to acknowledge.
func (n *Node) publishedPeers() map[string]string {
	cfg := n.config()
	out := map[string]string{}
	for _, r := range cfg.Regions {
		for _, e := range r.Edges {
			if e.Name != cfg.Name {
				out[e.Name] = e.Peer
			}
		}
	}
	return out
}

// serveReplicate takes a replica copy of an object the key's owner is
// filling: the edge fills it from the owner and keeps it in full.
func (n *Node) serveReplicate(w http.ResponseWriter, r *http.Request) {
	req, ok := cluster.ReplicaRequest(r)
	if !ok {
		http.Error(w, "replicate: host and target required", http.StatusBadRequest)
		return
	}
	n.handler.ServeReplica(discardResponse{h: http.Header{}}, req)
	w.Header().Set(cluster.AckHeader, n.config().Name)
	w.WriteHeader(http.StatusNoContent)
}

// discardResponse is the ResponseWriter of a replica fill: the copy goes
// to the store, not to anyone.
type discardResponse struct{ h http.Header }

func (d discardResponse) Header() http.Header         { return d.h }
func (d discardResponse) Write(p []byte) (int, error) { return len(p), nil }
func (d discardResponse) WriteHeader(int)             {}
