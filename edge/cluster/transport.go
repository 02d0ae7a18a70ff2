package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/ring"
)

// peerBufferBytes is the largest peer answer read whole before it is
// handed to the edge: a peer that dies in the middle of such a body is
// retried from the origin, unseen by the client. Larger bodies stream
// through (and a break shows as a short body, as from an origin). 1 MiB
// covers the typical web object while bounding the memory held per fill.
const peerBufferBytes = 1 << 20

// drainBytes is how much of a refused peer answer is read so that its
// connection can be reused.
const drainBytes = 4 << 10

// Transport wraps a site's upstream (origin) so that the edge's fills go
// to the key's owner in the region: see the package documentation. A
// request goes to origin unchanged when it is not an edge fill, is a
// peer's own fill (edge.FromPeer: the loop guard), is not a GET, or when
// the ring is empty, this member owns the key, the owner is suspect, or
// the node is closed. The caller's request is never modified.
func (n *Node) Transport(origin http.RoundTripper) http.RoundTripper {
	return &peerTransport{n: n, origin: origin}
}

// peerTransport is the RoundTripper Transport returns.
type peerTransport struct {
	n      *Node
	origin http.RoundTripper
}

func (t *peerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	fi, ok := edge.FillInfoFrom(req.Context())
	if !ok || req.Method != http.MethodGet {
		return t.toOrigin(req)
	}
	if fi.FromPeer && !fi.Replica {
		resp, err := t.toOrigin(req)
		t.replicate(req, fi, resp)
		return resp, err
	}
	owner, addr, ok := t.n.route(fi.Key)
	if !ok {
		if fi.Replica {
			// A replica copy comes from the owner or not at all: it must
			// never cost an origin request (rings may disagree while
			// members join).
			return nil, errReplicaWithoutOwner
		}
		resp, err := t.toOrigin(req)
		t.replicate(req, fi, resp)
		return resp, err
	}
	resp, err := t.n.askPeer(req, fi, owner, addr)
	if err == nil {
		// A 304 refreshes a copy this edge already holds; the mark would
		// only be merged into that copy's stored header fields.
		if resp.StatusCode != http.StatusNotModified {
			resp.Header.Set(edge.PeerFillHeader, owner)
		}
		return resp, nil
	}
	if req.Context().Err() != nil {
		return nil, err // the fill itself was called off: no origin either
	}
	t.n.markSuspect(owner)
	if fi.Replica {
		return nil, fmt.Errorf("replica copy: %w", err)
	}
	t.n.log.Warn("peer fill failed; filling from the origin", "owner", owner, "key", fi.Key, "err", err)
	return t.toOrigin(req)
}

// errReplicaWithoutOwner refuses a replica fill that would go upstream.
var errReplicaWithoutOwner = errors.New("replica copy: this member is not a replica of a live owner")

// toOrigin sends req upstream as it is. An origin cannot pose as a peer:
// the peer-fill mark is removed from its answers.
func (t *peerTransport) toOrigin(req *http.Request) (*http.Response, error) {
	if req.Header.Get(ReplicaHeader) != "" {
		req = req.Clone(req.Context()) // an internal mark, not for the origin
		req.Header.Del(ReplicaHeader)
	}
	resp, err := t.origin.RoundTrip(req)
	if resp != nil {
		resp.Header.Del(edge.PeerFillHeader)
	}
	return resp, err
}

// CloseIdleConnections closes the origin's idle connections (the edge calls
// it on Close). The peer connections belong to the Node.
func (t *peerTransport) CloseIdleConnections() {
	if c, ok := t.origin.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// route returns the owner of key and its peer endpoint when the fill should
// go to it.
func (n *Node) route(key string) (owner, addr string, ok bool) {
	if n.closed.Load() {
		return "", "", false
	}
	v := n.view.Load()
	if v == nil {
		return "", "", false
	}
	p, ok := v.ring.Owner(key)
	if !ok || p.Name == n.cfg.Name {
		return "", "", false
	}
	if n.isSuspect(p.Name) {
		// The owner is not answering: with replication, its replica has
		// the copy (unless that is us, and we missed).
		if n.cfg.Replicas < 2 {
			return "", "", false
		}
		p, ok = ring.Peer{}, false
		for _, r := range v.ring.Replicas(key, n.cfg.Replicas)[1:] {
			if r.Name != n.cfg.Name && !n.isSuspect(r.Name) {
				p, ok = r, true
				break
			}
		}
		if !ok {
			return "", "", false
		}
	}
	addr = v.addrs[p.Name]
	return p.Name, addr, addr != ""
}

// askPeer sends a fill to the owner's peer endpoint: a clone of req with
// the same path, query and headers, the client's Host, signed. It returns
// an error for any answer that is not the owner's own.
func (n *Node) askPeer(req *http.Request, fi edge.FillInfo, owner, addr string) (*http.Response, error) {
	out := req.Clone(req.Context())
	out.URL.Scheme = "http"
	out.URL.Host = addr
	out.URL.User = nil
	out.Host = fi.Host
	out.RequestURI = ""
	stripSignature(out.Header)
	n.sig.sign(out.Header, http.MethodGet, out.Host, out.URL.RequestURI(), n.cfg.Name)
	resp, err := n.client.RoundTrip(out)
	if err != nil {
		return nil, fmt.Errorf("peer %s (%s): %w", owner, addr, err)
	}
	if !answeredBy(resp.Header, owner) {
		io.Copy(io.Discard, io.LimitReader(resp.Body, drainBytes))
		resp.Body.Close()
		return nil, fmt.Errorf("peer %s (%s): status %d without the owner's Cache-Status entry", owner, addr, resp.StatusCode)
	}
	if err := bufferBody(resp, peerBufferBytes); err != nil {
		return nil, fmt.Errorf("peer %s (%s): body: %w", owner, addr, err)
	}
	return resp, nil
}

// answeredBy reports whether the last Cache-Status entry (RFC 9211: the
// cache nearest the client comes last) names the cache name.
func answeredBy(h http.Header, name string) bool {
	vs := h["Cache-Status"]
	if len(vs) == 0 {
		return false
	}
	last := vs[len(vs)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	if i := strings.IndexByte(last, ';'); i >= 0 {
		last = last[:i]
	}
	last = strings.TrimSpace(last)
	return last == name || last == `"`+name+`"`
}

// bufferBody reads a body of at most limit bytes whole, so that a broken
// body is an error here rather than a short body later. A larger body is
// left to stream, with what was read put back in front.
func bufferBody(resp *http.Response, limit int64) error {
	if resp.ContentLength > limit {
		return nil
	}
	buf, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		resp.Body.Close()
		return err
	}
	if int64(len(buf)) > limit {
		resp.Body = readCloser{io.MultiReader(bytes.NewReader(buf), resp.Body), resp.Body}
		return nil
	}
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(buf))
	return nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// markSuspect passes over an owner that failed to answer for SuspectFor.
func (n *Node) markSuspect(name string) {
	n.smu.Lock()
	n.suspect[name] = n.now().Add(n.cfg.SuspectFor)
	n.nSuspect.Store(int32(len(n.suspect)))
	n.smu.Unlock()
}

// isSuspect reports whether an owner is being passed over. With no
// suspects, as almost always, it takes no lock.
func (n *Node) isSuspect(name string) bool {
	if n.nSuspect.Load() == 0 {
		return false
	}
	n.smu.Lock()
	defer n.smu.Unlock()
	until, ok := n.suspect[name]
	if ok && !n.now().Before(until) {
		delete(n.suspect, name)
		n.nSuspect.Store(int32(len(n.suspect)))
		ok = false
	}
	return ok
}

// clearSuspect forgets a suspicion, when the member (re)joins.
func (n *Node) clearSuspect(name string) {
	n.smu.Lock()
	delete(n.suspect, name)
	n.nSuspect.Store(int32(len(n.suspect)))
	n.smu.Unlock()
}
