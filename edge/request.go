package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meridiancdn/meridian/edge/byterange"
	"github.com/meridiancdn/meridian/edge/policy"
	"github.com/meridiancdn/meridian/edge/store"
	"github.com/meridiancdn/meridian/edge/tracing"
)

// maxCollapseRetries bounds how often a waiter whose variant did not match
// the leader's goes round again before it fetches alone.
const maxCollapseRetries = 2

// serveCacheable serves a GET or HEAD: from the store when it can, else
// through a (coalesced) fill.
func (h *Handler) serveCacheable(w http.ResponseWriter, r *http.Request, st *site) {
	if slicing(st, r) {
		h.serveSliced(w, r, st) // slice.go: each slice comes back through here
		return
	}
	h.lookupAndServe(w, r, st, true)
}

// lookupAndServe is serveCacheable. A miss that finds no fill of its key
// to join, where a fill may have stored the key since the lookup (see
// joinOrStart), looks again once when again is set.
func (h *Handler) lookupAndServe(w http.ResponseWriter, r *http.Request, st *site, again bool) {
	// Accept-Encoding is normalized only when something reads it: a
	// varying entry's secondary key, or a fill. A hit on an entry that
	// does not vary pays nothing for it.
	var normalized *http.Request
	withAE := func() *http.Request {
		if normalized == nil {
			normalized = normalizedAcceptEncoding(r, st)
		}
		return normalized
	}
	primary := st.cacheKey(r)
	sub := sliceOf(r.Context())
	if sub != nil {
		primary = sub.key()
	}
	now := h.now()
	// The client's Cache-Control is parsed once: only-if-cached is always
	// honoured, the rest only where the site allows it.
	reqCC := policy.NoDirectives()
	onlyIfCached := false
	if cc := r.Header["Cache-Control"]; cc != nil {
		parsed := policy.ParseCacheControl(cc)
		onlyIfCached = parsed.OnlyIfCached
		if st.cfg.HonorClientCacheControl {
			reqCC = parsed
		}
	}
	if sub != nil && sub.refresh {
		reqCC.NoCache = true // revalidate the slice whatever is stored
	}

	if r.Header.Get("Authorization") != "" {
		// §3.5: a response to an authenticated request is stored only when
		// it says it may be; such requests never read what others stored.
		if h.refuseLoop(w, r) {
			return
		}
		cs := cacheStatus{fwd: "request", detail: "authorization"}
		h.fetch(w, withAE(), st, primary, primary, nil, cs, false, anyEpoch)
		return
	}

	var key string
	var e *store.Entry
	var varyMiss bool
	epoch := anyEpoch
	if again {
		epoch = h.flightEpoch()
	}
	if st.coder == nil {
		key, e, varyMiss = h.lookup(primary, withAE)
	} else {
		c := st.negotiated(r)
		key, e, varyMiss = h.lookupCoded(primary, c, withAE)
		if e == nil && (!varyMiss || isCodingVariantKey(key, c)) {
			// A cold object: its fills coalesce per coding (encoding.go).
			// So does a coding whose variant is missing under a vary index
			// on the coding alone: the index may have come from another
			// coding's fill while this coding's first fill, keyed so
			// before the index, is still on its way.
			key = codingFlightKey(primary, c)
		}
	}
	cs := cacheStatus{fwd: "uri-miss"}
	if varyMiss {
		cs.fwd = "vary-miss"
	}
	if e != nil {
		age := e.CurrentAge(now)
		v := e.Judge(age, &reqCC)
		switch {
		case v.Fresh:
			if e.Sealed() && !e.OnDisk() && plainRequest(r) {
				h.serveHit(w, r, st, e, age)
				return
			}
			h.serveEntry(w, r, e, completeBodyOf(e), age, cacheStatus{hit: true, ttl: hitTTL(e, age), hasTTL: true})
			return
		case v.StaleWhileRevalidate:
			if !h.looped(r) { // a loop is not refreshed; the stale copy still serves
				h.refresh(st, key, primary, withAE(), e, epoch)
			}
			h.serveEntry(w, r, e, completeBodyOf(e), age, cacheStatus{hit: true, ttl: v.TTL, hasTTL: true, detail: "stale-while-revalidate"})
			return
		}
		cs.fwd = "stale"
	}
	if onlyIfCached {
		h.writeError(w, r, http.StatusGatewayTimeout, "not in cache (only-if-cached)", cacheStatus{fwd: "request", detail: "only-if-cached"})
		return
	}
	// A request that came back through this edge's own upstream is not
	// forwarded again (RFC 8586); a fresh copy was served above, since a
	// hit cannot go round.
	if h.refuseLoop(w, r) {
		return
	}
	hitForMiss := h.hitForMiss(key, now)
	if hitForMiss && r.Method == http.MethodGet && r.Header["Range"] != nil && e == nil {
		// Known not to be storable: the origin cuts the range, in one
		// request (a full GET would only be cut here).
		h.passLimited(w, r, st, "partial")
		return
	}
	// A replica copy is filled alone: joining this edge's own fill of the
	// key would not store it as a replica. So is a slice's refresh after
	// a cached copy of another version (sliceReq.alone).
	coalesce := !hitForMiss && !isReplica(r.Context()) && (sub == nil || !sub.alone)
	if !h.fetch(w, withAE(), st, key, primary, e, cs, coalesce, epoch) {
		h.lookupAndServe(w, r, st, false)
	}
}

// normalizedAcceptEncoding returns r with its Accept-Encoding normalized
// (see SiteConfig.AcceptEncoding), for the secondary key and the fill
// alike; a shallow copy, since a handler must not change its request.
func normalizedAcceptEncoding(r *http.Request, st *site) *http.Request {
	if st.coder != nil {
		return withCoding(r, st) // one coding, the edge's choice (encoding.go)
	}
	lines, present := r.Header["Accept-Encoding"]
	if !present || st.cfg.AcceptEncoding == AcceptEncodingAsSent {
		return r
	}
	v, ok := policy.NormalizeAcceptEncoding(lines)
	if !ok || len(lines) == 1 && lines[0] == v {
		return r
	}
	r2 := *r
	r2.Header = maps.Clone(r.Header)
	r2.Header["Accept-Encoding"] = []string{v}
	return &r2
}

// completeBodyOf is the body argument of serveEntry for a stored entry:
// nil, meaning e.Body(), whole.
func completeBodyOf(*store.Entry) *growingBody { return nil }

// fetch answers r through a fill: joined with others when coalesce, else
// alone. A request that has a stale copy it may use waits for upstream no
// longer than the site's grace.stale_timeout, then gets the copy while the
// fill goes on in the background. epoch is what flightEpoch said before
// the lookup (anyEpoch: no matter); fetch reports false, without
// answering, when the key is to be looked up again (see joinOrStart).
func (h *Handler) fetch(w http.ResponseWriter, r *http.Request, st *site, key, primary string, stale *store.Entry, cs cacheStatus, coalesce bool, epoch uint64) bool {
	// An authenticated request's failure is its own: not remembered for
	// the key, nor answered from another's.
	remember := len(r.Header["Authorization"]) == 0
	release, ok := h.admitUpstream(w, r, st, cs)
	if !ok {
		return true
	}
	defer release()
	staleWait := h.staleWait(st, stale)
	for attempt := 0; ; attempt++ {
		var f *flight
		leader, inline := true, false
		if coalesce && remember {
			var ctx context.Context
			if f, leader, ctx = h.joinOrNew(key, w, epoch); f == nil {
				return false
			}
			// The leader runs the fill up to its head itself, unless a
			// stale copy may stand in after staleWait (the fill then
			// goes on without it) or the node stops waiting already.
			if inline = ctx != nil && staleWait == 0 && h.draining.Err() == nil; inline {
				if h.startFillInline(ctx, f, st, primary, r, stale) {
					return true // the client left: the flight was left for it
				}
			} else if ctx != nil {
				h.startFill(ctx, f, st, primary, r, stale)
			}
		} else {
			f = h.startSolo(st, key, primary, r, stale, w, remember)
		}
		if inline && f.ctx.headWait.Load() == headDrained {
			// StopWaiting ended the fill while this leader waited for
			// its head: answered as the waiters in the select below are.
			f.abandon()
			h.leave(f)
			h.answerDraining(w, r, st, stale, cs)
			return true
		}
		// A leader that ran the fill inline has its result already (unless
		// the fill went to a worker when the drain began): no select.
		if (!inline || !f.isPublished()) && !h.waitFlight(w, r, st, f, leader, stale, staleWait, cs) {
			return true
		}
		res := f.res
		if !leader {
			cs.collapsed = true
			if res.pass != nil || res.e == nil && !res.failed {
				// The leader's answer was not shareable: fetch alone.
				h.leave(f)
				cs.detail = "hit-for-miss"
				coalesce = false
				continue
			}
			if res.secondary != "" && attempt < maxCollapseRetries {
				if sk, _ := policy.SecondaryKey(res.e.BaseHeader()["Vary"], r.Header); sk != res.secondary {
					h.leave(f)
					coalesce = false // another variant than the leader's
					continue
				}
			}
		} else if res.leaderEntry != nil {
			res.e = res.leaderEntry
		}
		if res.e != nil && !res.failed && res.leaderEntry == nil {
			res.sealed = f.storedCopy()
		}
		h.deliverFlight(w, r, st, f, res, stale, cs)
		return true
	}
}

// waitFlight waits for f's result, for the client request r: it reports
// whether the result came. Otherwise it has answered r, or r's client
// went, and left f: after staleWait (when > 0) from the stale copy
// (stale-timeout), and when the node stops waiting as answerDraining
// does. A leader that stops waiting abandons f. (A function of its own,
// not a part of fetch's loop: a defer in a loop costs an allocation.)
func (h *Handler) waitFlight(w http.ResponseWriter, r *http.Request, st *site, f *flight, leader bool, stale *store.Entry, staleWait time.Duration, cs cacheStatus) bool {
	var early <-chan time.Time
	if staleWait > 0 {
		t := time.NewTimer(staleWait)
		defer t.Stop()
		early = t.C
	}
	select {
	case <-f.done:
		return true
	case <-early:
		// Upstream is slow and the stale copy may stand in: answer
		// from it now, and let the fill refresh the entry.
		f.keepInBackground()
		if leader {
			f.abandon()
		}
		h.leave(f)
		h.serveStale(w, r, stale, "stale-timeout", cs)
	case <-r.Context().Done():
		if leader {
			f.abandon()
		}
		h.leave(f)
	case <-h.draining.Done():
		if leader {
			f.abandon()
		}
		h.leave(f)
		h.answerDraining(w, r, st, stale, cs)
	}
	return false
}

// deliverFlight answers r with res, the result of f, and leaves f (also
// when the answer panics: an aborted client). (A function of its own,
// not the end of fetch's loop: a defer in a loop is not open-coded, and
// its closure cost every miss an allocation.)
func (h *Handler) deliverFlight(w http.ResponseWriter, r *http.Request, st *site, f *flight, res fillResult, stale *store.Entry, cs cacheStatus) {
	pass := res.pass != nil
	if pass {
		// An answer that is not stored is this client's alone: when
		// the client goes, its upstream request goes too, even while
		// the copy waits on upstream's next bytes (leave counts it).
		stop := context.AfterFunc(r.Context(), func() { f.cancel(errAbandoned) })
		defer stop()
	}
	defer h.leave(f)
	h.serveResult(w, r, st, res, stale, cs)
	if pass {
		f.delivered()
	} else if r.Method == http.MethodHead && res.stored {
		// A HEAD client is done with the headers, but it asked for
		// the object as a GET would (Varnish and nginx fetch the
		// whole body for a HEAD miss): the fill is finished and
		// stored, within max_object_bytes and the in-flight budget.
		f.keepInBackground()
	}
}

// answerDraining answers a request that cannot wait for upstream because
// the node is stopping: from its stale copy if it may use one, else 503.
func (h *Handler) answerDraining(w http.ResponseWriter, r *http.Request, st *site, stale *store.Entry, cs cacheStatus) {
	w.Header().Set("Connection", "close")
	if stale != nil {
		age := stale.CurrentAge(h.now())
		if stale.Judge(age, nil).StaleIfError || stale.UsableDisconnected(age, st.cfg.Grace.ifUnreachable()) {
			h.serveStale(w, r, stale, "stale-while-draining", cs)
			return
		}
	}
	w.Header().Set("Retry-After", "1")
	cs.detail = "shutting-down"
	h.writeError(w, r, http.StatusServiceUnavailable, "this edge is shutting down; retry", cs)
}

// staleWait is how long a request with the stale copy stale waits for
// upstream before the copy answers it: the site's stale_timeout when the
// copy may stand in for a failed or unreachable upstream, else 0 (wait
// for upstream).
func (h *Handler) staleWait(st *site, stale *store.Entry) time.Duration {
	d := st.cfg.Grace.staleTimeout()
	if stale == nil || d <= 0 {
		return 0
	}
	age := stale.CurrentAge(h.now())
	if stale.Judge(age, nil).StaleIfError || stale.UsableDisconnected(age, st.cfg.Grace.ifUnreachable()) {
		return d
	}
	return 0
}

// serveStale answers r from a stale copy in place of upstream's answer,
// saying why in Cache-Status.
func (h *Handler) serveStale(w http.ResponseWriter, r *http.Request, stale *store.Entry, why string, cs cacheStatus) {
	age := stale.CurrentAge(h.now())
	v := stale.Judge(age, nil)
	cs.fwd, cs.detail, cs.ttl, cs.hasTTL = "stale", why, v.TTL, true
	h.serveEntry(w, r, stale, completeBodyOf(stale), age, cs)
}

// serveResult answers r from a fill's result.
func (h *Handler) serveResult(w http.ResponseWriter, r *http.Request, st *site, res fillResult, stale *store.Entry, cs cacheStatus) {
	cs.fwdStatus = res.fwdStatus
	if res.failed {
		if stale != nil {
			age := stale.CurrentAge(h.now())
			switch v := stale.Judge(age, nil); {
			case v.Fresh || v.StaleIfError || v.StaleWhileRevalidate:
				h.serveStale(w, r, stale, "stale-if-error", cs)
				return
			case res.e == nil && stale.UsableDisconnected(age, st.cfg.Grace.ifUnreachable()):
				// No answer at all: a disconnected cache may serve
				// stale (RFC 9111 §4.2.4; grace.if_unreachable).
				h.serveStale(w, r, stale, "stale-if-unreachable", cs)
				return
			}
		}
		if res.remembered {
			cs.detail = "error-backoff"
			w.Header().Set("Retry-After", strconv.FormatInt(int64(max(res.retryAfter, time.Second)/time.Second), 10))
		}
		if res.e == nil {
			status, detail := upstreamFailure(res.err)
			if status == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", "1")
			}
			if cs.detail == "" {
				cs.detail = detail
			}
			if !res.remembered {
				h.log.Warn("fill failed", "host", r.Host, "uri", r.RequestURI, "err", res.err)
			}
			h.writeError(w, r, status, "upstream failed", cs)
			return
		}
		h.serveEntry(w, r, res.e, res.body, -1, cs)
		return
	}
	if res.pass != nil {
		h.servePass(w, r, st, res.pass, cs)
		return
	}
	cs.stored = res.stored
	if res.e.Storable() {
		cs.ttl, cs.hasTTL = res.e.TTL(), true
	}
	if res.sealed != nil && h.serveStored(w, r, res.sealed, nil, res.e.InitialAge(), cs) {
		return // the same answer, from the copy the fill stored (see storedCopy)
	}
	h.serveEntry(w, r, res.e, res.body, res.e.InitialAge(), cs)
}

// servePass streams a response that will not be stored to the leader. A
// Range request is answered from it (the fill asked for the whole object,
// which the edge then cannot keep): never a second request upstream.
func (h *Handler) servePass(w http.ResponseWriter, r *http.Request, st *site, resp *http.Response, cs cacheStatus) {
	defer resp.Body.Close()
	wh := w.Header()
	for k, vs := range resp.Header {
		wh[k] = vs
	}
	policy.RemoveHopByHop(wh)
	wh["Via"] = append(wh["Via"], h.via)
	wh.Set("Cache-Status", appendCacheStatus(resp.Header.Get("Cache-Status"), h.cfg.Name, cs))
	if rh := r.Header.Get("Range"); rh != "" && resp.StatusCode == http.StatusOK && r.Method == http.MethodGet &&
		h.servePassRange(w, r, resp, rh) {
		return
	}
	w.WriteHeader(resp.StatusCode)
	h.delivered(h.countersOf(r), nil, classPass, r.ProtoMajor, 0, nil)
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.Copy(flushWriter{w}, resp.Body); err != nil {
		panic(http.ErrAbortHandler) // tell the client the body is short
	}
}

// servePassRange answers a single-range request from a whole 200 response
// as it streams by: the bytes before the range are skipped, those after it
// not read. It returns false when the range is to be ignored (no length
// announced, an If-Range that does not match, several ranges, bad syntax):
// the caller sends the whole response, as RFC 9110 §14.2 allows.
func (h *Handler) servePassRange(w http.ResponseWriter, r *http.Request, resp *http.Response, rh string) bool {
	size := resp.ContentLength
	if size < 0 {
		return false
	}
	var lm time.Time
	if v := resp.Header.Get("Last-Modified"); v != "" {
		lm, _ = policy.ParseHTTPDate(v, h.now())
	}
	if !byterange.IfRange(r.Header.Get("If-Range"), resp.Header.Get("Etag"), lm) {
		return false
	}
	ranges, err := byterange.Parse(rh, size)
	wh := w.Header()
	switch {
	case err == byterange.ErrUnsatisfiable:
		delete(wh, "Content-Type")
		wh["Content-Range"] = []string{"bytes */" + strconv.FormatInt(size, 10)}
		wh["Content-Length"] = []string{"0"}
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		h.delivered(h.countersOf(r), nil, classPass, r.ProtoMajor, 0, nil)
		return true
	case err != nil || len(ranges) != 1:
		return false
	}
	rg := ranges[0]
	wh["Content-Range"] = []string{rg.ContentRange(size)}
	wh["Content-Length"] = []string{strconv.FormatInt(rg.Length, 10)}
	w.WriteHeader(http.StatusPartialContent)
	h.delivered(h.countersOf(r), nil, classPass, r.ProtoMajor, 0, nil)
	if _, err := io.CopyN(io.Discard, resp.Body, rg.Start); err != nil {
		panic(http.ErrAbortHandler)
	}
	if _, err := io.CopyN(flushWriter{w}, resp.Body, rg.Length); err != nil {
		panic(http.ErrAbortHandler)
	}
	return true
}

// flushWriter flushes after every write so a streamed body is not held back.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

// BaseHeaderWriter is an http.ResponseWriter that can send a response's
// fields without their being copied into its header map: the fast
// HTTP/1.1 front's writer is one. serveEntry gives it the fields of an
// entry being filled as the origin sent them, and sets in Header() only
// what it adds, replaces or removes.
//
// After SetBaseHeader(base), the answer's fields are base's but those
// whose names Header() holds, and Header()'s: a name Header() holds
// replaces base's field of that name, and takes it away when it holds no
// values (then the answer has neither, as if base's had been copied and
// deleted). Fields Header() held before the call are replaced by base's
// of the same name, as a copy would replace them. Header() shows only its
// own fields: a writer that wraps one and reads or edits the answer's
// fields at WriteHeader must not pass SetBaseHeader on. base is read,
// never changed, until the handler returns, and must not change before.
// SetBaseHeader reports false, changing nothing, when it cannot take
// base (the header is written, or a base is set already).
type BaseHeaderWriter interface {
	http.ResponseWriter
	SetBaseHeader(base http.Header) bool
}

// dropField removes the field name from an answer whose header map wh
// lies over base (BaseHeaderWriter; nil base: wh is the whole header).
func dropField(wh, base http.Header, name string) {
	if _, ok := base[name]; ok {
		wh[name] = nil
		return
	}
	delete(wh, name)
}

// serveEntry writes a stored or arriving response to the client, answering
// the client's conditionals and Range from it. body is the arriving body, or
// nil for e's stored one (in memory, or streamed from the disk tier's
// file). age < 0 omits Age.
//
// The fields of an entry being filled are the origin's, which a
// BaseHeaderWriter sends without a copy into its header map (a miss's
// answer on the fast front): then only the fields set here are in the
// map. A sealed entry whose body is whole, answered as it is stored, goes
// to a StoredAnswerWriter in wire form instead (serveStored).
func (h *Handler) serveEntry(w http.ResponseWriter, r *http.Request, e *store.Entry, body *growingBody, age time.Duration, cs cacheStatus) {
	if h.serveStored(w, r, e, body, age, cs) {
		return
	}
	var disk *store.BodyReader
	if body == nil && e.OnDisk() {
		var err error
		if disk, err = h.openDiskBody(e); err != nil {
			h.log.Warn("disk tier: stored body unreadable", "key", e.Key(), "err", err)
			w.Header().Set("Retry-After", "1")
			h.writeError(w, r, http.StatusServiceUnavailable, "stored copy unavailable; retry", cacheStatus{fwd: "uri-miss", detail: "disk"})
			return
		}
		defer disk.Close()
	}
	hdr := e.Filling()   // the fields as the origin sent them; nil once sealed
	var base http.Header // the fields w sends beneath its map, not copied
	if bw, ok := w.(BaseHeaderWriter); ok && hdr != nil && bw.SetBaseHeader(hdr) {
		base = hdr
	}
	wh := w.Header()
	// The fields written here share one array of values, each field with
	// a full slice of its own, so that an append to one cannot write into
	// another (a miss writes all of them).
	vals := new([5]string)
	set := func(name string, i int, v string) {
		vals[i] = v
		wh[name] = vals[i : i+1 : i+1]
	}
	if hdr != nil {
		if base == nil {
			for k, vs := range hdr {
				wh[k] = vs
			}
		}
		via := wh["Via"]
		if bv, ok := base["Via"]; ok {
			via = bv
		}
		if len(via) == 0 {
			set("Via", 0, h.via)
		} else {
			wh["Via"] = append(via[:len(via):len(via)], h.via)
		}
		if !isFromPeer(r.Context()) {
			dropField(wh, base, "Surrogate-Key") // for this CDN's purges, not for clients
		}
	} else { // sealed: prepared for clients already
		e.WriteFields(wh, nil)
		if tags := e.Tags(); isFromPeer(r.Context()) && len(tags) > 0 {
			wh["Surrogate-Key"] = []string{strings.Join(tags, " ")} // peers purge by it too
		}
	}
	if age >= 0 {
		set("Age", 1, strconv.FormatInt(int64(age/time.Second), 10))
	}
	set("Cache-Status", 2, appendCacheStatus(e.Field("Cache-Status"), h.cfg.Name, cs))
	h.countServed(cs)

	if e.Status() == http.StatusOK || e.Status() == http.StatusNoContent {
		switch policy.CheckPreconditions(r.Method, r.Header, e.ETag(), e.LastModified()) {
		case http.StatusNotModified:
			dropField(wh, base, "Content-Length")
			dropField(wh, base, "Content-Type")
			w.WriteHeader(http.StatusNotModified)
			h.delivered(h.countersOf(r), e, classOf(cs), r.ProtoMajor, 0, nil)
			return
		case http.StatusPreconditionFailed:
			dropField(wh, base, "Content-Length")
			w.WriteHeader(http.StatusPreconditionFailed)
			h.delivered(h.countersOf(r), e, classOf(cs), r.ProtoMajor, 0, nil)
			return
		}
	}
	if e.Status() == http.StatusOK {
		set("Accept-Ranges", 3, "bytes")
		if rh := r.Header.Get("Range"); rh != "" && r.Method == http.MethodGet &&
			byterange.IfRange(r.Header.Get("If-Range"), e.ETag(), e.LastModified()) {
			if h.serveRange(w, r, base, rh, e, body, disk) {
				h.delivered(h.countersOf(r), e, classOf(cs), r.ProtoMajor, 0, nil)
				return
			}
		}
	}
	whole, complete := e.Body(), true
	size := e.BodySize()
	if body != nil {
		size, whole, complete = body.state()
	}
	if size >= 0 {
		set("Content-Length", 4, strconv.FormatInt(size, 10))
	} else {
		dropField(wh, base, "Content-Length")
	}
	w.WriteHeader(e.Status())
	if r.Method == http.MethodHead || !bodyAllowed(e.Status()) {
		h.delivered(h.countersOf(r), e, classOf(cs), r.ProtoMajor, 0, nil)
		return
	}
	if disk != nil {
		// Straight from the file: the body is never held whole.
		n, err := io.Copy(w, disk)
		h.delivered(h.countersOf(r), e, classOf(cs), r.ProtoMajor, int(n), nil)
		if err != nil {
			panic(http.ErrAbortHandler) // the client must see a short body
		}
		return
	}
	if complete {
		w.Write(whole)
		h.delivered(h.countersOf(r), e, classOf(cs), r.ProtoMajor, len(whole), nil)
		return
	}
	var flush func()
	if fl, ok := w.(http.Flusher); ok {
		flush = fl.Flush
	}
	n, err := body.writeTo(r.Context(), w, flush)
	h.delivered(h.countersOf(r), e, classOf(cs), r.ProtoMajor, int(n), nil)
	if err != nil {
		panic(http.ErrAbortHandler) // the fill broke: the client must see a short body
	}
}

// countServed counts what an answer from an entry with Cache-Status cs
// says beyond the request metrics: a stale answer, by why, and a waiter
// of a coalesced fill.
func (h *Handler) countServed(cs cacheStatus) {
	switch cs.detail {
	case "stale-while-revalidate", "stale-if-error", "stale-if-unreachable", "stale-timeout", "stale-while-draining":
		h.metrics.staleServed.WithLabelValues(cs.detail).Inc()
	}
	if cs.collapsed {
		h.metrics.collapsed.Inc()
	}
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// serveRange answers a Range request from an entry: from body, the
// arriving one, or else from disk, the stored one's file, or else the
// stored body in memory. It returns false when the Range is to be ignored
// (invalid syntax): the caller sends 200. base is what w sends beneath
// its header map (BaseHeaderWriter), nil if nothing.
func (h *Handler) serveRange(w http.ResponseWriter, r *http.Request, base http.Header, rh string, e *store.Entry, body *growingBody, disk *store.BodyReader) bool {
	var size int64
	var src io.ReaderAt
	if disk != nil && body == nil {
		size, src = e.BodySize(), disk
	} else {
		if body == nil {
			body = completeBody(e.Body())
		}
		defer body.watch(r.Context())()
		var err error
		size, err = body.waitSize(r.Context())
		if err == errStreaming {
			return false // too big to hold for a Range: the whole body, as it comes
		}
		if err != nil {
			h.writeError(w, r, http.StatusBadGateway, "upstream body failed", cacheStatus{fwd: "uri-miss", detail: "origin-body"})
			return true
		}
		src = readerAt{r.Context(), body}
	}
	ranges, err := byterange.Parse(rh, size)
	wh := w.Header()
	switch {
	case err == byterange.ErrUnsatisfiable:
		dropField(wh, base, "Content-Type")
		wh["Content-Range"] = []string{"bytes */" + strconv.FormatInt(size, 10)}
		wh["Content-Length"] = []string{"0"}
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return true
	case err != nil || len(ranges) == 0:
		return false
	case len(ranges) == 1:
		rg := ranges[0]
		wh["Content-Range"] = []string{rg.ContentRange(size)}
		wh["Content-Length"] = []string{strconv.FormatInt(rg.Length, 10)}
		w.WriteHeader(http.StatusPartialContent)
		if _, err := io.Copy(w, io.NewSectionReader(src, rg.Start, rg.Length)); err != nil && err != io.EOF {
			panic(http.ErrAbortHandler)
		}
		return true
	}
	mp := byterange.Multipart{Ranges: ranges, Size: size, ContentType: e.Field("Content-Type"), Boundary: boundaryFor(e)}
	wh["Content-Type"] = []string{mp.ContentTypeHeader()}
	wh["Content-Length"] = []string{strconv.FormatInt(mp.ContentLength(), 10)}
	w.WriteHeader(http.StatusPartialContent)
	if _, err := mp.WriteTo(w, src); err != nil {
		panic(http.ErrAbortHandler)
	}
	return true
}

// boundaryFor is a multipart boundary that cannot occur in the body's
// headers: derived from the entry's time and the body's length.
func boundaryFor(e *store.Entry) string {
	return fmt.Sprintf("meridian-%x-%x", e.ResponseTime().UnixNano(), e.BodySize())
}

// openDiskBody opens the file of e's body on disk; should the disk tier
// have moved or dropped it since the lookup, the key's current entry's,
// if it is the same response.
func (h *Handler) openDiskBody(e *store.Entry) (*store.BodyReader, error) {
	rd, err := e.OpenBody()
	if !errors.Is(err, store.ErrBodyGone) {
		return rd, err
	}
	if now := h.disk.Get(e.Key()); now != nil && now.OnDisk() && now.ResponseTime().Equal(e.ResponseTime()) && now.BodySize() == e.BodySize() {
		return now.OpenBody()
	}
	return nil, err
}

// writeError answers with a short plain-text error.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, status int, msg string, cs cacheStatus) {
	wh := w.Header()
	wh.Set("Content-Type", "text/plain; charset=utf-8")
	wh.Set("Cache-Control", "no-store")
	wh.Set("Cache-Status", appendCacheStatus("", h.cfg.Name, cs))
	w.WriteHeader(status)
	h.delivered(h.countersOf(r), nil, classError, r.ProtoMajor, 0, nil)
	if r.Method != http.MethodHead {
		fmt.Fprintf(w, "meridian: %d %s: %s\n", status, http.StatusText(status), msg)
	}
}

// pass forwards a request that the cache does not serve (an unsafe or
// unknown method, a Range on an uncacheable object) faithfully: method,
// target, headers and body unchanged but for the normalized Host, the
// keyed query of a GET or HEAD and the forwarding fields (setForwarded),
// 1xx responses relayed, nothing stored. After a successful unsafe
// request the URLs it names are invalidated (RFC 9111 §4.4).
func (h *Handler) pass(w http.ResponseWriter, r *http.Request, st *site, reason string) {
	if h.refuseLoop(w, r) {
		return
	}
	host, _ := normalizeHost(r.Host) // routed: well-formed
	pi := passInfo{reason: reason, host: host, scheme: st.trusted.scheme(r)}
	if r.Body != nil && r.Body != http.NoBody {
		pi.body = &clientBody{ReadCloser: r.Body}
		if !pi.body.buffer(passBufferBytes, r.ContentLength) {
			// Streamed: the upstream transport may still be sending
			// the body when the origin's answer comes (an upload
			// refused at once). Its header must not make net/http's
			// HTTP/1 server read and close what is left of the body
			// under the transport, whose write would then fail and
			// close the origin connection with the answer half
			// relayed. (HTTP/2 and HTTP/3 are full duplex already:
			// the call then fails, which changes nothing.)
			http.NewResponseController(w).EnableFullDuplex()
		}
	}
	ctx, cancel := context.WithCancel(context.WithValue(r.Context(), passReasonKey{}, pi))
	defer cancel()
	defer context.AfterFunc(h.draining, cancel)() // stopping: see ErrorHandler
	r = r.WithContext(ctx)
	if pi.body != nil {
		r.Body = pi.body
	}
	st.proxy.ServeHTTP(w, r)
}

type passReasonKey struct{}

// passInfo travels with a passed request to the proxy's hooks: why it is
// passed, the host and scheme the edge derived (see cacheKey), and the
// client's body.
type passInfo struct {
	reason, host, scheme string
	body                 *clientBody // nil without a request body
}

// clientBody is a passed request's body, which the upstream transport
// reads as it sends it: it keeps the first error reading it from the
// client (a malformed chunked body, a client gone), so that the request
// that failed because of it is answered 400, not 502.
type clientBody struct {
	io.ReadCloser
	mu  sync.Mutex
	err error
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

// passBufferBytes is the most of a passed request's body that is read
// whole before the request goes upstream (nginx's
// proxy_request_buffering, whose memory buffer, client_body_buffer_size,
// is 16 KiB on 64-bit systems).
const passBufferBytes = 16 << 10

// buffer reads the body whole when it is at most limit bytes long
// (announced is its Content-Length, -1 if none), and reports whether it
// did: the upstream request is then sent from memory, and neither the
// origin nor the transport can be at the client's connection while the
// answer is relayed (an origin that answers before it has read the body
// otherwise races the server's own end of the body: see pass). A longer
// body is sent as it comes, the bytes read here first. An error reading
// it is the body's, met (and kept, see failed) when the transport reads
// that far.
func (b *clientBody) buffer(limit, announced int64) bool {
	if announced > limit {
		return false
	}
	rest := b.ReadCloser
	data, err := io.ReadAll(io.LimitReader(rest, limit+1))
	switch {
	case err != nil:
		b.ReadCloser = readCloser{io.MultiReader(bytes.NewReader(data), errReader{err}), rest}
		return true
	case int64(len(data)) > limit:
		b.ReadCloser = readCloser{io.MultiReader(bytes.NewReader(data), rest), rest}
		return false
	}
	b.ReadCloser = readCloser{bytes.NewReader(data), rest}
	return true
}

// readCloser reads from one reader and closes another.
type readCloser struct {
	io.Reader
	io.Closer
}

// failed returns the first error reading the body, nil if none.
func (b *clientBody) failed() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func (h *Handler) newProxy(st *site) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pi, _ := pr.In.Context().Value(passReasonKey{}).(passInfo)
			pr.Out.URL = st.originURL(pr.In)
			pr.Out.Host = pi.host
			if st.cfg.OriginHost != "" {
				pr.Out.Host = st.cfg.OriginHost
			}
			// The same forwarding fields as a fill's (ReverseProxy has
			// removed the client's X-Forwarded-For/Host/Proto and
			// Forwarded from Out; setForwarded reads them from In).
			h.setForwarded(pr.Out.Header, pr.In, pi.host, pi.scheme)
			tracing.Propagate(pr.In.Context(), pr.In.Header, pr.Out.Header)
		},
		Transport:     st.upstream,
		FlushInterval: -1,
		ErrorLog:      nil,
		ModifyResponse: func(resp *http.Response) error {
			req := resp.Request
			pi, _ := req.Context().Value(passReasonKey{}).(passInfo)
			eff := *req.URL // the client's target, on the client's host and scheme
			eff.Scheme, eff.Host = pi.scheme, pi.host
			// Only URLs on the request's own origin (scheme and host) are
			// invalidated (policy.Invalidations): a Location elsewhere
			// cannot evict another site's objects.
			for _, u := range policy.Invalidations(req.Method, &eff, resp.StatusCode, resp.Header) {
				h.invalidate(u.Host, u.RequestURI())
			}
			h.delivered(h.countersOf(req), nil, classPass, req.ProtoMajor, 0, nil)
			resp.Header["Via"] = append(resp.Header["Via"], h.via)
			resp.Header.Set("Cache-Status", appendCacheStatus(resp.Header.Get("Cache-Status"), h.cfg.Name,
				cacheStatus{fwd: pi.reason, fwdStatus: resp.StatusCode}))
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			pi, _ := r.Context().Value(passReasonKey{}).(passInfo)
			if berr := pi.body.failed(); berr != nil {
				// The client's body broke off: the upstream request was
				// aborted with it (the transport closed its connection),
				// and the fault is the client's.
				h.log.Info("pass: request body unreadable", "method", r.Method, "host", r.Host, "uri", r.RequestURI, "err", berr)
				if r.ProtoMajor == 1 {
					w.Header().Set("Connection", "close") // its framing cannot be trusted any more
				}
				h.writeError(w, r, http.StatusBadRequest, "request body unreadable", cacheStatus{fwd: pi.reason, detail: "client-body"})
				return
			}
			if h.draining.Err() != nil && r.Context().Err() != nil {
				h.answerDraining(w, r, st, nil, cacheStatus{fwd: pi.reason})
				return
			}
			status, detail := upstreamFailure(err)
			if status == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", "1")
			}
			h.log.Warn("pass failed", "method", r.Method, "host", r.Host, "uri", r.RequestURI, "err", err)
			h.writeError(w, r, status, "upstream failed", cacheStatus{fwd: pi.reason, detail: detail})
		},
	}
}

// plainRequest reports whether r needs nothing of a hit but the stored
// response: no conditionals, no Range, not a peer's request.
func plainRequest(r *http.Request) bool {
	h := r.Header
	return h["Range"] == nil && h["If-None-Match"] == nil && h["If-Modified-Since"] == nil &&
		h["If-Match"] == nil && h["If-Unmodified-Since"] == nil && !isFromPeer(r.Context())
}
