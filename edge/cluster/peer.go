package cluster

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/meridiancdn/meridian/edge/fill"
)

// HeaderPeerLoop marks a member's refusal of an owner fill for an object
// it is itself asking a peer for: the two members' rings disagree (a
// membership change is spreading), and each waiting on the other would
// last until the fill's timeout. The asker fills from upstream instead,
// without suspecting the member.
const HeaderPeerLoop = "Meridian-Peer-Loop"

// minBeat bounds how often the peer endpoint sends its liveness signal.
const minBeat = 10 * time.Millisecond

// PeerServer serves the requests the peer endpoint verified: peer is the
// signing member and the signed hop. *edge.Handler is one (its ServePeer
// serves a peer's request from its cache or fills it from upstream, never
// from another peer); a node puts its internal endpoints in front.
type PeerServer interface {
	ServePeer(w http.ResponseWriter, r *http.Request, peer fill.Peer)
}

// PeerServerFunc is a PeerServer made of a function.
type PeerServerFunc func(w http.ResponseWriter, r *http.Request, peer fill.Peer)

// ServePeer calls f.
func (f PeerServerFunc) ServePeer(w http.ResponseWriter, r *http.Request, peer fill.Peer) {
	f(w, r, peer)
}

// PeerHandler serves the peer endpoint: it refuses every request that is
// not a signed GET or HEAD without a body from a member of the region, and
// hands the others to next with what it verified (the sender and the
// hop), so that the edge serves them from its cache or fills them from
// upstream, never from another peer. Nothing that is refused reaches
// next, and nothing but a verified signature makes a request a peer's.
//
// While next has not started its answer, the endpoint sends an interim
// 102 Processing every PeerTimeout/4: the asker's proof that this member
// is alive and working on the fill, however long the origin takes. A
// "consult" hop is answered from the cache only (only-if-cached), and an
// "owner" hop for an object this member is itself asking a peer for is
// refused with HeaderPeerLoop (see there).
//
// Start serves it on the peer listener; it is exported for servers that
// mount it themselves.
func (n *Member) PeerHandler(next PeerServer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			refuse(w, http.StatusMethodNotAllowed, "method %s not allowed (GET and HEAD only)", r.Method)
			return
		}
		if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
			refuse(w, http.StatusBadRequest, "request body not allowed")
			return
		}
		from, hop, err := n.sig.verify(r.Method, r.Host, r.RequestURI, r.Header)
		if errors.Is(err, errReplayed) {
			n.replays.Add(1)
		}
		if errors.Is(err, errReplayFull) {
			// Not the member's own answer (no Cache-Status): the asker
			// fills from upstream.
			n.log.Warn("peer request refused", "remote", r.RemoteAddr, "uri", r.RequestURI, "err", err)
			refuse(w, http.StatusServiceUnavailable, "request refused: %v", err)
			return
		}
		if err != nil {
			n.log.Warn("peer request refused", "remote", r.RemoteAddr, "uri", r.RequestURI, "err", err)
			refuse(w, http.StatusForbidden, "request refused: %v", err)
			return
		}
		n.log.Debug("peer request", "from", from, "hop", hop, "host", r.Host, "uri", r.RequestURI)
		stripSignature(r.Header) // not for the origin
		// The link's TLS is the members', not the client's: the edge
		// keys and forwards the asker's scheme (its X-Forwarded-Proto).
		r.TLS = nil
		switch hop {
		case hopConsult:
			// Whatever the asker's headers say: a consult never fills.
			r.Header["Cache-Control"] = []string{"only-if-cached"}
		case hopOwner:
			if n.isAsking(r.Host, r.RequestURI, r.Header.Get("Range")) {
				w.Header().Set(HeaderPeerLoop, n.cfg.Name)
				refuse(w, http.StatusLoopDetected, "this member is asking a peer for this object itself (the rings disagree)")
				return
			}
		}
		// The peer gate (Config.PeerLimits) caps the fills other members
		// make this one do at once. Its refusal is this member's own
		// answer (its Cache-Status entry), so that the asker serves it (or
		// a stale copy) rather than suspecting a busy member and filling
		// from upstream itself, which would add load where it hurts.
		if err := n.peerGate.Acquire(r.Context()); err != nil {
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Cache-Status", n.cfg.Name+"; detail=peer-overloaded")
			refuse(w, http.StatusServiceUnavailable, "too many peer requests in flight: %v", err)
			return
		}
		defer n.peerGate.Release()
		if hop != "" && r.Host != InternalHost {
			// A v2 asker reads interim answers as liveness; a v1 one
			// might pass them on to its client, so it gets none.
			hw := newHeartbeatWriter(w, max(n.cfg.PeerTimeout/4, minBeat))
			defer hw.stop()
			w = hw
		}
		next.ServePeer(w, r, fill.Peer{From: from, Hop: hop})
	})
}

// refuse answers with a short plain-text error that is never cached.
// Fields already set on w (Cache-Status, Retry-After) are kept.
func refuse(w http.ResponseWriter, status int, format string, args ...any) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintf(w, "meridian peer: %d %s: %s\n", status, http.StatusText(status), fmt.Sprintf(format, args...))
}

// heartbeatWriter sends 102 Processing every interval until the handler
// writes its answer's header. The handler writes its fields into a map of
// its own, copied to the connection's on WriteHeader, so that an interim
// answer written from the timer never reads a map the handler is
// writing; mu serializes every write to the connection until the header
// is out, after which no heartbeat writes any more.
type heartbeatWriter struct {
	w      http.ResponseWriter
	header http.Header // the handler's fields, until sent
	every  time.Duration

	mu    sync.Mutex
	sent  bool // the final header was written
	done  bool // the handler returned
	timer *time.Timer
}

func newHeartbeatWriter(w http.ResponseWriter, every time.Duration) *heartbeatWriter {
	h := &heartbeatWriter{w: w, header: http.Header{}, every: every}
	h.mu.Lock()
	h.timer = time.AfterFunc(every, h.beat)
	h.mu.Unlock()
	return h
}

// beat sends one interim answer and schedules the next.
func (h *heartbeatWriter) beat() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sent || h.done {
		return
	}
	// The connection's header map is empty between writes (see
	// writeHeaderLocked): the interim answer carries no fields.
	h.w.WriteHeader(http.StatusProcessing)
	h.timer.Reset(h.every)
}

// stop ends the heartbeats; the handler has returned.
func (h *heartbeatWriter) stop() {
	h.mu.Lock()
	h.done = true
	h.timer.Stop()
	h.mu.Unlock()
}

func (h *heartbeatWriter) Header() http.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sent {
		return h.w.Header()
	}
	return h.header
}

func (h *heartbeatWriter) WriteHeader(code int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.writeHeaderLocked(code)
}

func (h *heartbeatWriter) writeHeaderLocked(code int) {
	if h.sent {
		h.w.WriteHeader(code) // superfluous: net/http says so in its log
		return
	}
	wh := h.w.Header()
	for k, vs := range h.header {
		wh[k] = vs
	}
	h.w.WriteHeader(code)
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// net/http keeps the fields after an interim answer (RFC 8297);
		// the next one must not repeat them.
		clear(wh)
		return
	}
	h.sent = true
	h.timer.Stop()
}

func (h *heartbeatWriter) Write(p []byte) (int, error) {
	h.mu.Lock()
	if !h.sent {
		h.writeHeaderLocked(http.StatusOK)
	}
	h.mu.Unlock()
	return h.w.Write(p)
}

// Flush sends what was written; before the header it sends a 200's header,
// as net/http does.
func (h *heartbeatWriter) Flush() {
	h.mu.Lock()
	if !h.sent {
		h.writeHeaderLocked(http.StatusOK)
	}
	h.mu.Unlock()
	http.NewResponseController(h.w).Flush()
}

// Unwrap gives http.ResponseController the connection's writer.
func (h *heartbeatWriter) Unwrap() http.ResponseWriter { return h.w }
