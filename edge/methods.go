package edge

import (
	"bytes"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
)

// TRACE and OPTIONS are the two methods that Max-Forwards applies to
// (RFC 9110 §7.6.2): a recipient that gets Max-Forwards: 0 answers itself
// instead of forwarding, and otherwise forwards the value decremented.
// TRACE is refused (405) unless server.allow_trace is set: it reflects
// the request, cookies and credentials included, to whoever can make a
// client send it (cross-site tracing), and no cache needs it.

// allowed is the Allow field of the edge's own answers: the methods it
// serves or forwards to a site's origin.
func (h *Handler) allowed() string {
	if h.cfg.Server.AllowTrace {
		return "GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE, TRACE"
	}
	return "GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE"
}

// serveMaxForwards answers or forwards a TRACE or OPTIONS request.
func (h *Handler) serveMaxForwards(w http.ResponseWriter, r *http.Request, st *site) {
	if r.Method == http.MethodTrace && !h.cfg.Server.AllowTrace {
		w.Header().Set("Allow", h.allowed())
		h.writeError(w, r, http.StatusMethodNotAllowed, "TRACE is disabled (server.allow_trace)", cacheStatus{detail: "method-not-allowed"})
		return
	}
	n, present, ok := maxForwards(r.Header)
	switch {
	case !ok:
		h.writeError(w, r, http.StatusBadRequest, "Max-Forwards must be one decimal number", cacheStatus{detail: "max-forwards"})
		return
	case present && n == 0:
		h.answerItself(w, r)
		return
	case present:
		r2 := *r // a handler must not change its request
		r2.Header = maps.Clone(r.Header)
		r2.Header["Max-Forwards"] = []string{strconv.FormatUint(n-1, 10)}
		r = &r2
	}
	h.passLimited(w, r, st, "method")
}

// maxForwards reads a request's Max-Forwards (1*DIGIT); ok is false for
// a malformed or repeated one. A value too large for 31 bits counts as
// the largest one.
func maxForwards(hdr http.Header) (n uint64, present, ok bool) {
	vs := hdr["Max-Forwards"]
	switch len(vs) {
	case 0:
		return 0, false, true
	case 1:
	default:
		return 0, true, false
	}
	v := strings.Trim(vs[0], " \t")
	if v == "" || strings.TrimLeft(v, "0123456789") != "" {
		return 0, true, false
	}
	n, err := strconv.ParseUint(v, 10, 31)
	if err != nil { // out of range: digits only, so just large
		n = 1<<31 - 1
	}
	return n, true, true
}

// sensitiveFields are left out of a TRACE reflection (RFC 9110 §9.3.8).
var sensitiveFields = map[string]bool{
	"Authorization": true, "Proxy-Authorization": true, "Cookie": true,
}

// answerItself is the edge's own answer to an OPTIONS or TRACE request
// that may go no further: for OPTIONS the methods it allows, for TRACE
// the request as received, without its credentials and cookies.
func (h *Handler) answerItself(w http.ResponseWriter, r *http.Request) {
	wh := w.Header()
	wh.Set("Allow", h.allowed())
	wh.Set("Cache-Control", "no-store")
	if r.Method == http.MethodOptions {
		wh.Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	var b bytes.Buffer
	b.WriteString(r.Method + " " + r.RequestURI + " " + r.Proto + "\r\n")
	b.WriteString("Host: " + r.Host + "\r\n")
	r.Header.WriteSubset(&b, sensitiveFields)
	b.WriteString("\r\n")
	wh.Set("Content-Type", "message/http")
	wh.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(http.StatusOK)
	io.Copy(w, &b)
}
