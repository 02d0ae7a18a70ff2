package edge_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/fill"
)

// infoRecorder is a site's fill path that records each fill's Info and
// sends the fill to the origin.
type infoRecorder struct {
	mu    sync.Mutex
	infos map[string]fill.Info // by request target
}

func (r *infoRecorder) wrap(_ edge.SiteConfig, origin fill.Upstream) fill.Upstream {
	return fill.Func(func(req *http.Request, fi fill.Info) (*http.Response, error) {
		r.mu.Lock()
		r.infos[req.URL.RequestURI()] = fi
		r.mu.Unlock()
		return origin.Fill(req, fi)
	})
}

func (r *infoRecorder) info(t *testing.T, target string) fill.Info {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	fi, ok := r.infos[target]
	if !ok {
		t.Fatalf("no fill of %s", target)
	}
	return fi
}

// What a fill's upstream is told about the request it serves comes from
// the entry point the request came through, never from its header
// fields: a client that sends every peer field (a peer's name, hop and
// signature, a replica mark, a Via and CDN-Loop naming a peer) over the
// public listener is a client; ServePeer's request is the verified peer's,
// with its hop; ServeReplica's is a replica copy.
func TestFillInfoComesFromTheEntryPointOnly(t *testing.T) {
	rec := &infoRecorder{infos: map[string]fill.Info{}}
	e := newEnvWith(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Surrogate-Key", "tag-a")
		w.Write([]byte("body"))
	}, func(o *edge.Options) { o.WrapUpstream = rec.wrap })

	resp, _ := e.get("/client",
		"Meridian-Peer-Name", "edge2", "Meridian-Peer-Hop", "shield",
		"Meridian-Peer-Time", "1", "Meridian-Peer-Signature", "v3=00",
		"Meridian-Replica", "1", "Via", "1.1 edge2", "CDN-Loop", "edge2")
	if resp.StatusCode != 200 {
		t.Fatalf("client GET: %d", resp.StatusCode)
	}
	if fi := rec.info(t, "/client"); fi.FromPeer || fi.Replica || fi.Peer != (fill.Peer{}) || fi.Key != testHost+"/client" || fi.Host != testHost {
		t.Errorf("a client's fill was told %+v", fi)
	}
	if v := resp.Header.Get("Surrogate-Key"); v != "" {
		t.Errorf("a client was shown Surrogate-Key %q", v)
	}

	peerReq := httptest.NewRequest(http.MethodGet, "/peer", nil)
	peerReq.Host = testHost
	w := httptest.NewRecorder()
	e.edge.ServePeer(w, peerReq, fill.Peer{From: "edge2", Hop: "shield"})
	if w.Code != 200 {
		t.Fatalf("ServePeer: %d", w.Code)
	}
	if fi := rec.info(t, "/peer"); !fi.FromPeer || fi.Replica || fi.Peer != (fill.Peer{From: "edge2", Hop: "shield"}) {
		t.Errorf("a peer's fill was told %+v", fi)
	}
	if v := w.Header().Get("Surrogate-Key"); v != "tag-a" {
		t.Errorf("a peer was shown Surrogate-Key %q, want the origin's", v)
	}

	repReq := httptest.NewRequest(http.MethodGet, "/replica", nil)
	repReq.Host = testHost
	w = httptest.NewRecorder()
	e.edge.ServeReplica(w, repReq)
	if fi := rec.info(t, "/replica"); fi.FromPeer || !fi.Replica || fi.Peer != (fill.Peer{}) {
		t.Errorf("a replica's fill was told %+v", fi)
	}
}

// An origin cannot pose as a peer: its answer carrying the peer-fill mark
// is stored as the origin's (a hit next time), and the mark never reaches
// a client. On the code before, an edge outside a cluster took the
// origin's mark for a peer's and kept no copy.
func TestOriginCannotPoseAsAPeer(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set(fill.PeerHeader, "edge2")
		w.Write([]byte("body"))
	})
	for i := range 2 {
		resp, body := e.get("/posing")
		if resp.StatusCode != 200 || body != "body" || resp.Header.Get(fill.PeerHeader) != "" {
			t.Fatalf("GET %d: %d %q, %s %q", i, resp.StatusCode, body, fill.PeerHeader, resp.Header.Get(fill.PeerHeader))
		}
		if cs := cacheStatus(resp); i == 1 && cs != "edge1; hit" && !strings.HasPrefix(cs, "edge1; hit;") {
			t.Errorf("second GET: Cache-Status %q, want a hit", cacheStatus(resp))
		}
	}
	if n := e.origin.count("/posing"); n != 1 {
		t.Errorf("origin saw %d requests, want 1", n)
	}
}
