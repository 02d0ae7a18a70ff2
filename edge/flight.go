package edge

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"time"

	"github.com/meridiancdn/meridian/edge/store"
)

// errAbandoned ends a fill that every request waiting on it has left:
// work follows demand (see Handler.leave).
var errAbandoned = errors.New("edge: fill abandoned (every client left)")

// errClosed fails a fill asked of a closed handler.
var errClosed = errors.New("edge: handler closed")

// errDraining ends a fill whose leader waited for its head on its own
// goroutine when StopWaiting came (see startFillInline): the leader
// answers as answerDraining does.
var errDraining = errors.New("edge: node stopping (stopped waiting on upstream)")

// flight is one upstream fill that any number of requests wait on. It is
// registered under its key while it runs, so concurrent misses join it, and
// removed when its body is complete and stored (groupcache's singleflight,
// cleaned up after the call; bodies go further: waiters read as bytes come).
//
// A flight lives as long as somebody wants it: the requests that wait on it
// or read its body (its parties), or a background purpose (a
// stale-while-revalidate refresh, or a stale answer served early while the
// fill goes on). When the last party leaves a flight that has no
// background purpose, the fill is called off (see Handler.leave).
//
// Locks: the handler's mu is taken before a flight's mu, and a flight's mu
// before its body's (which only the fill holds while calling out to store
// an entry: it then takes the handler's mu, never a flight's). A flight's
// hintMu is a leaf, taken under no other lock (see the package doc).
type flight struct {
	done chan struct{} // closed once res is set
	res  fillResult
	// key is the store key the fill is for; shared says the flight is
	// registered under it in Handler.flights (a solo fill is not: nobody
	// joins it).
	key    string
	shared bool
	// ctx is the fill's context (see flightContext); cancel ends it.
	ctx flightContext

	// hintMu guards hint alone, and is held while a hint is written to
	// the leader's client: it is a leaf (nothing else is locked under
	// it, and it is never taken under another lock), so a client that
	// reads slowly delays its own hints and nobody else's request.
	hintMu sync.Mutex
	hint   http.ResponseWriter // the leader's client (see writeHint); nil once it may no longer be written
	// trace is the fill's client trace: it relays 103 Early Hints (see
	// startFill).
	trace httptrace.ClientTrace

	mu         sync.Mutex
	published  bool
	leaderGone bool
	// parties counts the requests that wait on the flight or use its
	// result and have not left it; the body, once there, is told, so
	// that a streaming body never drops bytes one of them has yet to read.
	parties int
	// background says the fill is wanted even when no party is left: a
	// refresh, or a request that was answered from a stale copy early.
	background bool
	abandoned  bool // called off when the last party left
	// passDelivered says the leader's client got the whole pass response
	// (res is not written once published: others read it unlocked).
	passDelivered bool
	body          *growingBody
	// sealed is the copy of res.e that the fill stored in the store,
	// sealed, once its body was whole (nil until then, and when it was
	// not stored as it came: see storedCopy).
	sealed *store.Entry
}

// setSealed records e, the sealed copy of the flight's entry that its
// fill stored.
func (f *flight) setSealed(e *store.Entry) {
	f.mu.Lock()
	f.sealed = e
	f.mu.Unlock()
}

// storedCopy is the sealed copy of the flight's entry (res.e) that its
// fill stored, with its whole body, or nil: an answer to the flight's
// parties written from it as it is stored (serveStored) is the one
// serveEntry writes from res.e and its body, and a writer that takes
// stored answers in wire form (StoredAnswerWriter) takes it so.
func (f *flight) storedCopy() *store.Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sealed
}

// fillResult is what a fill hands to its waiters once upstream answered.
type fillResult struct {
	e    *store.Entry // the response to share (status, header, policy)
	body *growingBody // its body, complete or arriving
	// leaderEntry, when set, is what the request that started the fill
	// gets instead of e: the response with the fields that the origin
	// allowed on this response only (no-cache="field", private="field";
	// RFC 9111 §5.2.2.4 and §5.2.2.7 remove them only from reuse).
	leaderEntry *store.Entry
	stored      bool   // e is to be stored once its body is complete
	secondary   string // the secondary key of the leader's request, if e varies
	failed      bool   // upstream failed (transport error or 5xx): a stale copy may stand in
	err         error  // transport error, when there is no response at all
	fwdStatus   int    // upstream's status, 0 if none
	// remembered says the result is a recent failure of the key, given
	// again without asking upstream (see failedFills).
	remembered bool
	retryAfter time.Duration // with remembered: how long the backoff lasts
	// pass is a response that may not be shared (uncacheable, or too big to
	// hold): it goes to the leader alone, and the others fetch for
	// themselves.
	pass *http.Response
	// sealed is, in a party's copy of the result (fetch's), the sealed
	// copy of e that the fill stored, if it has (flight.storedCopy): a
	// StoredAnswerWriter is answered from it (serveStored). It is never
	// published.
	sealed *store.Entry
}

// publish hands the result to the waiters.
func (f *flight) publish(res fillResult) {
	f.stopHints()
	f.mu.Lock()
	f.res = res
	f.published = true
	if (f.leaderGone || f.abandoned) && res.pass != nil {
		res.pass.Body.Close()
		f.res.pass = nil
	}
	f.mu.Unlock()
	close(f.done)
}

// isPublished reports whether the result is out (f.done is closed),
// without a select.
func (f *flight) isPublished() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.published
}

// abandon is called by a leader whose client went away before the result.
func (f *flight) abandon() {
	f.stopHints()
	f.mu.Lock()
	f.leaderGone = true
	if f.published && f.res.pass != nil {
		f.res.pass.Body.Close()
		f.res.pass = nil
	}
	f.mu.Unlock()
}

// relayHint writes a 1xx response to the leader's client, unless the
// leader no longer waits for the fill or its result is out. It holds only
// hintMu while it writes.
func (f *flight) relayHint(code int, h textproto.MIMEHeader) {
	f.hintMu.Lock()
	defer f.hintMu.Unlock()
	if f.hint != nil {
		writeHint(f.hint, code, h)
	}
}

// got1xx is the fill's Got1xxResponse: a 103 goes to the leader's client;
// other 1xx (a peer's 102) are hop-by-hop.
func (f *flight) got1xx(code int, hdr textproto.MIMEHeader) error {
	if code == http.StatusEarlyHints {
		f.relayHint(code, hdr)
	}
	return nil
}

// writeHint writes a 1xx response with hdr's fields to w, whose header
// is left empty for the final response.
func writeHint(w http.ResponseWriter, code int, hdr textproto.MIMEHeader) {
	wh := w.Header()
	for k, vs := range hdr {
		wh[k] = vs
	}
	w.WriteHeader(code)
	clear(wh)
}

// stopHints ends the relaying of 1xx responses, waiting for one being
// written: after it the leader's client is the leader's own to answer.
// The caller holds no lock.
func (f *flight) stopHints() {
	f.hintMu.Lock()
	f.hint = nil
	f.hintMu.Unlock()
}

// keepInBackground says the fill is wanted even if every party leaves.
func (f *flight) keepInBackground() {
	f.mu.Lock()
	f.background = true
	f.mu.Unlock()
}

// running reports whether the fill still has work upstream: no result
// yet, a pass response not yet delivered, or a body still arriving. A
// failed fill, or one whose whole answer is in, has nothing to call off.
// The caller holds f.mu.
func (f *flight) running() bool {
	return !f.published || f.res.pass != nil && !f.passDelivered || f.body != nil && !f.body.finished.Load()
}

// delivered says the leader's client got the whole result: a pass
// response read to its end is not called off (nor counted) when the
// leader leaves.
func (f *flight) delivered() {
	f.mu.Lock()
	f.passDelivered = true
	f.mu.Unlock()
}

// join counts one more party. It is called under the handler's lock, so
// it only counts (see growingBody.expect).
func (f *flight) join() {
	f.mu.Lock()
	f.parties++
	if f.body != nil {
		f.body.expect(1)
	}
	f.mu.Unlock()
}

// attach makes b the flight's body, expecting the current parties.
func (f *flight) attach(b *growingBody) {
	f.mu.Lock()
	f.body = b
	b.expect(f.parties)
	f.mu.Unlock()
}

// worthFinishing reports whether a fill nobody waits for any longer is
// to go on: its body will be stored and share of it has arrived already
// (finishing a nearly complete object is cheaper than fetching it again).
// The caller holds f.mu.
func (f *flight) worthFinishing(share float64) bool {
	if !f.published || f.res.failed || f.res.pass != nil || f.res.e == nil || f.body == nil || !f.res.stored {
		return false
	}
	p := f.body.fillProgress()
	return p >= 0 && p >= share
}

// leave says a party is done with f and its result. When the last party
// leaves a flight without a background purpose, the fill is called off
// (unless it is worth finishing) and unregistered, so that the next
// request starts afresh instead of joining a fill on its way out. The
// caller must not hold the handler's lock.
func (h *Handler) leave(f *flight) {
	share := h.cache.Load().FinishAbandoned
	h.mu.Lock()
	f.mu.Lock()
	f.parties--
	b := f.body
	callOff := f.parties == 0 && !f.background && !f.abandoned && f.running() && !f.worthFinishing(share)
	if callOff {
		f.abandoned = true
		h.unregisterLocked(f)
		if f.published && f.res.pass != nil {
			f.res.pass.Body.Close()
			f.res.pass = nil
		}
	}
	f.mu.Unlock()
	h.mu.Unlock()
	if b != nil {
		b.release()
	}
	if callOff {
		f.stopHints() // the leader has left already: it stopped them
		f.cancel(errAbandoned)
		h.metrics.abandoned.Inc()
	}
}

// unregisterLocked removes f from h.flights if it is registered there,
// and counts its end (see flightEpoch). The caller holds h.mu.
func (h *Handler) unregisterLocked(f *flight) {
	if f.shared && h.flights[f.key] == f {
		delete(h.flights, f.key)
		h.flightsEnded.Add(1)
	}
}

// anyEpoch is the epoch argument of joinOrStart that never asks the
// caller to look again.
const anyEpoch = ^uint64(0)

// flightEpoch is how many shared flights have ended so far. A request
// reads it before it looks a key up: a fill stores its entry before it
// unregisters its flight, so if no flight for the key runs when the
// request asks to join one and none has ended since, the lookup's miss
// still holds; if one has ended, the entry the lookup missed may be
// stored now (see joinOrStart).
func (h *Handler) flightEpoch() uint64 { return h.flightsEnded.Load() }

// joinOrStart returns the flight for key, starting one for the client
// request r when none runs (its upstream request is built then: see
// startFill). leader reports whether the caller
// started it. A key whose last fill failed recently gets that failure
// again, without a request upstream, until its backoff ends (see
// failedFills).
//
// epoch is what flightEpoch said before the caller's lookup (anyEpoch:
// no matter). When no flight runs for key but flights have ended since
// epoch, joinOrStart starts nothing and returns a nil flight: the caller
// looks the key up again, since a fill may have stored it in between
// (groupcache's singleflight re-checks the cache inside the call).
func (h *Handler) joinOrStart(st *site, key, primary string, r *http.Request, stale *store.Entry, hint http.ResponseWriter, epoch uint64) (f *flight, leader bool) {
	f, leader, ctx := h.joinOrNew(key, hint, epoch)
	if ctx != nil {
		h.startFill(ctx, f, st, primary, r, stale)
	}
	return f, leader
}

// joinOrNew is joinOrStart's part under the handler's lock: the flight
// for key, joined, or a new one registered, whose fill the caller starts
// with ctx (nil when there is nothing to start).
func (h *Handler) joinOrNew(key string, hint http.ResponseWriter, epoch uint64) (f *flight, leader bool, ctx context.Context) {
	h.mu.Lock()
	if f, ok := h.flights[key]; ok {
		f.join()
		h.mu.Unlock()
		return f, false, nil
	}
	if epoch != anyEpoch && h.flightsEnded.Load() != epoch {
		h.mu.Unlock()
		return nil, false, nil
	}
	if res, ok := h.failures.recall(key, h.now); ok {
		h.mu.Unlock()
		return doneFlight(res), true, nil
	}
	f, ctx = h.newFlight(key, true, hint)
	h.flights[key] = f
	h.mu.Unlock()
	return f, true, ctx
}

// startSolo runs a fill that nobody else joins (hit-for-miss, requests
// with Authorization).
func (h *Handler) startSolo(st *site, key, primary string, r *http.Request, stale *store.Entry, hint http.ResponseWriter, remember bool) *flight {
	if remember {
		if res, ok := h.failures.recall(key, h.now); ok {
			return doneFlight(res)
		}
	}
	f, ctx := h.newFlight(key, false, hint)
	h.startFill(ctx, f, st, primary, r, stale)
	return f
}

// doneFlight is a flight whose result is known already.
func doneFlight(res fillResult) *flight {
	f := &flight{done: make(chan struct{}), parties: 1, res: res, published: true, abandoned: true}
	close(f.done)
	return f
}

// newFlight is a flight for key with one party (its leader), to be
// registered when shared, and the context of its fill: listed among the
// handler's fills (which Close ends), ended by the flight's cancel, with
// the relay of 1xx answers to the leader (Early Hints) as its client
// trace.
func (h *Handler) newFlight(key string, shared bool, hint http.ResponseWriter) (*flight, context.Context) {
	f := &flight{done: make(chan struct{}), hint: hint, parties: 1, key: key, shared: shared}
	f.ctx.start(&h.fills, &f.trace)
	return f, &f.ctx
}

// cancel ends the fill's context with cause (nil: context.Canceled). A
// method, not a func field, so that a flight costs no closure for it.
func (f *flight) cancel(cause error) { f.ctx.end(cause) }

// startFill runs the fill of f, for the client request r, in the
// background. The fill's upstream request is built here, from r, before
// r's handler may return: its context is ctx (the fill's own, whose
// client trace relays 1xx answers to f's leader: Early Hints). Once the
// handler is closed no fill starts: f fails at once (errClosed), without
// a request upstream.
func (h *Handler) startFill(ctx context.Context, f *flight, st *site, primary string, r *http.Request, stale *store.Entry) {
	f.trace.Got1xxResponse = f.got1xx
	out := h.upstreamRequest(ctx, st, primary, r, stale)
	if h.background(func() { h.fill(ctx, f, st, primary, out, stale, false) }) {
		return
	}
	h.refuseFill(f)
}

// startFillInline runs the fill of f, for the client request r, on the
// caller's goroutine (f's leader's) up to the response's head: the
// hand-off to a worker and back cost about 5 % of a miss's CPU. A body
// already whole in the origin client's buffer is read and stored here
// too; any other goes on on a worker (see fill), so the leader streams
// it as it arrives. Close waits for the inline part as for background
// work (admit), and ends it as it ends every fill.
//
// While the fill runs here the leader cannot watch its client nor the
// drain: a context.AfterFunc on r's context leaves the flight as fetch
// does when the client goes (so that a fill nobody waits on is called
// off), through the context's own AfterFunc method when it has one (as
// fillContext.AfterFunc does), which spares context.AfterFunc's
// afterFuncCtx and the registration with the context; and StopWaiting
// ends the fill's wait for its head (fillList.endHeadWaits,
// errDraining), which fetch then answers as answerDraining does. left
// reports that the client went: the flight was left already.
func (h *Handler) startFillInline(ctx context.Context, f *flight, st *site, primary string, r *http.Request, stale *store.Entry) (left bool) {
	f.trace.Got1xxResponse = f.got1xx
	out := h.upstreamRequest(ctx, st, primary, r, stale)
	if !h.admit() {
		h.refuseFill(f)
		return false
	}
	f.ctx.headWait.Store(headWaiting)
	if h.draining.Err() != nil && f.ctx.headWait.CompareAndSwap(headWaiting, 0) {
		// StopWaiting came and may have passed f by: the fill goes to a
		// worker, and the leader waits on it and the drain in fetch.
		h.dispatch(func() { h.fill(ctx, f, st, primary, out, stale, false) })
		return false
	}
	clientGone := func() {
		f.abandon()
		h.leave(f)
	}
	var stop func() bool
	if a, ok := r.Context().(interface{ AfterFunc(func()) func() bool }); ok {
		stop = a.AfterFunc(clientGone) // the fast front's request context: see listen.reqContext
	} else {
		stop = context.AfterFunc(r.Context(), clientGone)
	}
	if !h.fill(ctx, f, st, primary, out, stale, true) {
		h.backgroundDone()
	}
	return !stop()
}

// refuseFill fails f, whose fill a closed handler did not start.
func (h *Handler) refuseFill(f *flight) {
	f.cancel(errClosed)
	if f.shared {
		h.mu.Lock()
		h.unregisterLocked(f)
		h.mu.Unlock()
	}
	f.publish(fillResult{failed: true, err: errClosed})
}

// refresh revalidates a stale entry in the background
// (stale-while-revalidate), unless a fill for its key already runs, or
// ended since the lookup that found stale (epoch, see joinOrStart) and
// stored another entry in its place.
func (h *Handler) refresh(st *site, key, primary string, r *http.Request, stale *store.Entry, epoch uint64) {
	if h.isClosed() {
		return
	}
	f, leader := h.joinOrStart(st, key, primary, r, stale, nil, epoch)
	if f == nil {
		if e := h.store.Peek(key); e != nil && e != stale {
			return // refreshed (or replaced) already
		}
		f, leader = h.joinOrStart(st, key, primary, r, stale, nil, anyEpoch)
	}
	f.keepInBackground()
	if leader {
		f.abandon() // nobody reads a pass response of a background refresh
	}
	h.leave(f) // nor anything else of it
}
