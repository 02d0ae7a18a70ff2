package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meridiancdn/meridian/edge/fill"
	"github.com/meridiancdn/meridian/edge/policy"
	"github.com/meridiancdn/meridian/edge/store"
	"github.com/meridiancdn/meridian/edge/tracing"
)

// errFirstByteTimeout ends a fill whose response headers did not come
// within the site's timeout.
var errFirstByteTimeout = errors.New("no response headers within the site's timeout")

// errorBodyLimit bounds how much of an upstream 5xx body is buffered to be
// shared by coalesced waiters.
const errorBodyLimit = 64 << 10

// upstreamRequest builds the request a fill sends: always a full GET for the
// client's target, with this cache's own validators and none of the client's
// conditionals or Range, so that what comes back can be stored and shared.
// It carries exactly what was keyed: the normalized host (or the site's
// origin_host), the keyed query (originURL), and the keyed scheme in the
// forwarding fields (addForwarded); no hop-by-hop field (nor the client's
// Connection: close) and, by default, no field that asks the origin for
// another target, method or host (see forwardsField). primary is r's
// primary key (site.cacheKey, or its slice's key). Its context is a
// fillContext under parent (the fill's own): the fill's fill.Info, which
// the fill hands to the site's upstream (see fillInfoOf), and the slice it
// fetches, if any, go with it.
//
// It is built once, for the fill that sends it (see startFill): a request
// that joins a running fill builds none. r is read, never kept: the
// request shares only immutable strings with r (its header's values are
// copied, as Request.Clone copies them), since the fill outlives the
// client's request.
func (h *Handler) upstreamRequest(parent context.Context, st *site, primary string, r *http.Request, stale *store.Entry) *http.Request {
	host, _ := normalizeHost(r.Host) // routed: well-formed
	scheme := st.trusted.scheme(r)
	fc := &fillContext{Context: parent}
	fc.info = fill.Info{Key: primary, Host: host, Scheme: scheme}
	if m, ok := markOf(r.Context()); ok {
		fc.info.FromPeer, fc.info.Peer, fc.info.Replica = !m.replica, m.peer, m.replica
	}
	// The fill's request carries its slice, if it fetches one (its key
	// is primary: a slice is owned, and routed, on its own): newEntry
	// stores the 206 as the slice (slice.go).
	fc.sub = sliceOf(r.Context())
	// One shallow copy of r, then what Request.Clone would copy deep that
	// the fill keeps: its header (rebuilt below), trailer and
	// transfer-coding lists. r's URL is not cloned (originURL replaces it)
	// and its parsed form is not the fill's. The copy is fc's (the
	// temporary WithContext makes does not leave the stack).
	fc.req = *r.WithContext(fc)
	out := &fc.req
	out.Method = http.MethodGet
	st.setOriginURL(&fc.url, r)
	out.URL = &fc.url
	out.RequestURI = ""
	out.Body = nil
	out.GetBody = nil
	out.ContentLength = 0
	out.Close = false // the client's Connection: close is its own hop's
	// The client's fields that the origin is to get, copied in one pass
	// (upstreamHeader); the fill's own come after.
	trusted := h.trusted.trusts(r)
	out.Header = upstreamHeader(r.Header, trusted, st.cfg.ForwardOverrideFields)
	out.Trailer = r.Trailer.Clone()
	out.TransferEncoding = slices.Clone(r.TransferEncoding)
	out.Form, out.PostForm, out.MultipartForm = nil, nil, nil
	out.Host = host
	if st.cfg.OriginHost != "" {
		out.Host = st.cfg.OriginHost
	}
	if stale != nil {
		// (A 304 refreshes the stale copy: see fill.)
		if etag := st.validatorFor(stale.ETag(), stale.Field("Content-Encoding")); etag != "" {
			out.Header.Set("If-None-Match", etag)
		}
		if lm := stale.LastModified(); !lm.IsZero() {
			out.Header.Set("If-Modified-Since", lm.UTC().Format(http.TimeFormat))
		}
	}
	if fc.sub != nil {
		fc.sub.setUpstreamFields(out.Header)
	}
	// The forwarding fields' values and the trace context's are kept in
	// fc, which the request's life bounds as it bounds theirs.
	h.addForwarded(out.Header, r, host, scheme, trusted, &fc.fields.fwd)
	tracing.PropagateInto(r.Context(), r.Header, out.Header, &fc.fields.trace)
	return out
}

// fillFields holds the values of the fields a fill's request gets of its
// own: the forwarding fields (addForwarded) and the trace context
// (tracing.PropagateInto), in the fill's context (one allocation with
// the request: a miss made three for them).
type fillFields struct {
	fwd   forwardedValues
	trace tracing.Fields
}

// upstreamFields is how many fields a fill's request commonly gets that
// the client's did not have: addForwarded's six and a traceparent.
const upstreamFields = 7

// upstreamHeader is the header a fill's request starts from: the
// client's fields h that the origin is to get as the client sent them
// (see forwardsField), copied in one pass, the values in one slice, in a
// map made for them and the fill's own fields (upstreamFields), so that
// it is one table, not one grown (and rehashed) once the fill adds its
// own. trusted says h's forwarding fields are believed (proxyList.trusts);
// override is the site's forward_override_fields.
//
// It replaced a clone of h from which 21 names were then deleted (9
// hop-by-hop, 6 conditional, 6 override, each Del canonicalizing its
// name) and, for an untrusted client, a walk of the clone for
// X-Forwarded-*: 3.3 µs and 9 allocations for a browser's 11 fields, 1.4
// µs and 5 for none (BenchmarkUpstreamRequest). The fields forwarded are
// exactly the same for every header (TestUpstreamRequestMatchesOracle,
// FuzzUpstreamFields: the old code is kept as the tests' oracle).
//
// A field the client's Connection names is its own hop's too (RFC 9110
// §7.6.1): it is copied, then deleted (policy.RemoveConnectionOptions,
// as RemoveHopByHop deletes it), before the fill adds its own fields (one the fill writes, such as
// Via, is still the fill's). Connection rarely names a field that is
// there, so the copy it costs is rare; deciding it in the pass would cost
// every field a walk of the Connection list.
func upstreamHeader(h http.Header, trusted, override bool) http.Header {
	nk, nv := 0, 0
	for k, vv := range h {
		if forwardsField(k, trusted, override) {
			nk++
			nv += len(vv)
		}
	}
	sv := make([]string, nv)
	out := make(http.Header, nk+upstreamFields)
	for k, vv := range h {
		if !forwardsField(k, trusted, override) {
			continue
		}
		if vv == nil {
			out[k] = nil // (as Clone keeps them)
			continue
		}
		n := copy(sv, vv)
		out[k] = sv[:n:n]
		sv = sv[n:]
	}
	policy.RemoveConnectionOptions(out, h["Connection"])
	return out
}

// forwardsField reports whether a client's field named k (as the map
// holds it: a handler may have put a name there that is not canonical,
// and it is judged as it is spelled, as the deletes it replaced judged
// it) goes upstream as the client sent it. Not so:
//   - the hop-by-hop fields that policy.RemoveHopByHop always deletes;
//   - the client's conditionals and Range (conditionalFields): a fill
//     asks for the whole object, with the cache's own validators;
//   - fields that origin frameworks read as the request's real target
//     (Symfony's and IIS's X-Original-URL, X-Rewrite-URL), method
//     (method-override middleware) or host (X-Host), none of which the
//     cache key accounts for, unless the site says
//     forward_override_fields (override);
//   - the fields the fill writes itself from the client's (addForwarded:
//     X-Forwarded-For, -Proto, -Host, Forwarded, Via, CDN-Loop;
//     tracing.PropagateInto: traceparent, tracestate);
//   - from a client whose forwarding fields are not believed (trusted
//     false), any other X-Forwarded-* and X-Real-IP.
func forwardsField(k string, trusted, override bool) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer",
		"Transfer-Encoding", "Upgrade", "Proxy-Authenticate", "Proxy-Authorization":
		return false
	case "Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since":
		return false
	case "X-Original-Url", "X-Rewrite-Url", "X-Http-Method-Override", "X-Http-Method", "X-Method-Override", "X-Host":
		return override
	case "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "Via", "Cdn-Loop",
		"Traceparent", "Tracestate":
		return false
	case "X-Real-Ip":
		return trusted
	}
	return trusted || !strings.HasPrefix(k, "X-Forwarded-")
}

// fillContext is the context of a fill's upstream request: the fill's
// own (see startFill), with the fill's fill.Info and the slice it fetches
// (nil for a whole object) held as fields, so that a fill allocates one
// context for them rather than one per value. It also holds the request
// itself and its URL, which live exactly as long: a fill's request, its
// context and URL are one allocation.
type fillContext struct {
	context.Context
	info   fill.Info
	sub    *sliceReq
	req    http.Request
	url    url.URL
	fields fillFields // the values of the fields req gets of its own
}

// Value answers sliceKey with the fill's slice, none (nil) for a whole
// object, without asking the parent: the fill fetches what its request
// was built for, and its parent (the flight's context) holds no slice
// anyway. sliceOf asks two or three times per
// fill, and the walk up the parents was about 1 % of a miss's CPU. Every
// other key is the parent's.
func (c *fillContext) Value(key any) any {
	if _, ok := key.(sliceKey); ok {
		if c.sub == nil {
			return nil
		}
		return c.sub
	}
	return c.Context.Value(key)
}

// AfterFunc is the parent's AfterFunc (the flight's: see
// flightContext.AfterFunc), or context.AfterFunc's: it lets the lean
// origin client register its abort with the fill's context cheaply
// through this wrapper.
func (c *fillContext) AfterFunc(f func()) (stop func() bool) {
	if a, ok := c.Context.(interface{ AfterFunc(func()) func() bool }); ok {
		return a.AfterFunc(f)
	}
	return context.AfterFunc(c.Context, f)
}

var conditionalFields = []string{"Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since"}

// fill fetches out from upstream and publishes the result to f's waiters;
// for a shareable response it then reads the body into a growingBody that
// the waiters read as it arrives, and stores the entry when it is complete.
// ctx is the fill's own: it ends when every party left (errAbandoned, see
// Handler.leave), at the site's first-byte timeout, or when the handler
// closes. out's context is under it (see startFill).
//
// inline says the fill runs on its leader's goroutine (startFillInline):
// then a body that is not whole in the origin client's buffer once the
// head is published is read on a worker, and handedOff reports that the
// rest of the fill, its cleanup and its backgroundDone went there.
func (h *Handler) fill(ctx context.Context, f *flight, st *site, primary string, out *http.Request, stale *store.Entry, inline bool) (handedOff bool) {
	key, shared := f.key, f.shared
	info := fillInfoOf(out)
	cache := h.cache.Load()
	// The fill's context ends with the fill, except for a response passed
	// to the leader, whose body ends it when closed (cancelOnClose).
	passed := false
	defer func() {
		if !passed && !handedOff {
			f.cancel(nil)
		}
	}()
	unregister := func() {
		if !shared {
			return
		}
		h.mu.Lock()
		h.unregisterLocked(f)
		h.mu.Unlock()
	}
	// fail publishes a fill that got no usable response; the origin's
	// failures (not those of the edge's own making) are remembered first,
	// so that a request arriving after unregister does not ask again.
	fail := func(res fillResult, body []byte) {
		h.failFill(ctx, f, res, body, cache)
	}
	mem := &fillMemory{budget: h.inflight, wait: cache.InflightWait}
	defer func() {
		if !handedOff {
			mem.release()
		}
	}()
	// Admission: a fill holds at least a first chunk of the in-flight
	// budget; when that is full, new misses wait briefly, then fail
	// (503, or a stale copy) without reaching upstream.
	if err := mem.admit(ctx, firstChunk); err != nil {
		h.metrics.inflightRejected.Inc()
		fail(fillResult{failed: true, err: err}, nil)
		return
	}

	// The site's timeout bounds the wait for the response's headers; the
	// body, however long, is bounded only between reads (the pool's
	// read_timeout), so that a large download is not cut off.
	firstByte := h.armFirstByte(f, st.cfg.Timeout)

	purgeGen := h.purges.generation()
	reqTime := h.now()
	resp, err := st.fills.Fill(out, info)
	if h.stopFirstByte(firstByte) && err == nil {
		resp.Body.Close() // the timeout passed just as the headers came
		err = errFirstByteTimeout
	}
	if inline && !f.ctx.headWait.CompareAndSwap(headWaiting, 0) && err == nil {
		resp.Body.Close() // StopWaiting took the fill just as the headers came
		err = errDraining
	}
	if err != nil && context.Cause(ctx) == errFirstByteTimeout && !errors.Is(err, errFirstByteTimeout) {
		err = fmt.Errorf("%w: %w", errFirstByteTimeout, err)
	}
	respTime := h.now()
	if err != nil {
		h.metrics.fill(reqTime, respTime, context.Cause(ctx) != errAbandoned)
		fail(fillResult{failed: true, err: fmt.Errorf("origin %s: %w", st.origin.Host, err)}, nil)
		return
	}

	// A 304 to our own validators refreshes the stale entry (§4.3.4).
	fwdStatus := resp.StatusCode
	if resp.StatusCode == http.StatusNotModified && stale != nil {
		resp.Body.Close()
		resp.Header.Del(fill.PeerHeader) // an upstream's mark, never stored
		merged := policy.UpdateHeaders(stale.BaseHeader(), resp.Header)
		policy.RemoveHopByHop(merged)
		st.refreshed(stale.ETag(), merged)
		if !stale.OnDisk() || stale.BodySize() <= cache.MaxObjectBytes {
			h.metrics.fill(reqTime, respTime, false)
			res := h.refreshInMemory(st, primary, out, stale, merged, reqTime, respTime, purgeGen)
			if !res.failed {
				h.failures.forget(key)
			}
			unregister()
			f.publish(res)
			return
		}
		// Too large for memory: the stored body becomes the response's,
		// read from the disk as an origin's body would be, spooled anew
		// under the refreshed fields and shared with the waiters as it
		// is written (below). (nginx's proxy_cache_revalidate rewrites
		// its cache file's header in place; a segment's records are
		// never rewritten, so the body is copied.)
		rd, err := stale.OpenBody()
		if err != nil { // the stale copy's file is gone: not the origin's failure
			unregister()
			f.publish(fillResult{failed: true, err: fmt.Errorf("stale copy on disk: %w", err)})
			return
		}
		resp = &http.Response{StatusCode: stale.Status(), Header: merged, Body: rd, ContentLength: stale.BodySize(), Request: out}
	}

	// The entry's fields: upstream's without hop-by-hop fields and the
	// peer mark. A copy, since a response that is not stored goes to the
	// leader as it came (pass) and a slice or a transcoded variant
	// rewrites its fields; a response with nothing to take out, on a
	// site that rewrites nothing, lends its own map (a miss's copy cost
	// about 2 % of its CPU).
	hdr := resp.Header
	if st.coder != nil || sliceOf(out.Context()) != nil || needsCleaning(hdr) {
		hdr = hdr.Clone()
		policy.RemoveHopByHop(hdr)
	}
	fromOwner := resp.Header.Get(fill.PeerHeader) != ""
	hdr.Del(fill.PeerHeader)
	resp.Header.Del(fill.PeerHeader) // a response passed on goes as it came, never with the mark
	// 508 Loop Detected answers the leader's own CDN-Loop field, which the
	// requests that joined it need not share (a client may forge it to
	// name an upstream tier): it goes to the leader alone, and the others
	// fetch for themselves.
	if resp.StatusCode == http.StatusLoopDetected {
		unregister()
		resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: func() { f.cancel(nil) }}
		passed = true
		f.publish(fillResult{pass: resp, fwdStatus: resp.StatusCode})
		return
	}
	e, pol := h.newEntry(resp.StatusCode, hdr, out, reqTime, respTime, st)

	// 5xx: upstream failed, unless the origin made its error storable
	// with explicit freshness (RFC 9111 §3) and no stale copy stands in
	// for it (stale-if-error). Share a small copy of the answer with the
	// waiters (each of which may use its stale copy instead) and
	// remember it for the key's backoff: a failing origin is not hit
	// once per waiter, nor once per request.
	if resp.StatusCode >= 500 && (!pol.Store || staleStandsIn(stale, respTime)) {
		h.metrics.fill(reqTime, respTime, true)
		if inline && !bodyBuffered(resp.Body) {
			// The error body may wait on the network for as long as
			// read_timeout: read on a worker, while the leader waits
			// for the answer as the other waiters do, which
			// StopWaiting ends.
			handedOff = true
			held := *mem
			h.dispatch(func() {
				defer f.cancel(nil)
				defer held.release()
				h.failWithErrorBody(ctx, f, st, resp, hdr, respTime, cache)
			})
			return true
		}
		h.failWithErrorBody(ctx, f, st, resp, hdr, respTime, cache)
		return
	}
	h.metrics.fill(reqTime, respTime, false)
	h.failures.forget(key)

	// On a compressing site the body becomes the coding asked for, as it
	// arrives (encoding.go); whether it is storable is decided on what
	// upstream announced.
	announced := resp.ContentLength
	st.transcode(out, resp, hdr)
	maxObj := cache.MaxObjectBytes
	// Too large for memory but storable: to the disk tier as it arrives,
	// if there is one with room (fill_disk.go).
	var sp *store.Spool
	if pol.Store && announced > maxObj {
		sp = h.spoolFor(out, fromOwner, info, resp.ContentLength)
	}
	if !pol.Store || announced > maxObj && sp == nil {
		// Not shareable: the leader streams it; later requests skip
		// coalescing for a while instead of queueing behind each other.
		if shared {
			h.markHitForMiss(key, respTime)
		}
		unregister()
		resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: func() { f.cancel(nil) }}
		passed = true
		f.publish(fillResult{pass: resp, fwdStatus: fwdStatus})
		return
	}
	if !shared {
		h.clearHitForMiss(key)
	}
	// A body of announced length holds its share of the in-flight
	// budget before anyone is told of it, so that a full budget is a
	// clean 503 (or stale), not a body cut short.
	if resp.ContentLength > 0 && sp == nil {
		if err := mem.ensure(ctx, resp.ContentLength); err != nil {
			resp.Body.Close()
			h.metrics.inflightRejected.Inc()
			fail(fillResult{failed: true, err: err}, nil)
			return
		}
	}
	res := fillResult{e: e, fwdStatus: fwdStatus}
	stored := e // what is stored: without the fields the origin allowed on this response only
	if len(pol.StripFields) > 0 {
		kept := hdr.Clone()
		for _, name := range pol.StripFields {
			kept.Del(name)
		}
		stored = store.NewFilling(resp.StatusCode, kept, pol, respTime)
		res.e, res.leaderEntry = stored, e
	}
	body := newGrowingBody(resp.ContentLength)
	if sp != nil {
		body.spillTo(sp, 0) // the body closes sp once its readers are done
	}
	f.attach(body)
	res.body = body
	// "stored" is said only when it is known now: a body of unknown length
	// may still outgrow max_object_bytes.
	res.stored = !fromOwner && resp.ContentLength >= 0
	if fields, ok := policy.VaryFields(hdr["Vary"]); ok && len(fields) > 0 {
		res.secondary, _ = policy.SecondaryKey(fields, out.Header)
	}
	f.publish(res)

	// The body: read here, or on a worker when the fill runs on its
	// leader's goroutine and the body may wait on the network (the
	// leader answers now and streams it as it comes). A method of its
	// own, with its state in a struct copied to the heap only then, so
	// that the inline path allocates nothing for it.
	rest := fillRest{ctx: ctx, f: f, st: st, primary: primary, out: out, resp: resp, body: body, sp: sp,
		stored: stored, maxObj: maxObj, fromOwner: fromOwner, info: info, purgeGen: purgeGen}
	if inline && (sp != nil || !bodyBuffered(resp.Body)) {
		handedOff = true
		// The worker's own copy of the state, and of mem (what the fill
		// holds of the budget, which the worker now releases): a pointer
		// to fill's mem kept there would move it to the heap on every
		// fill.
		onWorker := &fillRest{ctx: ctx, f: f, st: st, primary: primary, out: out, resp: resp, body: body, sp: sp,
			stored: stored, maxObj: maxObj, fromOwner: fromOwner, info: info, purgeGen: purgeGen, memHeld: *mem}
		h.dispatch(onWorker.runOnWorker(h))
		return true
	}
	h.fillBody(&rest, mem)
	return false
}

// failFill publishes a fill that got no usable response; the origin's
// failures (not those of the edge's own making) are remembered first,
// so that a request arriving after the flight is unregistered does not
// ask again.
func (h *Handler) failFill(ctx context.Context, f *flight, res fillResult, body []byte, cache *CacheConfig) {
	if remembered(ctx, res.err) {
		h.failures.record(f.key, res, body, h.now(), cache.ErrorBackoff, cache.MaxErrorBackoff)
	}
	if f.shared {
		h.mu.Lock()
		h.unregisterLocked(f)
		h.mu.Unlock()
	}
	f.publish(res)
}

// failWithErrorBody fails f with an upstream 5xx, resp, whose body (up
// to errorBodyLimit) it reads first: the waiters share a small copy of
// the answer, and the key's backoff remembers it.
func (h *Handler) failWithErrorBody(ctx context.Context, f *flight, st *site, resp *http.Response, hdr http.Header, respTime time.Time, cache *CacheConfig) {
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
	resp.Body.Close()
	hdr.Del("Content-Length")
	res := fillResult{failed: true, e: store.NewFilling(resp.StatusCode, hdr, policy.Policy{}, respTime), body: completeBody(body), fwdStatus: resp.StatusCode}
	if rerr != nil {
		res.e, res.body, res.err, body = nil, nil, fmt.Errorf("origin %s: %w", st.origin.Host, rerr), nil
	}
	h.failFill(ctx, f, res, body, cache)
}

// fillRest is what fill hands to fillBody: the published response whose
// body is still to read, and what storing it needs. What the fill holds
// of the in-flight budget is fillBody's own argument: held here, it would
// move to the heap with the rest (escape analysis sees a struct's
// fields as one).
type fillRest struct {
	ctx       context.Context
	f         *flight
	st        *site
	primary   string
	out       *http.Request
	resp      *http.Response
	body      *growingBody
	sp        *store.Spool
	stored    *store.Entry
	maxObj    int64
	fromOwner bool
	info      fill.Info
	purgeGen  uint64
	memHeld   fillMemory // mem, when the rest runs on a worker
}

// runOnWorker is the rest of a fill handed to a worker: the body, then
// what fill's deferred cleanup would have done.
func (t *fillRest) runOnWorker(h *Handler) func() {
	return func() {
		defer t.f.cancel(nil)
		defer t.memHeld.release()
		h.fillBody(t, &t.memHeld)
	}
}

// fillBody reads a fill's body into the growingBody its waiters read, and
// stores the entry when it is complete (see fill); mem is what the fill
// holds of the in-flight budget.
func (h *Handler) fillBody(t *fillRest, mem *fillMemory) {
	ctx, f, st, primary, out, resp, body, sp := t.ctx, t.f, t.st, t.primary, t.out, t.resp, t.body, t.sp
	stored, maxObj, fromOwner, info, purgeGen := t.stored, t.maxObj, t.fromOwner, t.info, t.purgeGen
	key, shared := f.key, f.shared
	unregister := func() {
		if !shared {
			return
		}
		h.mu.Lock()
		h.unregisterLocked(f)
		h.mu.Unlock()
	}
	// The entry is stored, and the flight unregistered, before the readers
	// can see the last byte: a client that has the whole body and asks
	// again finds the stored entry, not a finished flight.
	storeEntry := func(all []byte) {
		if int64(len(all)) <= maxObj {
			if cap(all)-len(all) > len(all)/8 {
				all = bytes.Clone(all) // a body of unknown length: keep no slack
			}
			e := stored.Clone()
			e.SetBody(all)
			switch {
			case !fromOwner || info.Replica:
				if h.putFilled(h.store, primary, out.Header, e, purgeGen) == e {
					// Stored as it came (no purge since): the
					// parties may be answered from it.
					f.setSealed(e)
				}
			case h.peerFillIsHot(primary):
				// The owner peer holds the real copy; keep a short-lived
				// one of a hot object only (groupcache's hot cache).
				if limit := e.InitialAge() + hotTTL; e.Lifetime() > limit {
					e.SetLifetime(limit)
				}
				h.putFilled(h.hot, primary, out.Header, e, purgeGen)
			}
		}
		unregister()
	}
	var beforeLast func([]byte)
	if resp.ContentLength > 0 {
		beforeLast = storeEntry
	}
	onStream := func(tooBig bool) {
		// Not stored: new requests must not join a body that no
		// longer starts at its first byte. One too big to store is
		// hit-for-miss (they must not queue behind each other
		// either); one that got no room in the budget may be stored
		// by the next fill, which they may share again.
		h.metrics.streamed.Inc()
		unregister()
		if shared && tooBig {
			h.markHitForMiss(key, h.now())
		}
	}
	// The disk's commit, for a body written there (sp); like storeEntry,
	// it runs before the readers can see the last bytes.
	storeOnDisk := func() {
		if !fromOwner || info.Replica {
			if err := h.commitSpooled(sp, primary, out.Header, stored.Clone(), purgeGen); err != nil {
				h.log.Debug("large object not stored on disk", "key", key, "err", err)
			}
		}
		unregister()
	}
	// A body of unknown length that outgrows memory goes to disk too.
	var toDisk func() *store.Spool
	if sp == nil && resp.ContentLength < 0 {
		toDisk = func() *store.Spool {
			sp = h.spoolFor(out, fromOwner, info, -1)
			return sp
		}
	}
	var err error
	var n int64
	if sp != nil {
		n, err = spoolInto(ctx, body, resp.Body, sp, 0, mem, maxObj, resp.ContentLength, storeOnDisk, onStream)
	} else {
		n, err = readInto(ctx, body, resp.Body, mem, maxObj, resp.ContentLength, beforeLast, onStream, toDisk, storeOnDisk)
	}
	resp.Body.Close()
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = io.ErrUnexpectedEOF
	}
	if sp != nil && err != nil {
		sp.Abort() // (after a commit: nothing to undo)
	}
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
			err = fmt.Errorf("%w: %w", cause, err)
		}
		// Unregistered first: a request that comes once this fill's
		// readers see the error must start a fill of its own, not join
		// this failed one.
		unregister()
		body.finish(fmt.Errorf("origin %s: body: %w", st.origin.Host, err))
		return
	}
	if beforeLast == nil && !body.streamed() && sp == nil {
		// Length unknown (or empty): readers learn the end only from
		// finish, which comes after this.
		storeEntry(body.bytes())
	}
	body.finish(nil)
}

// bodyBuffered reports whether the rest of an origin's body is in memory
// already, so that reading it will not wait on the network (the lean
// client's body says so: origin's h1Body.Buffered). Any other body may
// wait.
func bodyBuffered(b io.Reader) bool {
	bb, ok := b.(interface{ Buffered() bool })
	return ok && bb.Buffered()
}

// refreshInMemory is the fill's result for a stale entry refreshed by a
// 304 under merged fields, its body in memory (read from the disk tier if
// it was there), stored if it may be.
func (h *Handler) refreshInMemory(st *site, primary string, out *http.Request, stale *store.Entry, merged http.Header, reqTime, respTime time.Time, purgeGen uint64) fillResult {
	e, _ := h.newEntry(stale.Status(), merged, out, reqTime, respTime, st)
	body, err := storedBody(stale)
	if err != nil { // the stale copy's file is gone: not the origin's failure
		return fillResult{failed: true, err: fmt.Errorf("stale copy on disk: %w", err)}
	}
	e.SetBody(body)
	res := fillResult{e: e, body: completeBody(body), fwdStatus: http.StatusNotModified}
	if e.Storable() {
		res.stored = true
		h.putFilled(h.store, primary, out.Header, e.Clone(), purgeGen) // (not e itself: see store.NewFilling)
	}
	return res
}

// needsCleaning reports whether an upstream header has a field that
// no entry keeps: a hop-by-hop field (policy.RemoveHopByHop) or the
// peer mark.
func needsCleaning(h http.Header) bool {
	for _, f := range [...]string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer",
		"Transfer-Encoding", "Upgrade", "Proxy-Authenticate", "Proxy-Authorization", fill.PeerHeader} {
		if _, ok := h[f]; ok {
			return true
		}
	}
	return false
}

// storedBody is a stored entry's body: in memory, or read from the disk
// tier (a refreshed copy up to max_object_bytes goes to memory; a larger
// one is spooled to the disk anew, see fill).
func storedBody(e *store.Entry) ([]byte, error) {
	if !e.OnDisk() {
		return e.Body(), nil
	}
	rd, err := e.OpenBody()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	b := make([]byte, e.BodySize())
	if _, err := io.ReadFull(rd, b); err != nil {
		return nil, err
	}
	return b, nil
}

// remembered reports whether a failed fill is the origin's failure, to be
// remembered for the key's backoff: not a fill every client left, nor one
// the edge's own limits stopped (see refusedByEdge), nor one cut short by
// a shutdown. A drain that took an inline fill's head wait fails it with
// errDraining before it ends the fill's context, so the error says so
// where the cause may not yet.
func remembered(ctx context.Context, err error) bool {
	switch cause := context.Cause(ctx); {
	case refusedByEdge(err), errors.Is(err, errDraining):
		return false
	case cause == nil, cause == errFirstByteTimeout:
		return true
	default: // errAbandoned, or the handler closing
		return false
	}
}

// staleStandsIn reports whether a stale copy will be served in place of
// an upstream error at now (stale-if-error or site grace).
func staleStandsIn(stale *store.Entry, now time.Time) bool {
	return stale != nil && stale.Judge(stale.CurrentAge(now), nil).StaleIfError
}

// fillMemory is what one fill holds of the in-flight budget: the capacity
// of its body's buffer, or the announced length reserved up front. Only
// the fill's goroutine uses it.
type fillMemory struct {
	budget    *byteBudget
	wait      time.Duration
	held      int64
	receiving bool // counted among the budget's fills receiving a body
}

// admit holds a new fill's first n bytes, waiting for room as the budget
// allows; fills with their answer waiting to grow go first.
func (m *fillMemory) admit(ctx context.Context, n int64) error {
	if err := m.budget.take(ctx, n, m.wait, true, false); err != nil {
		return err
	}
	m.held = n
	return nil
}

// ensure holds at least n bytes for the body being received, waiting for
// room as the budget allows.
func (m *fillMemory) ensure(ctx context.Context, n int64) error {
	return m.ensureWithin(ctx, n, m.wait)
}

// ensureWithin is ensure waiting at most wait (0: not at all).
func (m *fillMemory) ensureWithin(ctx context.Context, n int64, wait time.Duration) error {
	if n <= m.held {
		return nil
	}
	if err := m.budget.take(ctx, n-m.held, wait, false, m.receiving); err != nil {
		return err
	}
	m.held, m.receiving = n, true
	return nil
}

// shrink gives back what is held beyond n.
func (m *fillMemory) shrink(n int64) {
	if n < m.held {
		m.budget.give(m.held - n)
		m.held = n
	}
}

// release gives everything back, once the fill is over.
func (m *fillMemory) release() {
	m.budget.done(m.held, m.receiving)
	m.held, m.receiving = 0, false
}

// readBufs are the fills' read buffers: a miss must not allocate 32 KiB.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// streamWindow is how far a streaming body's slowest reader may lag
// behind the fill.
const streamWindow = 4 << 20

// readInto copies src into b, holding b's buffer in mem first. A body of
// unknown length that grows past maxObj will not be stored: onStream(true)
// runs, and b switches to streaming, so that the readers already on it
// get the rest without the body being held whole.
//
// Its readers may already have its status, so a body of unknown length
// that gets no room to grow in time is not cut short either: it streams
// too (onStream(false)), and whenever it again gets no room at once, it
// waits for its readers to take all it holds and goes on in the memory
// it has.
//
// When size (the announced length) is reached, beforeLast runs with the
// whole body before the readers can see its last bytes.
//
// toDisk, when set, is asked for a spool first when a body of unknown
// length outgrows maxObj: with one, the body moves to it and the rest is
// spoolInto's (commit, its commit).
//
// Only a streaming body waits for its readers (append, drain), so only
// one is told when ctx ends (growingBody.stop): the watch on ctx starts
// when the body streams, and a body that never does (every stored one)
// costs none.
func readInto(ctx context.Context, b *growingBody, src io.Reader, mem *fillMemory, maxObj, size int64, beforeLast func([]byte), onStream func(tooBig bool), toDisk func() *store.Spool, commit func()) (int64, error) {
	var stop func() bool
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	stream := func() {
		b.stream(streamWindow)
		if stop == nil {
			stop = context.AfterFunc(ctx, b.stop)
		}
	}
	if b.streamed() {
		stop = context.AfterFunc(ctx, b.stop)
	}
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := *bp
	var n int64
	for {
		m, err := src.Read(buf)
		if m > 0 {
			n += int64(m)
			if size < 0 && n > maxObj && !b.streamed() {
				if toDisk != nil {
					if sp := toDisk(); sp != nil {
						if err := spillBuffered(b, sp, n-int64(m)); err == nil {
							mem.shrink(firstChunk) // its bytes are on disk now
							return spoolInto(ctx, b, io.MultiReader(bytes.NewReader(bytes.Clone(buf[:m])), src), sp, n-int64(m), mem, maxObj, size, commit, onStream)
						}
						sp.Close() // not the body's: it streams, below
					}
				}
				onStream(true)
				stream()
			}
			if grow := b.growthFor(m); grow > 0 {
				wait := mem.wait
				if b.streamed() {
					wait = 0 // its readers' pace, not the budget's, holds it back
				}
				if merr := mem.ensureWithin(ctx, b.capacity()+grow, wait); merr != nil {
					if size >= 0 || !errors.Is(merr, errInflightFull) {
						return n, merr
					}
					if !b.streamed() {
						onStream(false)
						stream()
					}
					if derr := b.drain(); derr != nil {
						return n, derr
					}
					mem.shrink(firstChunk)
				}
			}
			if beforeLast != nil && n == size {
				b.appendThen(buf[:m], beforeLast)
				beforeLast = nil
			} else if aerr := b.append(buf[:m]); aerr != nil {
				return n, aerr
			}
			if b.streamed() {
				mem.shrink(max(b.capacity(), firstChunk))
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// newEntry evaluates a response to the upstream request out for storage
// and builds its entry, which holds hdr as its fields until it is sealed.
// On a site with deception_armor, a response whose Content-Type does not
// match its path's extension is not stored (see armorRefuses).
func (h *Handler) newEntry(status int, hdr http.Header, out *http.Request, reqTime, respTime time.Time, st *site) (*store.Entry, policy.Policy) {
	judged, asSlice := status, true
	if sub := sliceOf(out.Context()); sub != nil {
		judged, asSlice = sub.storeAs(status, hdr) // a slice's 206 is stored as its slice
	}
	pol := policy.Evaluate(http.MethodGet, out.Header, judged, hdr, reqTime, respTime, st.opts)
	if pol.Store && !asSlice {
		pol.Store, pol.Reason = false, "slice"
	}
	if pol.Store && st.cfg.DeceptionArmor && armorRefuses(out.URL.Path, hdr.Get("Content-Type")) {
		pol.Store, pol.Reason = false, "deception-armor"
	}
	return store.NewFilling(status, hdr, pol, respTime), pol
}

// cancelOnClose releases a fill's context when a passed-through body is
// closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// originURL is the upstream URL for r: the site's origin with r's path as
// sent, and for a GET or HEAD the query exactly as it was keyed (see
// CacheKeyConfig.query: ignored parameters dropped, sorted when the key
// sorts them), so that the origin never answers a query the key did not
// account for. Other methods are never stored: their query goes as sent.
func (st *site) originURL(r *http.Request) *url.URL {
	u := new(url.URL)
	st.setOriginURL(u, r)
	return u
}

// setOriginURL sets *u to originURL's answer for r, in place (a fill's
// request keeps its URL in its fillContext).
func (st *site) setOriginURL(u *url.URL, r *http.Request) {
	*u = *st.origin
	u.Path = r.URL.Path
	u.RawPath = r.URL.RawPath
	u.RawQuery = r.URL.RawQuery
	u.ForceQuery = r.URL.ForceQuery
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && st.cfg.CacheKey.rewrites() {
		u.RawQuery, u.ForceQuery = st.cfg.CacheKey.query(r.URL.RawQuery, r.URL.ForceQuery || r.URL.RawQuery != "")
	}
}
