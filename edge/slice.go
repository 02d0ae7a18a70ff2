package edge

// Slicing, with nginx's slice module as the anchor: on a site with
// slice_bytes set, a client's GET or HEAD is answered from fixed-size
// slices of the object, each fetched from upstream with
// "Range: bytes=a-b", stored as its own entry (the 206 becomes the slice's
// entry) under its own key (the object's primary key and the slice's byte
// range), coalesced like any fill and owned on the region's ring
// separately (the fill's fill.Info.Key is the slice's key, which the
// region's upstream routes by), so that a large object is cached at all
// and spreads over the region. The slice travels with the fill's request
// in a private context key (sliceOf), which newEntry reads to store the
// 206 as the slice; the fill keeps it when it puts its own context on
// the request.
//
// The layer sits on top of the request path and uses it unchanged: each
// slice is an internal subrequest through serveCacheable (lookup, fill,
// stale, Cache-Status, metrics), marked by a sliceReq in its context; its
// answer is read through a pipe (slicereader.go). It never reaches into
// entries or the tiers, apart from removing an object's slices by their
// tag (and, for a changed object, those of its old validators only),
// through the store package's API, from memory, the hot copies and the
// disk tier.
//
// Every object of a sliced site is sliced, as nginx does: its size is not
// known before its first answer, and deciding on a threshold would cost a
// request upstream that is then not usable as a slice (or two requests
// per miss). A small object is one slice (its 206 is stored like a 200).
// Operators turn slicing on for the sites (hosts) that serve large files.
//
// Answering a request: the slice holding the first byte asked for (slice
// 0 for a whole GET, a HEAD or a suffix range) is fetched first; its
// Content-Range gives the object's length, its header fields (ETag,
// Last-Modified, Cache-Control, ...) become the answer's, without those
// that describe the slice alone. Conditionals, If-Range and Range are
// answered against it (200 with the whole length, 206 with one range or
// multipart/byteranges, 304, 412, 416), then the body is streamed slice
// after slice, at most one slice fetched ahead of the one being sent.
//
// Consistency: every slice must carry the first slice's ETag,
// Last-Modified and object length. A slice that does not is fetched once
// more, revalidated end to end (Cache-Control: no-cache to peers and
// upstream); if it still differs, the object changed at the origin after
// the first slice was taken: this node's slices of the first slice's
// version are removed, the first slice is revalidated in the background
// (so that its owner lets the old version go too), and the client's
// answer is cut short (it already holds bytes of the old version), never
// completed with a mixed body. The next request gets the new version.
//
// An origin that ignores Range answers a slice request with a 200 and the
// whole body: that answer is served through as it is (the client's single
// range cut from it as it streams by). It is stored, under slice 0's key,
// when it answered slice 0 (a whole GET, a range from the start) and fits
// in max_object_bytes: an object smaller than a slice is cached as usual,
// and a larger one is never kept once per slice a request started in. An
// origin that cannot slice costs one request per client request, never
// two. A later slice that is not a 206 of its range cuts the answer short.
//
// In a region, a member asks a slice's owner for it with the slice's
// Range; the owner answers through this same layer (a 206 of that one
// slice, filled from upstream and kept by the owner), and the asker keeps
// a copy only when the slice is hot, as for any object. A slice is not
// replicated (cluster.replicas copies whole answers), and a peer's answer
// that breaks mid-slice is not resumed: the client's answer is cut, and
// the next request fetches the slice again.
//
// Work follows demand: a client that leaves cancels the slices it was
// waiting for (their fills are called off as any abandoned fill); a slice
// the client read only part of is still read to its end in the
// background, so that it is stored and the next range request finds it.
// The fills themselves are bounded by the in-flight budget like any fill.
//
// Purge: every stored slice carries a surrogate key derived from the
// object's primary key (sliceTag), so a purge of the URL finds the
// slices on every node and in every tier (memory, hot copies, disk),
// whichever member owns them; a surrogate-key purge finds them by the
// object's own keys, which they carry too; a ban (prefix, host,
// expression) matches a slice by its object's URL (keyParts drops the
// slice's part of the key), at lookup and in the sweeper, as any entry.
//
// Other layers: a slice is asked for, stored and served in the identity
// coding (a sliced site does not compress: Validate refuses it); site
// rules apply once, to the assembled answer (the subrequests take the
// rewritten request and write to their own writer); the access log and
// the trace have one line and one span per client request, whose
// Cache-Status is the first slice's with detail=sliced; the slices are
// counted in meridian_edge_slice_requests_total.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meridiancdn/meridian/edge/byterange"
	"github.com/meridiancdn/meridian/edge/policy"
	"github.com/meridiancdn/meridian/edge/store"
)

// minSliceBytes is the smallest slice_bytes: below it the subrequests'
// cost per byte outweighs what slicing gains.
const minSliceBytes = 64 << 10

// protoSlice is the ProtoMajor of a slice subrequest: what it answers is
// booked as a slice (meridian_edge_slice_requests_total), not as a
// client's request (see siteCounters.request).
const protoSlice = -1

// Errors that cut a sliced answer short.
var (
	// errSliceChanged: a slice's validators or object length differ from
	// the first slice's.
	errSliceChanged = errors.New("edge: slice of another version of the object (validators differ)")
	// errSliceBad: a slice answer that is not the 206 of the range asked.
	errSliceBad = errors.New("edge: slice answer is not the range asked for")
	// errSliceShort: a slice's body ended before its range did.
	errSliceShort = errors.New("edge: slice body shorter than its range")
	// errSliceNoAnswer: the subrequest ended without an answer.
	errSliceNoAnswer = errors.New("edge: slice subrequest ended without an answer")
	// errSliceBroken: the subrequest's body broke off.
	errSliceBroken = errors.New("edge: slice body broke off")
	// errSliceDetached ends the pipe of a subrequest whose rest is read
	// to its end and dropped (see subreq.detach).
	errSliceDetached = errors.New("edge: slice detached")
	// errSliceCanceled ends the pipe of a subrequest nobody wants.
	errSliceCanceled = errors.New("edge: slice canceled")
)

// sliceReq is what a slice subrequest asks for. It travels in the
// subrequest's context (sliceOf), and in its fill's request's.
type sliceReq struct {
	object      string // the object's primary cache key
	first, last int64  // the byte range asked, inclusive
	// refresh revalidates the slice end to end, whatever is stored.
	refresh bool
	// alone fetches a refresh alone, never joined to a fill of the slice
	// that began before it (see slicer.switchTo).
	alone bool
	// clientCC says the site honours the client's Cache-Control.
	clientCC bool
	// admit is the client request's one admission under the site's
	// per-client limits, shared by its slices.
	admit *sliceAdmission
}

type sliceKey struct{}

// sliceOf returns the slice a subrequest asks for, nil for any other
// request.
func sliceOf(ctx context.Context) *sliceReq {
	s, _ := ctx.Value(sliceKey{}).(*sliceReq)
	return s
}

// key is where the slice is stored: the object's primary key, then the
// byte range (a variant key has a digit after the first NUL, never "s").
func (s *sliceReq) key() string {
	return s.object + "\x00slice\x00" + strconv.FormatInt(s.first, 10) + "-" + strconv.FormatInt(s.last, 10)
}

// setUpstreamFields puts the slice's Range in the fill's request, and
// Cache-Control: no-cache for a refresh, so that a peer or shield that
// holds the slice revalidates it too (a member honours a peer's no-cache
// on a slice: see serveSliced). The client's own Cache-Control and
// Pragma are passed on only where the site lets clients steer the cache
// (honor_client_cache_control): a client must not make a slice's owner
// revalidate it otherwise.
func (s *sliceReq) setUpstreamFields(h http.Header) {
	h["Range"] = []string{"bytes=" + strconv.FormatInt(s.first, 10) + "-" + strconv.FormatInt(s.last, 10)}
	if !s.clientCC {
		delete(h, "Cache-Control")
		delete(h, "Pragma")
	}
	if s.refresh {
		h["Cache-Control"] = []string{"no-cache"}
	}
}

// storeAs prepares a slice fill's answer for storage: it adds the
// object's slice tag to its surrogate keys (so that a purge of the URL
// finds it), and returns the status under which its storability is
// judged, or ok false when it must not be stored as the slice.
//
// A 206 that is exactly the range asked (Content-Range within the
// object's length; Content-Length, when given, matching: a 206 that
// revalidation refreshed has none) is judged as the 200 it is part of;
// any other 206 is not stored. A slice stored with a body of another
// length is caught when it is read (slicer.check) and removed.
//
// A 200 (an origin that ignores Range sends the whole object) is stored
// under the first slice's key only, where a whole GET looks first: an
// object smaller than a slice is then cached as it is, and a larger one
// is not kept once per slice a request started in.
func (s *sliceReq) storeAs(status int, hdr http.Header) (judged int, ok bool) {
	tag := sliceTag(s.object)
	if sk := strings.Join(hdr["Surrogate-Key"], " "); !containsField(sk, tag) {
		hdr["Surrogate-Key"] = []string{strings.TrimSpace(sk + " " + tag)}
	}
	switch status {
	case http.StatusOK:
		return status, s.first == 0
	case http.StatusPartialContent:
	default:
		return status, true
	}
	a, b, total, ok := byterange.ParseContentRange(hdr.Get("Content-Range"))
	if !ok || a != s.first || b != min(s.last, total-1) {
		return status, false
	}
	if cl := hdr.Get("Content-Length"); cl != "" && cl != strconv.FormatInt(b-a+1, 10) {
		return status, false
	}
	return http.StatusOK, true
}

func containsField(list, tag string) bool {
	for _, f := range strings.Fields(list) {
		if f == tag {
			return true
		}
	}
	return false
}

// sliceTag is the surrogate key every slice of the object at primary
// carries: a digest of the key, which may be long and hold anything a
// request target may.
func sliceTag(primary string) string {
	sum := sha256.Sum256([]byte(primary))
	return "meridian-slices-" + hex.EncodeToString(sum[:16])
}

// sliceTags are the slice tags of primary keys, for a purge.
func sliceTags(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = sliceTag(k)
	}
	return out
}

// sliceVersion is what tells versions of an object apart: its
// validators.
type sliceVersion struct{ etag, lastModified string }

// removeSlices removes the slices of the object at primary from this
// node's tiers (memory, hot copies, disk): every one, or when old is
// given those of that version only (a slice of the new version, just
// fetched, stays). It reports whether it removed one. On disk the
// removal is written in the background (Disk.Supersede: the slices are
// gone from the index at once); a purge removes them on disk before it
// answers (Purge, by their tag).
func (h *Handler) removeSlices(primary string, old *sliceVersion) bool {
	tag, removed := sliceTag(primary), false
	stale := func(e *store.Entry) bool {
		return old == nil || e != nil && e.ETag() == old.etag && e.Field("Last-Modified") == old.lastModified
	}
	for _, s := range []*store.Store{h.store, h.hot} {
		for _, k := range s.KeysByTag(tag) {
			if stale(s.Peek(k)) {
				removed = s.Remove(k) || removed
			}
		}
	}
	if h.disk != nil {
		for _, k := range h.disk.KeysByTag(tag) {
			if e := h.disk.Peek(k); e != nil && stale(e) {
				h.disk.Supersede(k)
				removed = true
			}
		}
	}
	return removed
}

// sliceAdmission admits a sliced client request under the site's
// per-client limits once, at its first slice that goes upstream, and
// holds that admission until the request ends: a download of many slices
// counts as one request, as it would unsliced.
type sliceAdmission struct {
	mu       sync.Mutex
	admitted bool
	release  func()
}

// admit runs fn (the limiter's admission) unless the request was
// admitted already.
func (a *sliceAdmission) admit(fn func() (func(), bool)) (func(), bool) {
	noop := func() {}
	a.mu.Lock()
	done := a.admitted
	a.mu.Unlock()
	if done {
		return noop, true
	}
	rel, ok := fn()
	if !ok {
		return nil, false
	}
	a.mu.Lock()
	if a.admitted { // two slices raced: keep one admission
		a.mu.Unlock()
		rel()
		return noop, true
	}
	a.admitted, a.release = true, rel
	a.mu.Unlock()
	return noop, true
}

// finish gives the admission back, once the client request is answered.
func (a *sliceAdmission) finish() {
	a.mu.Lock()
	rel := a.release
	a.release = nil
	a.mu.Unlock()
	if rel != nil {
		rel()
	}
}

// slicing reports whether a GET or HEAD routed to st is answered from
// slices: the site slices, it is not itself a slice, and it carries no
// Authorization (such requests read nothing others stored; they are
// answered whole, as on any site).
func slicing(st *site, r *http.Request) bool {
	return st.cfg.SliceBytes > 0 && r.Header["Authorization"] == nil && sliceOf(r.Context()) == nil
}

// slicer answers one client request from slices.
type slicer struct {
	h      *Handler
	st     *site
	r      *http.Request
	size   int64  // slice_bytes
	object string // the object's primary key
	admit  *sliceAdmission
	// refresh revalidates every slice: a peer asked with no-cache.
	refresh bool

	// The object, from the first slice.
	total      int64
	firstIndex int64
	ver        sliceVersion

	// The reader's state (only the handler's goroutine touches it).
	ranges    []byterange.Range // what the answer's body holds, sorted
	cur, next *subreq           // the slice being read; the one fetched ahead
	pos       int64             // the object offset cur yields next
	retried   map[int64]bool    // slices fetched once more after a mismatch
	alone     map[int64]bool    // of those, the ones refreshed alone (sliceReq.alone)

	mu       sync.Mutex
	attached []*subreq // subrequests the client waits on: aborted when it leaves
	gone     bool      // the client left
}

// serveSliced answers a GET or HEAD on a sliced site from its slices.
func (h *Handler) serveSliced(w http.ResponseWriter, r *http.Request, st *site) {
	s := &slicer{h: h, st: st, r: r, size: st.cfg.SliceBytes, object: st.cacheKey(r), admit: &sliceAdmission{},
		retried: map[int64]bool{}, alone: map[int64]bool{}}
	if isFromPeer(r.Context()) && len(r.Header["Cache-Control"]) > 0 {
		// A peer's no-cache is its refresh of a slice that did not match
		// (see setUpstreamFields): the members trust each other.
		s.refresh = policy.ParseCacheControl(r.Header["Cache-Control"]).NoCache
	}
	defer s.admit.finish()
	stop := context.AfterFunc(r.Context(), s.clientGone)
	defer stop()
	completed := false
	defer func() { s.end(completed) }()

	rh := ""
	if r.Method == http.MethodGet {
		rh = r.Header.Get("Range")
	}
	f := s.indexOf(firstByteOf(rh))
	first := s.open(f, s.refresh, r.Method == http.MethodHead)
	<-first.ready
	if first.err != nil {
		if s.isGone() {
			return
		}
		h.log.Warn("slice failed", "host", r.Host, "uri", r.RequestURI, "slice", f, "err", first.err)
		h.writeError(w, r, http.StatusBadGateway, "slice failed", cacheStatus{fwd: "uri-miss", detail: "sliced"})
		return
	}
	if first.status != http.StatusPartialContent {
		completed = s.passThrough(w, first, rh)
		return
	}
	_, _, total, ok := byterange.ParseContentRange(first.header.Get("Content-Range"))
	s.total, s.firstIndex = total, f
	s.ver = sliceVersion{first.header.Get("Etag"), first.header.Get("Last-Modified")}
	if err := s.check(first, f); !ok || err != nil {
		h.log.Warn("slice answer is not the range asked", "host", r.Host, "uri", r.RequestURI, "slice", f,
			"content_range", first.header.Get("Content-Range"), "err", err)
		h.removeSlices(s.object, nil)
		h.writeError(w, r, http.StatusBadGateway, "upstream answered a slice with another range", cacheStatus{fwd: "uri-miss", detail: "slice-range"})
		return
	}

	// The answer's fields are the first slice's, without those that
	// describe the slice alone.
	wh := w.Header()
	for k, vs := range first.header {
		wh[k] = vs
	}
	delete(wh, "Content-Range")
	delete(wh, "Content-Length")
	delete(wh, "Content-Digest")
	wh["Cache-Status"] = []string{h.slicedStatus(first.header.Get("Cache-Status"))}
	class := classOfStatus(first.status, first.ownStatus())

	var lm time.Time
	if s.ver.lastModified != "" {
		lm, _ = policy.ParseHTTPDate(s.ver.lastModified, h.now())
	}
	switch policy.CheckPreconditions(r.Method, r.Header, s.ver.etag, lm) {
	case http.StatusNotModified:
		delete(wh, "Content-Type")
		w.WriteHeader(http.StatusNotModified)
		h.delivered(h.countersOf(r), nil, class, r.ProtoMajor, 0, nil)
		completed = true
		return
	case http.StatusPreconditionFailed:
		w.WriteHeader(http.StatusPreconditionFailed)
		h.delivered(h.countersOf(r), nil, class, r.ProtoMajor, 0, nil)
		completed = true
		return
	}
	wh["Accept-Ranges"] = []string{"bytes"}
	if r.Method == http.MethodHead {
		wh["Content-Length"] = []string{strconv.FormatInt(total, 10)}
		w.WriteHeader(http.StatusOK)
		h.delivered(h.countersOf(r), nil, class, r.ProtoMajor, 0, nil)
		completed = true
		return
	}

	status := http.StatusOK
	s.ranges = []byterange.Range{{Start: 0, Length: total}}
	if rh != "" && byterange.IfRange(r.Header.Get("If-Range"), s.ver.etag, lm) {
		ranges, err := byterange.Parse(rh, total)
		switch {
		case err == byterange.ErrUnsatisfiable:
			delete(wh, "Content-Type")
			wh["Content-Range"] = []string{"bytes */" + strconv.FormatInt(total, 10)}
			wh["Content-Length"] = []string{"0"}
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			h.delivered(h.countersOf(r), nil, class, r.ProtoMajor, 0, nil)
			completed = true
			return
		case err == nil:
			s.ranges, status = ranges, http.StatusPartialContent
		}
	}
	var mp *byterange.Multipart
	switch {
	case status == http.StatusOK:
		wh["Content-Length"] = []string{strconv.FormatInt(total, 10)}
	case len(s.ranges) == 1:
		wh["Content-Range"] = []string{s.ranges[0].ContentRange(total)}
		wh["Content-Length"] = []string{strconv.FormatInt(s.ranges[0].Length, 10)}
	default:
		mp = &byterange.Multipart{Ranges: s.ranges, Size: total, ContentType: first.header.Get("Content-Type"),
			Boundary: fmt.Sprintf("meridian-%x-%x", total, h.now().UnixNano())}
		wh["Content-Type"] = []string{mp.ContentTypeHeader()}
		wh["Content-Length"] = []string{strconv.FormatInt(mp.ContentLength(), 10)}
	}
	// The first slice starts the body if the body needs it; otherwise it
	// is left to complete (it was fetched: it is stored).
	if s.indexOf(s.ranges[0].Start) == f {
		s.cur, s.pos = first, f*s.size
		s.prefetch(f)
	} else {
		s.release(first, true)
	}
	w.WriteHeader(status)
	out := flushWriter{w}
	var n int64
	var err error
	if mp != nil {
		n, err = mp.WriteTo(out, s)
	} else {
		rg := s.ranges[0]
		n, err = s.copyRange(out, rg.Start, rg.Length)
	}
	h.delivered(h.countersOf(r), nil, class, r.ProtoMajor, int(n), nil)
	if err != nil {
		if !s.isGone() {
			h.log.Warn("sliced answer cut short", "host", r.Host, "uri", r.RequestURI, "err", err)
		}
		panic(http.ErrAbortHandler) // the client must see a short body
	}
	completed = true
}

// passThrough answers from a first slice that is not a 206: the origin
// ignored the Range (a 200 with the whole body), refused it (416), or
// answered with an error or a redirect. It reports whether the answer
// went out whole.
func (s *slicer) passThrough(w http.ResponseWriter, sub *subreq, rh string) bool {
	h, r := s.h, s.r
	wh := w.Header()
	for k, vs := range sub.header {
		wh[k] = vs
	}
	wh["Cache-Status"] = []string{h.slicedStatus(sub.header.Get("Cache-Status"))}
	class := classOfStatus(sub.status, sub.ownStatus())
	status := sub.status
	if status == http.StatusRequestedRangeNotSatisfiable && rh == "" && sub.header.Get("Content-Range") == "bytes */0" {
		// An empty object: the slice's range is past its end, the
		// client's request (no range) is not.
		for _, f := range []string{"Content-Range", "Content-Type", "Content-Length"} {
			delete(wh, f)
		}
		wh["Content-Length"] = []string{"0"}
		status = http.StatusOK
	}
	if status == http.StatusOK && rh != "" && r.Method == http.MethodGet {
		cl, _ := strconv.ParseInt(sub.header.Get("Content-Length"), 10, 64)
		if sub.header.Get("Content-Length") == "" {
			cl = -1
		}
		resp := &http.Response{StatusCode: status, Header: sub.header, Body: io.NopCloser(sub.pr), ContentLength: cl}
		if h.servePassRange(w, r, resp, rh) {
			s.release(sub, true)
			return true
		}
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead || !bodyAllowed(status) || status != sub.status {
		h.delivered(h.countersOf(r), nil, class, r.ProtoMajor, 0, nil)
		s.release(sub, true)
		return true
	}
	n, err := io.Copy(flushWriter{w}, sub.pr)
	h.delivered(h.countersOf(r), nil, class, r.ProtoMajor, int(n), nil)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	s.release(sub, true)
	return true
}

// slicedStatus is a slice's Cache-Status as the answer assembled from it
// gives it: this cache's entry says "detail=sliced" unless it has a
// detail of its own (a stale answer says why).
func (h *Handler) slicedStatus(v string) string {
	if v == "" {
		return appendCacheStatus("", h.cfg.Name, cacheStatus{detail: "sliced"})
	}
	own := v
	if i := strings.LastIndex(v, ", "); i >= 0 {
		own = v[i+2:]
	}
	if strings.Contains(own, "; detail=") {
		return v
	}
	return v + "; detail=sliced"
}

// classOfStatus is the request class of an answer assembled from a slice
// whose status and own Cache-Status entry are given (see classOf).
func classOfStatus(status int, own string) int {
	switch {
	case strings.Contains(own, "; detail=stale-"):
		return classStale
	case strings.Contains(own, "; detail=error-backoff"), status >= 500:
		return classError
	case strings.Contains(own, "; hit"):
		return classHit
	case strings.Contains(own, "; fwd=uri-miss"), strings.Contains(own, "; fwd=vary-miss"), strings.Contains(own, "; fwd=stale"):
		return classMiss
	}
	return classPass
}

// firstByteOf is the first byte a Range field asks for, when it can be
// told without the object's length: 0 for none, a suffix range, or a
// field that does not parse (byterange.Parse decides on it later).
func firstByteOf(rh string) int64 {
	v := strings.TrimSpace(rh)
	if len(v) < 6 || !strings.EqualFold(v[:6], "bytes=") {
		return 0
	}
	first := int64(-1)
	for rest := v[6:]; rest != ""; {
		var spec string
		spec, rest, _ = strings.Cut(rest, ",")
		spec = strings.TrimSpace(spec)
		if spec == "" {
			continue
		}
		a, _, ok := strings.Cut(spec, "-")
		if !ok || a == "" {
			return 0
		}
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n < 0 {
			return 0
		}
		if first < 0 || n < first {
			first = n
		}
	}
	return max(first, 0)
}
