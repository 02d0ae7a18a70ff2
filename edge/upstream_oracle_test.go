package edge

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"unsafe"

	"github.com/meridiancdn/meridian/edge/fill"
	"github.com/meridiancdn/meridian/edge/policy"
	"github.com/meridiancdn/meridian/edge/store"
	"github.com/meridiancdn/meridian/edge/tracing"
)

// The upstream request as main f7eaa58 built it, kept verbatim as the
// oracle of the differential tests (upstream_test.go): what reaches the
// origin is a smuggling surface, and the one-pass filter that replaced
// this clone-then-delete must forward exactly the same fields and values
// for every client header. Do not "fix" this copy: it is the reference.

// oldUpstreamRequest is Handler.upstreamRequest as of f7eaa58.
func (h *Handler) oldUpstreamRequest(parent context.Context, st *site, primary string, r *http.Request, stale *store.Entry) *http.Request {
	host, _ := normalizeHost(r.Host) // routed: well-formed
	scheme := st.trusted.scheme(r)
	fc := &fillContext{Context: parent}
	fc.info = fill.Info{Key: primary, Host: host, Scheme: scheme}
	if m, ok := markOf(r.Context()); ok {
		fc.info.FromPeer, fc.info.Peer, fc.info.Replica = !m.replica, m.peer, m.replica
	}
	fc.sub = sliceOf(r.Context())
	fc.req = *r.WithContext(fc)
	out := &fc.req
	out.Method = http.MethodGet
	st.setOriginURL(&fc.url, r)
	out.URL = &fc.url
	out.RequestURI = ""
	out.Body = nil
	out.GetBody = nil
	out.ContentLength = 0
	out.Close = false
	out.Header = oldCloneWithRoom(r.Header, 7)
	out.Trailer = r.Trailer.Clone()
	out.TransferEncoding = slices.Clone(r.TransferEncoding)
	out.Form, out.PostForm, out.MultipartForm = nil, nil, nil
	out.Host = host
	if st.cfg.OriginHost != "" {
		out.Host = st.cfg.OriginHost
	}
	policy.RemoveHopByHop(out.Header)
	for _, f := range []string{"Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since"} {
		out.Header.Del(f)
	}
	if !st.cfg.ForwardOverrideFields {
		for _, f := range []string{"X-Original-Url", "X-Rewrite-Url", "X-Http-Method-Override", "X-Http-Method", "X-Method-Override", "X-Host"} {
			delete(out.Header, f)
		}
	}
	if stale != nil {
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
	h.oldSetForwarded(out.Header, r, host, scheme)
	tracing.Propagate(r.Context(), r.Header, out.Header)
	return out
}

// oldCloneWithRoom is cloneWithRoom as of f7eaa58.
func oldCloneWithRoom(h http.Header, room int) http.Header {
	nv := 0
	for _, vv := range h {
		nv += len(vv)
	}
	sv := make([]string, nv)
	h2 := make(http.Header, len(h)+room)
	for k, vv := range h {
		if vv == nil {
			h2[k] = nil
			continue
		}
		n := copy(sv, vv)
		h2[k] = sv[:n:n]
		sv = sv[n:]
	}
	return h2
}

// oldSetForwarded is Handler.setForwarded as of f7eaa58.
func (h *Handler) oldSetForwarded(out http.Header, in *http.Request, host, scheme string) {
	trusted := h.trusted.trusts(in)
	if !trusted {
		for name := range out {
			if strings.HasPrefix(name, "X-Forwarded-") {
				delete(out, name)
			}
		}
		delete(out, "Forwarded")
		delete(out, "X-Real-Ip")
	}
	peer := peerOf(in.RemoteAddr)
	fv := new(struct {
		vals [6]string
		text [128]byte
	})
	elem := fv.text[:0]
	if need := len(`for="[]";host=;proto=`) + 39 + len(host) + len(scheme); need > len(fv.text) {
		elem = make([]byte, 0, need)
	}
	peerStr := ""
	if peer.IsValid() {
		elem = append(elem, "for="...)
		if peer.Is6() {
			elem = append(elem, `"[`...)
		}
		start := len(elem)
		elem = peer.AppendTo(elem)
		end := len(elem)
		if peer.Is6() {
			elem = append(elem, `]"`...)
		}
		elem = append(elem, ';')
		peerStr = unsafe.String(unsafe.SliceData(elem[start:end]), end-start)
	}
	elem = append(elem, "host="...)
	elem = append(elem, host...)
	elem = append(elem, ";proto="...)
	elem = append(elem, scheme...)
	fwd := unsafe.String(unsafe.SliceData(elem), len(elem))
	xff := peerStr
	if trusted {
		if prior := strings.Join(in.Header["X-Forwarded-For"], ", "); prior != "" {
			if xff == "" {
				xff = prior
			} else {
				xff = prior + ", " + xff
			}
		}
	}
	vals := fv.vals[:]
	one := func(name string, i int, v string) {
		vals[i] = v
		out[name] = vals[i : i+1 : i+1]
	}
	if xff != "" {
		one("X-Forwarded-For", 0, xff)
	} else {
		delete(out, "X-Forwarded-For")
	}
	one("X-Forwarded-Proto", 1, scheme)
	one("X-Forwarded-Host", 2, host)
	if trusted {
		if prior := strings.Join(in.Header["Forwarded"], ", "); prior != "" {
			fwd = prior + ", " + fwd
		}
	}
	one("Forwarded", 3, fwd)
	if via := in.Header["Via"]; len(via) == 0 {
		one("Via", 4, h.via)
	} else {
		out["Via"] = append(via[:len(via):len(via)], h.via)
	}
	if loop := in.Header["Cdn-Loop"]; len(loop) == 0 {
		one("Cdn-Loop", 5, h.cfg.Name)
	} else {
		out["Cdn-Loop"] = append(loop[:len(loop):len(loop)], h.cfg.Name)
	}
}
