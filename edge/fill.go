package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/meridiancdn/meridian/edge/policy"
)

// errFirstByteTimeout ends a fill whose response headers did not come
// within the site's timeout.
var errFirstByteTimeout = errors.New("no response headers within the site's timeout")

// errorBodyLimit bounds how much of an upstream 5xx body is buffered to be
// shared by coalesced waiters.
const errorBodyLimit = 64 << 10

// flight is one upstream fill that any number of requests wait on. It is
// registered under its key while it runs, so concurrent misses join it, and
// removed when its body is complete and stored (groupcache's singleflight,
// cleaned up after the call; bodies go further: waiters read as bytes come).
type flight struct {
	done chan struct{} // closed once res is set
	res  fillResult

	mu         sync.Mutex
	published  bool
	leaderGone bool
	hint       func(code int, h textproto.MIMEHeader) // to the leader's client; nil if none
	// parties counts the requests that wait on the flight or use its
	// result and have not released it; the body, once there, is told, so
	// that a streaming body never drops bytes one of them has yet to read.
	parties int
	body    *growingBody
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

// release says a party is done with the flight and its result. The
// caller must not hold the handler's lock.
func (f *flight) release() {
	f.mu.Lock()
	f.parties--
	b := f.body
	f.mu.Unlock()
	if b != nil {
		b.release()
	}
}

// attach makes b the flight's body, expecting the current parties.
func (f *flight) attach(b *growingBody) {
	f.mu.Lock()
	f.body = b
	b.expect(f.parties)
	f.mu.Unlock()
}

// fillResult is what a fill hands to its waiters once upstream answered.
type fillResult struct {
	e         *entry       // the response to share (status, header, policy)
	body      *growingBody // its body, complete or arriving
	stored    bool         // e is to be stored once its body is complete
	secondary string       // the secondary key of the leader's request, if e varies
	failed    bool         // upstream failed (transport error or 5xx): a stale copy may stand in
	err       error        // transport error, when there is no response at all
	fwdStatus int          // upstream's status, 0 if none
	// pass is a response that may not be shared (uncacheable, or too big to
	// hold): it goes to the leader alone, and the others fetch for
	// themselves.
	pass *http.Response
}

// publish hands the result to the waiters.
func (f *flight) publish(res fillResult) {
	f.mu.Lock()
	f.res = res
	f.published = true
	if f.leaderGone && res.pass != nil {
		res.pass.Body.Close()
		f.res.pass = nil
	}
	f.mu.Unlock()
	close(f.done)
}

// abandon is called by a leader whose client went away before the result.
func (f *flight) abandon() {
	f.mu.Lock()
	f.leaderGone = true
	f.hint = nil
	if f.published && f.res.pass != nil {
		f.res.pass.Body.Close()
		f.res.pass = nil
	}
	f.mu.Unlock()
}

// joinOrStart returns the flight for key, starting one with out as its
// upstream request when none runs. leader reports whether the caller
// started it.
func (h *Handler) joinOrStart(st *site, key, primary string, out *http.Request, stale *entry, hint func(int, textproto.MIMEHeader)) (f *flight, leader bool) {
	h.mu.Lock()
	if f, ok := h.flights[key]; ok {
		f.join()
		h.mu.Unlock()
		return f, false
	}
	f = &flight{done: make(chan struct{}), hint: hint, parties: 1}
	h.flights[key] = f
	h.mu.Unlock()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.fill(f, st, key, primary, out, stale, true)
	}()
	return f, true
}

// startSolo runs a fill that nobody else joins (hit-for-miss, requests
// with Authorization).
func (h *Handler) startSolo(st *site, key, primary string, out *http.Request, stale *entry, hint func(int, textproto.MIMEHeader)) *flight {
	f := &flight{done: make(chan struct{}), hint: hint, parties: 1}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.fill(f, st, key, primary, out, stale, false)
	}()
	return f
}

// refresh revalidates a stale entry in the background
// (stale-while-revalidate), unless a fill for its key already runs.
func (h *Handler) refresh(st *site, key, primary string, r *http.Request, stale *entry) {
	if h.closed.Load() {
		return
	}
	out := h.upstreamRequest(st, r, stale)
	f, leader := h.joinOrStart(st, key, primary, out, stale, nil)
	if leader {
		f.abandon() // nobody reads a pass response of a background refresh
	}
	f.release() // nor anything else of it
}

// upstreamRequest builds the request a fill sends: always a full GET for the
// client's target, with this cache's own validators and none of the client's
// conditionals or Range, so that what comes back can be stored and shared.
func (h *Handler) upstreamRequest(st *site, r *http.Request, stale *entry) *http.Request {
	fi := FillInfo{Key: st.cacheKey(r), Host: strings.ToLower(hostOnly(r.Host)), FromPeer: isFromPeer(r.Context()), Replica: isReplica(r.Context()), Peer: peerInfo(r.Context())}
	out := r.Clone(context.WithValue(context.Background(), fillInfoKey{}, fi))
	out.Method = http.MethodGet
	out.URL = st.originURL(r)
	out.RequestURI = ""
	out.Body = nil
	out.ContentLength = 0
	if st.cfg.OriginHost != "" {
		out.Host = st.cfg.OriginHost
	}
	policy.RemoveHopByHop(out.Header)
	for _, f := range conditionalFields {
		out.Header.Del(f)
	}
	if stale != nil {
		if etag := stale.etag(); etag != "" {
			out.Header.Set("If-None-Match", etag)
		}
		if lm := stale.lastModified(); !lm.IsZero() {
			out.Header.Set("If-Modified-Since", lm.UTC().Format(http.TimeFormat))
		}
	}
	h.addForwarded(out, r)
	return out
}

var conditionalFields = []string{"Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since"}

// addForwarded appends this hop to Via and the client to X-Forwarded-For.
func (h *Handler) addForwarded(out, in *http.Request) {
	out.Header["Via"] = append(out.Header["Via"], h.via)
	if ip, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		if prior := out.Header.Get("X-Forwarded-For"); prior != "" {
			ip = prior + ", " + ip
		}
		out.Header.Set("X-Forwarded-For", ip)
	}
	proto := "http"
	if in.TLS != nil {
		proto = "https"
	}
	if out.Header.Get("X-Forwarded-Proto") == "" {
		out.Header.Set("X-Forwarded-Proto", proto)
	}
}

// fill fetches out from upstream and publishes the result to f's waiters;
// for a shareable response it then reads the body into a growingBody that
// the waiters read as it arrives, and stores the entry when it is complete.
func (h *Handler) fill(f *flight, st *site, key, primary string, out *http.Request, stale *entry, shared bool) {
	unregister := func() {
		if !shared {
			return
		}
		h.mu.Lock()
		if h.flights[key] == f {
			delete(h.flights, key)
		}
		h.mu.Unlock()
	}
	// The site's timeout bounds the wait for the response's headers; the
	// body, however long, is bounded only between reads (the pool's
	// read_timeout), so that a large download is not cut off.
	ctx, cancelCause := context.WithCancelCause(context.WithValue(h.ctx, fillInfoKey{}, out.Context().Value(fillInfoKey{})))
	cancel := func() { cancelCause(nil) }
	firstByte := time.AfterFunc(st.cfg.Timeout, func() { cancelCause(errFirstByteTimeout) })
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, hdr textproto.MIMEHeader) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if code == http.StatusEarlyHints && f.hint != nil && !f.published { // other 1xx (a peer's 102) are hop-by-hop
			f.hint(code, hdr)
		}
		return nil
	}}
	out = out.WithContext(httptrace.WithClientTrace(ctx, trace))

	purgeGen := h.purges.generation()
	reqTime := h.now()
	resp, err := st.upstream.RoundTrip(out)
	if !firstByte.Stop() && err == nil {
		resp.Body.Close() // the timeout passed just as the headers came
		err = errFirstByteTimeout
	}
	if err != nil && context.Cause(ctx) == errFirstByteTimeout && !errors.Is(err, errFirstByteTimeout) {
		err = fmt.Errorf("%w: %w", errFirstByteTimeout, err)
	}
	respTime := h.now()
	h.metrics.fill(reqTime, respTime, err != nil || resp.StatusCode >= 500)
	if err != nil {
		cancel()
		unregister()
		f.publish(fillResult{failed: true, err: fmt.Errorf("origin %s: %w", st.origin.Host, err)})
		return
	}

	// A 304 to our own validators refreshes the stale entry (§4.3.4).
	if resp.StatusCode == http.StatusNotModified && stale != nil {
		resp.Body.Close()
		cancel()
		resp.Header.Del(PeerFillHeader) // a transport's mark, never stored
		merged := policy.UpdateHeaders(stale.baseHeader(), resp.Header)
		policy.RemoveHopByHop(merged)
		e, _ := h.newEntry(int(stale.status), merged, out.Header, reqTime, respTime, st)
		e.body = stale.body
		res := fillResult{e: e, body: completeBody(stale.body), fwdStatus: resp.StatusCode}
		if e.storable() {
			res.stored = true
			h.putFilled(h.store, primary, out.Header, e, purgeGen)
		}
		unregister()
		f.publish(res)
		return
	}

	// 5xx: upstream failed. Share a small copy of its answer with the
	// waiters (each of which may use its stale copy instead): a failing
	// origin is not hit once per waiter.
	if resp.StatusCode >= 500 {
		body, rerr := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
		resp.Body.Close()
		cancel()
		hdr := resp.Header.Clone()
		policy.RemoveHopByHop(hdr)
		hdr.Del("Content-Length")
		e := newFillingEntry(resp.StatusCode, hdr, policy.Policy{}, respTime)
		res := fillResult{failed: true, e: e, body: completeBody(body), fwdStatus: resp.StatusCode}
		if rerr != nil {
			res.e, res.body, res.err = nil, nil, fmt.Errorf("origin %s: %w", st.origin.Host, rerr)
		}
		unregister()
		f.publish(res)
		return
	}

	hdr := resp.Header.Clone()
	policy.RemoveHopByHop(hdr)
	fromOwner := hdr.Get(PeerFillHeader) != ""
	hdr.Del(PeerFillHeader)
	e, pol := h.newEntry(resp.StatusCode, hdr, out.Header, reqTime, respTime, st)
	maxObj := h.cache.Load().MaxObjectBytes
	if !pol.Store || resp.ContentLength > maxObj {
		// Not shareable: the leader streams it; later requests skip
		// coalescing for a while instead of queueing behind each other.
		if shared {
			h.markHitForMiss(key, respTime)
		}
		unregister()
		resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
		f.publish(fillResult{pass: resp, fwdStatus: resp.StatusCode})
		return
	}
	if !shared {
		h.clearHitForMiss(key)
	}
	for _, name := range pol.StripFields {
		hdr.Del(name)
	}
	capHint := resp.ContentLength
	body := newGrowingBody(resp.ContentLength, capHint)
	f.attach(body)
	// "stored" is said only when it is known now: a body of unknown length
	// may still outgrow max_object_bytes.
	res := fillResult{e: e, body: body, stored: !fromOwner && resp.ContentLength >= 0, fwdStatus: resp.StatusCode}
	if fields, ok := policy.VaryFields(hdr["Vary"]); ok && len(fields) > 0 {
		res.secondary, _ = policy.SecondaryKey(fields, out.Header)
	}
	f.publish(res)

	// The entry is stored, and the flight unregistered, before the readers
	// can see the last byte: a client that has the whole body and asks
	// again finds the stored entry, not a finished flight.
	storeEntry := func(all []byte) {
		if int64(len(all)) <= maxObj {
			stored := e.clone()
			stored.body = all
			fi, _ := FillInfoFrom(out.Context())
			switch {
			case !fromOwner || fi.Replica:
				h.putFilled(h.store, primary, out.Header, stored, purgeGen)
			case h.peerFillIsHot(primary):
				// The owner peer holds the real copy; keep a short-lived
				// one of a hot object only (groupcache's hot cache).
				if limit := stored.initialAge + hotTTL; stored.policy().Lifetime > limit {
					stored.setLifetime(limit)
				}
				h.putFilled(h.hot, primary, out.Header, stored, purgeGen)
			}
		}
		unregister()
	}
	var beforeLast func([]byte)
	if resp.ContentLength > 0 {
		beforeLast = storeEntry
	}
	onStream := func() {
		// Too big to store: new requests must not join a body that
		// no longer starts at its first byte, nor queue behind it.
		h.metrics.streamed.Inc()
		unregister()
		if shared {
			h.markHitForMiss(key, h.now())
		}
	}
	n, err := readInto(ctx, body, resp.Body, maxObj, resp.ContentLength, beforeLast, onStream)
	resp.Body.Close()
	cancel()
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		body.finish(fmt.Errorf("origin %s: body: %w", st.origin.Host, err))
		unregister()
		return
	}
	if beforeLast == nil && !body.streamed() {
		// Length unknown (or empty): readers learn the end only from
		// finish, which comes after this.
		storeEntry(body.bytes())
	}
	body.finish(nil)
}

// readBufs are the fills' read buffers: a miss must not allocate 32 KiB.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// streamWindow is how far a streaming body's slowest reader may lag
// behind the fill.
const streamWindow = 4 << 20

// readInto copies src into b. A body of unknown length that grows past
// maxObj will not be stored: onStream runs, and b switches to streaming,
// so that the readers already on it get the rest without the body being
// held whole.
//
// When size (the announced length) is reached, beforeLast runs with the
// whole body before the readers can see its last bytes.
func readInto(ctx context.Context, b *growingBody, src io.Reader, maxObj, size int64, beforeLast func([]byte), onStream func()) (int64, error) {
	stop := context.AfterFunc(ctx, b.stop)
	defer stop()
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := *bp
	var n int64
	for {
		m, err := src.Read(buf)
		if m > 0 {
			n += int64(m)
			if size < 0 && n > maxObj && !b.streamed() {
				onStream()
				b.stream(streamWindow)
			}
			if beforeLast != nil && n == size {
				b.appendThen(buf[:m], beforeLast)
				beforeLast = nil
			} else if aerr := b.append(buf[:m]); aerr != nil {
				return n, aerr
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

// newEntry evaluates a response for storage and builds its entry, which
// holds hdr as its fields until it is sealed.
func (h *Handler) newEntry(status int, hdr, reqHeader http.Header, reqTime, respTime time.Time, st *site) (*entry, policy.Policy) {
	pol := policy.Evaluate(http.MethodGet, reqHeader, status, hdr, reqTime, respTime, st.opts)
	return newFillingEntry(status, hdr, pol, respTime), pol
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

// originURL is the upstream URL for r: the site's origin with r's path and
// query exactly as the client sent them.
func (st *site) originURL(r *http.Request) *url.URL {
	u := *st.origin
	u.Path = r.URL.Path
	u.RawPath = r.URL.RawPath
	u.RawQuery = r.URL.RawQuery
	u.ForceQuery = r.URL.ForceQuery
	return &u
}
