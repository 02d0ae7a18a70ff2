package edge

import (
	"net/http"
	"testing"

	"github.com/meridiancdn/meridian/edge/fill"
	"github.com/meridiancdn/meridian/edge/policy"
)

// TestNeedsCleaningFollowsRemoveHopByHop: a fill lends upstream's header
// map to its entry only when needsCleaning says nothing is to be taken
// out, so it must know every field policy.RemoveHopByHop removes, and the
// peer mark.
func TestNeedsCleaningFollowsRemoveHopByHop(t *testing.T) {
	for _, name := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Trailers",
		"Transfer-Encoding", "Upgrade", "Proxy-Authenticate", "Proxy-Authorization", "Http2-Settings",
		"Cache-Control", "Content-Type", "Content-Length", "Content-Encoding", "Etag", "Vary", "Via", "Age",
		"Date", "Expires", "Last-Modified", "Set-Cookie", "Alt-Svc", "Surrogate-Key", "Cache-Status", fill.PeerHeader} {
		h := http.Header{name: {"x"}}
		cleaned := h.Clone()
		policy.RemoveHopByHop(cleaned)
		removed := len(cleaned) == 0 || name == fill.PeerHeader
		if got := needsCleaning(h); got != removed {
			t.Errorf("%s: needsCleaning %v, but removed %v", name, got, removed)
		}
	}
}
