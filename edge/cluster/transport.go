package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"time"

	"github.com/meridiancdn/meridian/edge/fill"
	"github.com/meridiancdn/meridian/ring"
)

// peerBufferBytes is the largest peer answer read whole before it is
// handed to the edge: a peer that dies in the middle of such a body is
// retried from the next source, unseen by the client. Larger bodies stream
// through, resumed from the next source if the peer dies (see resume.go).
// 1 MiB covers the typical web object while bounding the memory held per
// fill.
const peerBufferBytes = 1 << 20

// drainBytes is how much of a refused peer answer is read so that its
// connection can be reused.
const drainBytes = 4 << 10

// maxInterim bounds the interim (1xx) answers one peer request may get:
// at one per PeerTimeout/4 it is more than an hour of a slow origin.
const maxInterim = 16 << 10

// maxConsults bounds the members a new owner asks for a copy before it
// goes upstream (each costs one round trip when it has none).
const maxConsults = 2

// Errors of peer requests that are not the peer's failure.
var (
	// errRingsDisagree: the member asked is itself asking a peer for the
	// object (HeaderPeerLoop).
	errRingsDisagree = errors.New("the member is asking a peer for this object itself (rings disagree)")
	// errPeerSilent: neither an interim answer nor the response header
	// came within PeerTimeout.
	errPeerSilent = errors.New("no sign of life within peer_timeout")
	// errConsultNoFill refuses the fill of a consult: it is answered from
	// the cache or not at all.
	errConsultNoFill = errors.New("a consult is answered from the cache only, never filled")
	// errTooManyInterim ends a peer request that gets interim answers
	// without end.
	errTooManyInterim = errors.New("too many interim answers")
)

// Transport wraps a site's upstream path (the origin, or the shield and
// failover in front of it) so that the edge's fills go to the key's owner
// in the region: see the package documentation. A fill goes upstream
// unchanged when it is not a GET, or when the ring is empty, this member
// owns the key, or the node is closed; a fill that serves a peer's request
// (fill.Info.FromPeer, set by the edge for what the peer endpoint
// verified: the loop guard) is never sent to another peer, apart from the
// cache-only consult of a new owner. The caller's request is never
// modified.
func (n *Member) Transport(origin fill.Upstream) fill.Upstream {
	return &peerTransport{n: n, origin: origin}
}

// peerTransport is the Upstream Transport returns.
type peerTransport struct {
	n      *Member
	origin fill.Upstream
}

var _ fill.Upstream = (*peerTransport)(nil)

func (t *peerTransport) Fill(req *http.Request, fi fill.Info) (*http.Response, error) {
	if req.Method != http.MethodGet {
		return t.toOrigin(req, fi)
	}
	switch {
	case fi.Peer.Hop == hopConsult:
		// The peer endpoint made it only-if-cached; a background
		// refresh it started must not reach upstream either.
		return nil, errConsultNoFill
	case fi.Replica:
		return t.replicaCopy(req, fi)
	case fi.FromPeer:
		return t.ownerFill(req, fi)
	}
	if p, ok := t.n.Owner(fi.Key); !ok || p.Name == t.n.cfg.Name || t.n.closed.Load() {
		return t.ownerFill(req, fi)
	}
	return t.viaPeers(req, fi)
}

// viaPeers fills from the key's owner, or when it fails from the key's
// live replica, and from upstream when no peer answers. A streaming
// answer whose peer dies is resumed from the next of these sources.
func (t *peerTransport) viaPeers(req *http.Request, fi fill.Info) (*http.Response, error) {
	tried := map[string]bool{}
	for range 1 + t.n.cfg.Replicas {
		name, addr, ok := t.n.route(fi.Key)
		if !ok || tried[name] {
			break
		}
		tried[name] = true
		resp, err := t.n.askPeer(req, fi, name, addr, hopOwner)
		if err == nil {
			// A 304 refreshes a copy this edge already holds; the mark
			// would only be merged into that copy's stored header fields.
			if resp.StatusCode != http.StatusNotModified {
				resp.Header.Set(fill.PeerHeader, name)
			}
			t.resumable(req, resp, name, func(r *http.Request) (*http.Response, error) { return t.viaPeers(r, fi) })
			return resp, nil
		}
		if req.Context().Err() != nil {
			return nil, err // the fill itself was called off: no origin either
		}
		if errors.Is(err, errRingsDisagree) {
			t.n.log.Debug("peer is asking for the object itself; filling from upstream", "peer", name, "key", fi.Key)
			break
		}
		t.n.markSuspect(name)
		t.n.log.Warn("peer fill failed; trying the next source", "peer", name, "key", fi.Key, "err", err)
	}
	return t.toOrigin(req, fi)
}

// replicaCopy fills a replica's copy from the key's owner (or, with more
// than two replicas, another live replica): never from upstream, since
// rings may disagree while members join.
func (t *peerTransport) replicaCopy(req *http.Request, fi fill.Info) (*http.Response, error) {
	name, addr, ok := t.n.route(fi.Key)
	if !ok {
		return nil, errReplicaWithoutOwner
	}
	resp, err := t.n.askPeer(req, fi, name, addr, hopReplica)
	if err != nil {
		if req.Context().Err() == nil && !errors.Is(err, errRingsDisagree) {
			t.n.markSuspect(name)
		}
		return nil, fmt.Errorf("replica copy: %w", err)
	}
	if resp.StatusCode != http.StatusNotModified {
		resp.Header.Set(fill.PeerHeader, name)
	}
	return resp, nil
}

// ownerFill is the fill of the key's owner (or of a member answering a
// peer): it asks the members that may hold a copy (consult) and then
// upstream, and has the key's replicas take a copy of what upstream sent.
func (t *peerTransport) ownerFill(req *http.Request, fi fill.Info) (*http.Response, error) {
	if resp := t.consult(req, fi); resp != nil {
		return resp, nil
	}
	if req.Context().Err() != nil {
		return nil, context.Cause(req.Context())
	}
	resp, err := t.toOrigin(req, fi)
	t.replicate(req, fi, resp)
	return resp, err
}

// consult asks the members that may hold a copy of the key (see
// Member.holders), from their caches only, and returns the first one's
// answer; nil if none has one. The answer is not marked as a peer's: this
// member owns the key and keeps the copy.
func (t *peerTransport) consult(req *http.Request, fi fill.Info) *http.Response {
	for _, h := range t.n.holders(fi.Key) {
		resp, err := t.n.askPeer(req, fi, h.name, h.addr, hopConsult)
		if err != nil {
			if req.Context().Err() != nil {
				return nil
			}
			if !errors.Is(err, errRingsDisagree) {
				t.n.markSuspect(h.name)
			}
			t.n.log.Debug("consult failed", "peer", h.name, "key", fi.Key, "err", err)
			continue
		}
		if resp.StatusCode >= 500 { // 504: not in its cache
			drain(resp)
			continue
		}
		t.n.consulted.Add(1)
		t.n.log.Debug("copy found at a peer", "peer", h.name, "key", fi.Key)
		t.resumable(req, resp, h.name, func(r *http.Request) (*http.Response, error) { return t.toOrigin(r, fi) })
		return resp
	}
	return nil
}

// errReplicaWithoutOwner refuses a replica fill that would go upstream.
var errReplicaWithoutOwner = errors.New("replica copy: this member is not a replica of a live owner")

// toOrigin sends req upstream (the shield, the failover regions, the
// origin) as it is. What comes back is not a peer's of this region: the
// peer-fill mark is removed from its answers.
func (t *peerTransport) toOrigin(req *http.Request, fi fill.Info) (*http.Response, error) {
	if req.Header.Get(ReplicaHeader) != "" {
		req = req.Clone(req.Context()) // an internal mark, not for the origin
		req.Header.Del(ReplicaHeader)
	}
	resp, err := t.origin.Fill(req, fi)
	if resp != nil {
		resp.Header.Del(fill.PeerHeader)
	}
	return resp, err
}

// route returns the member a fill of key should go to: its owner, or when
// the owner is suspect and there are replicas, its first live replica;
// never this member.
func (n *Member) route(key string) (owner, addr string, ok bool) {
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

// holder is a member that may hold a copy of a key.
type holder struct{ name, addr string }

// holders returns the live members other than this one that may hold a
// copy of key, at most maxConsults: with replicas, the key's other
// replicas; and for handoffWindow after a membership change, the key's
// owner and replicas on the ring before it (for a member that just
// started, the ring without it: who held its keys while it was away).
func (n *Member) holders(key string) []holder {
	v := n.view.Load()
	if v == nil || n.closed.Load() {
		return nil
	}
	var out []holder
	add := func(ps []ring.Peer) {
		for _, p := range ps {
			if len(out) == maxConsults {
				return
			}
			addr := v.addrs[p.Name]
			if p.Name == n.cfg.Name || addr == "" || n.isSuspect(p.Name) ||
				slicesContainsName(out, p.Name) {
				continue
			}
			out = append(out, holder{p.Name, addr})
		}
	}
	if n.cfg.Replicas >= 2 {
		add(v.ring.Replicas(key, n.cfg.Replicas))
	}
	if prev := v.prev.Load(); prev != nil && n.now().Sub(v.since) < n.preset.handoffWindow {
		add(prev.Replicas(key, n.cfg.Replicas))
	}
	return out
}

func slicesContainsName(hs []holder, name string) bool {
	for _, h := range hs {
		if h.name == name {
			return true
		}
	}
	return false
}

// askPeer sends a fill to a member's peer endpoint for hop: a clone of req
// with the same path, query and headers, the client's Host, signed. The
// member must show it is alive within PeerTimeout (an interim answer or
// the header) and again within each PeerTimeout until the header comes;
// how long the fill itself takes is bounded by req's context alone (the
// edge's first-byte timeout). It returns an error for any answer that is
// not the member's own.
func (n *Member) askPeer(req *http.Request, fi fill.Info, name, addr, hop string) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	silent := time.AfterFunc(n.cfg.PeerTimeout, func() { cancel(errPeerSilent) })
	interim := 0
	trace := &httptrace.ClientTrace{Got1xxResponse: func(int, textproto.MIMEHeader) error {
		if interim++; interim > maxInterim {
			return errTooManyInterim
		}
		silent.Reset(n.cfg.PeerTimeout)
		return nil
	}}
	out := req.Clone(httptrace.WithClientTrace(ctx, trace))
	out.URL.Scheme = n.scheme
	out.URL.Host = addr
	out.URL.User = nil
	out.Host = fi.Host
	out.RequestURI = ""
	stripSignature(out.Header)
	target := out.URL.RequestURI()
	n.sig.sign(out.Header, http.MethodGet, out.Host, target, n.cfg.Name, hop, name)
	if hop == hopOwner {
		// While this member waits for the owner's header, the owner's
		// own fill of the object must not wait on this member.
		done := n.asking(out.Host, target, out.Header.Get("Range"))
		defer done()
	}
	fail := func(err error) (*http.Response, error) {
		silent.Stop()
		if context.Cause(ctx) == errPeerSilent {
			err = fmt.Errorf("%w (%s)", errPeerSilent, n.cfg.PeerTimeout)
		}
		cancel(nil)
		return nil, fmt.Errorf("peer %s (%s): %w", name, addr, err)
	}
	resp, err := n.client.RoundTrip(out)
	if err != nil {
		return fail(err)
	}
	if !silent.Stop() {
		resp.Body.Close() // its context ended as the header came
		return fail(errPeerSilent)
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	if resp.StatusCode == http.StatusLoopDetected && resp.Header.Get(HeaderPeerLoop) != "" {
		drain(resp)
		return nil, fmt.Errorf("peer %s (%s): %w", name, addr, errRingsDisagree)
	}
	if !answeredBy(resp.Header, name) {
		drain(resp)
		return nil, fmt.Errorf("peer %s (%s): status %d without the member's Cache-Status entry", name, addr, resp.StatusCode)
	}
	if err := bufferBody(resp, peerBufferBytes); err != nil {
		return nil, fmt.Errorf("peer %s (%s): body: %w", name, addr, err)
	}
	return resp, nil
}

// drain reads a little of an unused answer, so that its connection can be
// reused, and closes it.
func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, drainBytes))
	resp.Body.Close()
}

// cancelBody ends a peer request's context when its body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
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
	resp.Body = wholeBody{bytes.NewReader(buf)}
	return nil
}

// wholeBody is a peer answer's body read whole.
type wholeBody struct{ *bytes.Reader }

func (wholeBody) Close() error { return nil }

type readCloser struct {
	io.Reader
	io.Closer
}

// markSuspect passes over a member that failed to answer for SuspectFor.
func (n *Member) markSuspect(name string) {
	n.smu.Lock()
	n.suspect[name] = n.now().Add(n.cfg.SuspectFor)
	n.nSuspect.Store(int32(len(n.suspect)))
	n.smu.Unlock()
	n.suspected.Add(1)
}

// isSuspect reports whether a member is being passed over. With no
// suspects, as almost always, it takes no lock.
func (n *Member) isSuspect(name string) bool {
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
func (n *Member) clearSuspect(name string) {
	n.smu.Lock()
	delete(n.suspect, name)
	n.nSuspect.Store(int32(len(n.suspect)))
	n.smu.Unlock()
}

// asking registers that this member waits for a peer's answer for the
// object at host and target, until the returned func is called. The
// Range of a slice's fill (see edge's slice_bytes) is part of what is
// asked: the slices of one object are owned by different members, which
// ask each other for them without a loop.
func (n *Member) asking(host, target, rng string) (done func()) {
	k := host + " " + target + " " + rng
	n.amu.Lock()
	n.inflight[k]++
	n.amu.Unlock()
	return func() {
		n.amu.Lock()
		if n.inflight[k]--; n.inflight[k] <= 0 {
			delete(n.inflight, k)
		}
		n.amu.Unlock()
	}
}

// isAsking reports whether this member waits for a peer's answer for the
// object at host and target: for the range rng of it (a slice, or the
// rest of a body being resumed), or for the whole object.
func (n *Member) isAsking(host, target, rng string) bool {
	n.amu.Lock()
	defer n.amu.Unlock()
	k := host + " " + target + " "
	return n.inflight[k+rng] > 0 || rng != "" && n.inflight[k] > 0
}

// Consulted counts the fills this member, as a key's owner, took from a
// peer's copy (a replica or the previous owner) instead of upstream.
func (n *Member) Consulted() uint64 { return n.consulted.Load() }
