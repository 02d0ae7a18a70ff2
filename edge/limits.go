package edge

import (
	"net/http"
	"strconv"
	"time"

	"github.com/meridiancdn/meridian/edge/limit"
)

// admitUpstream applies the site's per-client limits (sites[].limits) to
// a request about to go upstream: a miss, a revalidation, a pass-through.
// Hits are never limited: they cost the origin nothing, and the fast front
// serves them without a table lookup. A client over its rate or its
// requests in flight is answered 429 with Retry-After and ok is false;
// else release must be called when the request ends. Requests from
// cluster peers (signed: they carry many clients) are not limited.
func (h *Handler) admitUpstream(w http.ResponseWriter, r *http.Request, st *site, cs cacheStatus) (release func(), ok bool) {
	l := st.limiter
	if l == nil || isFromPeer(r.Context()) || isReplica(r.Context()) {
		return func() {}, true
	}
	if sub := sliceOf(r.Context()); sub != nil {
		// A sliced answer is admitted once, at its first slice that
		// goes upstream, for as long as it lasts (slice.go).
		return sub.admit.admit(func() (func(), bool) { return h.admitClient(w, r, l, cs) })
	}
	return h.admitClient(w, r, l, cs)
}

// admitClient admits one request of r's client under l, or refuses it
// with 429.
func (h *Handler) admitClient(w http.ResponseWriter, r *http.Request, l *limit.Limiter, cs cacheStatus) (release func(), ok bool) {
	addr := h.ClientAddr(r)
	if !addr.IsValid() {
		return func() {}, true
	}
	key := limit.ClientKey(addr)
	if allowed, wait := l.Allow(key); !allowed {
		h.refuseLimited(w, r, wait, "rate-limited", cs)
		return nil, false
	}
	if !l.Acquire(key) {
		h.refuseLimited(w, r, time.Second, "concurrency-limited", cs)
		return nil, false
	}
	return func() { l.Release(key) }, true
}

// refuseLimited answers 429 with Retry-After in whole seconds.
func (h *Handler) refuseLimited(w http.ResponseWriter, r *http.Request, wait time.Duration, detail string, cs cacheStatus) {
	secs := int64((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	cs.detail = detail
	h.writeError(w, r, http.StatusTooManyRequests, "too many requests from this client; retry later", cs)
}

// passLimited passes r upstream (see pass) within the site's per-client
// limits.
func (h *Handler) passLimited(w http.ResponseWriter, r *http.Request, st *site, reason string) {
	release, ok := h.admitUpstream(w, r, st, cacheStatus{fwd: reason})
	if !ok {
		return
	}
	defer release()
	h.pass(w, r, st, reason)
}
