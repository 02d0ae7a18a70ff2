package cluster

import (
	"fmt"
	"net/http"

	"github.com/meridiancdn/meridian/edge"
)

// PeerHandler serves the peer endpoint: it refuses every request that is
// not a signed GET or HEAD without a body from a member of the region, and
// hands the others to next (the edge's handler) marked with edge.FromPeer,
// so that the edge serves them from its cache or fills them from the
// origin, never from another peer. Nothing that is refused reaches next.
//
// Start serves it on the peer listener; it is exported for servers that
// mount it themselves.
func (n *Node) PeerHandler(next http.Handler) http.Handler {
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
		from, err := n.sig.verify(r.Method, r.Host, r.RequestURI, r.Header)
		if err != nil {
			n.log.Warn("peer request refused", "remote", r.RemoteAddr, "uri", r.RequestURI, "err", err)
			refuse(w, http.StatusForbidden, "request refused: %v", err)
			return
		}
		n.log.Debug("peer request", "from", from, "host", r.Host, "uri", r.RequestURI)
		stripSignature(r.Header) // not for the origin
		next.ServeHTTP(w, r.WithContext(edge.FromPeer(r.Context())))
	})
}

// refuse answers with a short plain-text error that is never cached.
func refuse(w http.ResponseWriter, status int, format string, args ...any) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintf(w, "meridian peer: %d %s: %s\n", status, http.StatusText(status), fmt.Sprintf(format, args...))
}
