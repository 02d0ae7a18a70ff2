package cluster

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/fill"
	"github.com/meridiancdn/meridian/internal/fakeclock"
	"github.com/meridiancdn/meridian/internal/poll"
	"github.com/meridiancdn/meridian/origin"
	"github.com/meridiancdn/meridian/ring"
)

const (
	testSecret = "transport-test-secret-0123456789"
	testHost   = "site.test"
)

// fakeOwner is the owner peer, on a real listener, doing what a test says.
type fakeOwner struct {
	srv *httptest.Server

	mu      sync.Mutex
	handler http.HandlerFunc
	seen    []*http.Request // headers cloned
}

func (f *fakeOwner) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.seen = append(f.seen, r.Clone(r.Context()))
	h := f.handler
	f.mu.Unlock()
	h(w, r)
}

func (f *fakeOwner) set(h http.HandlerFunc) {
	f.mu.Lock()
	f.handler = h
	f.mu.Unlock()
}

func (f *fakeOwner) requests() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*http.Request(nil), f.seen...)
}

// rig is an edge named "self" whose ring has one other member, "owner",
// played by a fakeOwner; the origin is a demo origin. The node does not
// gossip: the test sets its ring.
type rig struct {
	t      *testing.T
	clock  *fakeclock.Clock // the edge's and the node's
	origin *origin.Demo
	owner  *fakeOwner
	node   *Member
	edge   *edge.Handler
	ring   *ring.Ring
}

func newRig(t *testing.T, owner http.HandlerFunc) *rig {
	t.Helper()
	clock := fakeclock.New()
	demo := origin.NewDemo(clock.Now)
	osrv := httptest.NewServer(demo)
	fo := &fakeOwner{handler: owner}
	fo.srv = httptest.NewServer(fo)
	log := slog.New(slog.DiscardHandler)
	n, err := New(Config{
		Name:         "self",
		GossipListen: "127.0.0.1:0",
		PeerListen:   "127.0.0.1:0",
		Secret:       testSecret,
		PeerTimeout:  300 * time.Millisecond,
	}, Options{Now: clock.Now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	r, err := ring.New([]ring.Peer{{Name: "self"}, {Name: "owner"}})
	if err != nil {
		t.Fatal(err)
	}
	n.view.Store(&view{ring: r, addrs: map[string]string{"self": n.PeerAddr(), "owner": fo.srv.Listener.Addr().String()}})
	h, err := edge.New(edge.Config{
		Name:  "self",
		Sites: []edge.SiteConfig{{Hosts: []string{testHost}, Origin: osrv.URL, Timeout: 5 * time.Second}},
	}, edge.Options{
		Now:          clock.Now,
		Logger:       log,
		WrapUpstream: func(_ edge.SiteConfig, up fill.Upstream) fill.Upstream { return n.Transport(up) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Close()
		h.Close()
		demo.Close()
		fo.srv.CloseClientConnections()
		fo.srv.Close()
		osrv.CloseClientConnections()
		osrv.Close()
	})
	return &rig{t: t, clock: clock, origin: demo, owner: fo, node: n, edge: h, ring: r}
}

// target returns the first target with the prefix (and query) that the
// named member owns.
func (r *rig) target(owner, prefix, query string) string {
	r.t.Helper()
	for k := range 1000 {
		target := fmt.Sprintf("%s%d%s", prefix, k, query)
		if p, _ := r.ring.Owner(testHost + target); p.Name == owner {
			return target
		}
	}
	r.t.Fatalf("no target owned by %s", owner)
	return ""
}

// get sends a client GET through the edge.
func (r *rig) get(target string, kv ...string) *httptest.ResponseRecorder {
	r.t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.Host = testHost
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	rec := httptest.NewRecorder()
	r.edge.ServeHTTP(rec, req)
	return rec
}

// ownerAnswers is an owner that answers from its cache, as a real one.
func ownerAnswers(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Cache-Status", "owner; hit")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

const cacheable = "?cc=max-age%3D600"

func TestTransportAsksOwner(t *testing.T) {
	rg := newRig(t, ownerAnswers(200, "from the owner"))
	// An odd but valid target: escapes, order and spaces must arrive
	// byte for byte.
	target := rg.target("owner", "/p%2Fq/%7Ex", "?b=2&a=1&e=%20"+strings.TrimPrefix(cacheable, "?"))
	rec := rg.get(target, "X-Test", "kept")
	if rec.Code != 200 || rec.Body.String() != "from the owner" {
		t.Fatalf("client got %d %q", rec.Code, rec.Body.String())
	}
	if v := rec.Header().Get(fill.PeerHeader); v != "" {
		t.Errorf("client saw %s: %q", fill.PeerHeader, v)
	}
	if got := rg.origin.Requests(); got != 0 {
		t.Errorf("origin saw %d requests, want 0", got)
	}
	seen := rg.owner.requests()
	if len(seen) != 1 {
		t.Fatalf("owner saw %d requests, want 1", len(seen))
	}
	req := seen[0]
	if req.Method != http.MethodGet || req.RequestURI != target || req.Host != testHost {
		t.Errorf("owner saw %s %s Host %s, want GET %s Host %s", req.Method, req.RequestURI, req.Host, target, testHost)
	}
	if got := req.Header.Get("X-Test"); got != "kept" {
		t.Errorf("owner saw X-Test %q, want the fill's headers", got)
	}
	owner := rg.node.sig // the region's secret, as the owner holds it
	owner.self = "owner"
	if from, hop, err := owner.verify(req.Method, req.Host, req.RequestURI, req.Header); err != nil || from != "self" || hop != hopOwner {
		t.Errorf("owner could not verify the request: %q %q, %v", from, hop, err)
	}
	if _, _, err := rg.node.sig.verify(req.Method, req.Host, req.RequestURI, req.Header); !errors.Is(err, errNotForMe) {
		t.Errorf("a request signed for the owner, verified by another member: %v, want refused as for another member", err)
	}
	// The owner holds the copy; this edge keeps none of a cold key.
	if entries, _, _ := rg.edge.StoreStats(); entries != 0 {
		t.Errorf("non-owner stored %d entries, want 0", entries)
	}
}

func TestTransportOwnKeysAndLoopGuardGoToOrigin(t *testing.T) {
	rg := newRig(t, ownerAnswers(200, "from the owner"))

	mine := rg.target("self", "/mine/", cacheable)
	if rec := rg.get(mine); rec.Code != 200 || rg.origin.RequestsFor(mine) != 1 {
		t.Fatalf("own key: status %d, origin count %d, want 200 and 1", rec.Code, rg.origin.RequestsFor(mine))
	}

	// A peer's request for a key "owner" owns (as this edge sees the
	// ring): served from the origin, never forwarded again.
	theirs := rg.target("owner", "/theirs/", cacheable)
	req := httptest.NewRequest(http.MethodGet, theirs, nil)
	req.Host = testHost
	rg.node.sig.sign(req.Header, req.Method, req.Host, req.RequestURI, "owner", hopOwner, rg.node.sig.self)
	rec := httptest.NewRecorder()
	rg.node.PeerHandler(rg.edge).ServeHTTP(rec, req)
	if rec.Code != 200 || rg.origin.RequestsFor(theirs) != 1 {
		t.Fatalf("peer request: status %d, origin count %d, want 200 and 1", rec.Code, rg.origin.RequestsFor(theirs))
	}
	if n := len(rg.owner.requests()); n != 0 {
		t.Errorf("owner saw %d requests, want 0", n)
	}

	// Not a fill (a POST passed through) goes to the origin as it is.
	post := httptest.NewRequest(http.MethodPost, theirs, strings.NewReader("x"))
	post.Host = testHost
	rec = httptest.NewRecorder()
	rg.edge.ServeHTTP(rec, post)
	if rec.Code != 200 || len(rg.owner.requests()) != 0 {
		t.Errorf("POST: status %d, owner requests %d; want 200 from the origin", rec.Code, len(rg.owner.requests()))
	}

	// With an empty ring every fill goes to the origin.
	rg.node.view.Store(&view{ring: nil})
	other := rg.target("owner", "/empty/", cacheable)
	if rec := rg.get(other); rec.Code != 200 || rg.origin.RequestsFor(other) != 1 || len(rg.owner.requests()) != 0 {
		t.Errorf("empty ring: status %d, origin count %d, owner requests %d", rec.Code, rg.origin.RequestsFor(other), len(rg.owner.requests()))
	}
}

func TestTransportFallsBackToOrigin(t *testing.T) {
	cases := []struct {
		name  string
		owner func(release <-chan struct{}) http.HandlerFunc
		close bool // the owner's listener is closed: connection refused
	}{
		{name: "502 from a proxy", owner: func(<-chan struct{}) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { http.Error(w, "bad gateway", 502) }
		}},
		{name: "403 for a mismatched secret", owner: func(<-chan struct{}) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { http.Error(w, "refused", 403) }
		}},
		{name: "another cache's answer", owner: func(<-chan struct{}) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Status", "owner; hit, someone-else; hit")
				io.WriteString(w, "not the owner's")
			}
		}},
		{name: "no headers in time", owner: func(release <-chan struct{}) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}
		}},
		{name: "dies mid-body", owner: func(<-chan struct{}) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Status", "owner; hit")
				w.Header().Set("Content-Length", "2000")
				w.WriteHeader(200)
				io.WriteString(w, strings.Repeat("x", 1000))
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			}
		}},
		{name: "connection refused", close: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			var h http.HandlerFunc
			if tc.owner != nil {
				h = tc.owner(release)
			}
			rg := newRig(t, h)
			if tc.close {
				rg.owner.srv.Close()
			}
			first := rg.target("owner", "/fail/", cacheable)
			rec := rg.get(first)
			want := string(origin.DemoBody(strings.SplitN(first, "?", 2)[0], 1024))
			if rec.Code != 200 || rec.Body.String() != want {
				t.Fatalf("client got %d %q, want the origin's 200", rec.Code, rec.Body.String())
			}
			if got := rg.origin.RequestsFor(first); got != 1 {
				t.Errorf("origin saw %d requests, want 1", got)
			}
			asked := len(rg.owner.requests())
			if !tc.close && asked != 1 {
				t.Errorf("owner saw %d requests, want 1", asked)
			}
			// The owner is now suspect: the next fill does not wait on it.
			if got := rg.node.Suspects(); !slices.Equal(got, []string{"owner"}) || rg.node.Suspicions() != 1 {
				t.Errorf("Suspects() = %v, Suspicions() = %d; want [owner], 1", got, rg.node.Suspicions())
			}
			second := rg.target("owner", "/next/", cacheable)
			if rec := rg.get(second); rec.Code != 200 || rg.origin.RequestsFor(second) != 1 {
				t.Fatalf("second: status %d, origin %d", rec.Code, rg.origin.RequestsFor(second))
			}
			if got := len(rg.owner.requests()); got != asked {
				t.Errorf("suspect owner was asked again (%d → %d requests)", asked, got)
			}
			// After SuspectFor the owner is tried again.
			rg.clock.Advance(rg.node.cfg.SuspectFor)
			if got := rg.node.Suspects(); len(got) != 0 {
				t.Errorf("Suspects() after suspect_for = %v", got)
			}
			third := rg.target("owner", "/later/", cacheable)
			rg.get(third)
			if got := len(rg.owner.requests()); !tc.close && got != asked+1 {
				t.Errorf("after SuspectFor the owner saw %d requests, want %d", got, asked+1)
			}
		})
	}
}

func TestTransportPassesOwnersOwnErrors(t *testing.T) {
	// The owner's edge tried the origin and failed: its 503 carries its
	// Cache-Status entry, and is the answer (the origin is not asked
	// twice for the region).
	rg := newRig(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Status", "owner; fwd=uri-miss; fwd-status=503")
		http.Error(w, "origin down", 503)
	})
	target := rg.target("owner", "/down/", cacheable)
	if rec := rg.get(target); rec.Code != 503 {
		t.Fatalf("client got %d, want the owner's 503", rec.Code)
	}
	if got := rg.origin.Requests(); got != 0 {
		t.Errorf("origin saw %d requests, want 0", got)
	}
	if rg.node.isSuspect("owner") {
		t.Error("owner marked suspect for its own answer")
	}
}

func TestTransportRevalidatesThroughOwner(t *testing.T) {
	rg := newRig(t, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", 502) })
	// The owner is down once, so this edge fills (and stores) from the
	// origin: a copy with an ETag, fresh for 1s.
	target := rg.target("owner", "/reval/", "?cc=max-age%3D1&etag=1")
	first := rg.get(target)
	etag := first.Header().Get("Etag")
	if first.Code != 200 || etag == "" {
		t.Fatalf("first: %d, ETag %q", first.Code, etag)
	}
	// The owner is back, holds the object and answers conditionals.
	rg.node.clearSuspect("owner")
	rg.owner.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Status", "owner; hit")
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Etag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, "full body")
	})
	rg.clock.Advance(5 * time.Second)
	rec := rg.get(target)
	if rec.Code != 200 || rec.Body.String() != first.Body.String() {
		t.Fatalf("revalidated: %d %q", rec.Code, rec.Body.String())
	}
	seen := rg.owner.requests()
	if last := seen[len(seen)-1]; last.Header.Get("If-None-Match") != etag {
		t.Errorf("owner saw If-None-Match %q, want the stored ETag %q", last.Header.Get("If-None-Match"), etag)
	}
	if got := rg.origin.RequestsFor(target); got != 1 {
		t.Errorf("origin saw %d requests, want 1", got)
	}
	if v := rec.Header().Get(fill.PeerHeader); v != "" {
		t.Errorf("client saw %s: %q", fill.PeerHeader, v)
	}
}

// describe is a request as a test compares it.
func describe(r *http.Request) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s Host=%s\n", r.Method, r.URL, r.Host)
	r.Header.Write(&b)
	return b.String()
}

func TestTransportLeavesRequestAlone(t *testing.T) {
	rg := newRig(t, ownerAnswers(200, "from the owner"))
	target := rg.target("owner", "/alone/", cacheable)
	tr := rg.node.Transport(fill.Func(func(*http.Request, fill.Info) (*http.Response, error) {
		return nil, net.ErrClosed
	}))
	req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:1"+target, nil)
	req.RequestURI = ""
	req.Host = testHost
	req.Header.Set("X-Test", "kept")
	before := describe(req)
	resp, err := tr.Fill(req, fill.Info{Key: testHost + target, Host: testHost, Scheme: "http"})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if after := describe(req); before != after {
		t.Errorf("the transport modified the caller's request:\nbefore: %s\nafter:  %s", before, after)
	}
	if resp.Header.Get(fill.PeerHeader) != "owner" {
		t.Errorf("the owner's answer is not marked as a peer's: %s %q", fill.PeerHeader, resp.Header.Get(fill.PeerHeader))
	}
	if len(rg.owner.requests()) != 1 {
		t.Errorf("owner saw %d requests, want 1", len(rg.owner.requests()))
	}
}

// The owner of a key has its replica take a copy of what it filled from
// the origin, unless the fill serves a replica's own copy: the signed hop
// "replica" says so (or, from a member of an earlier version, a verified
// request with ReplicaHeader). A client's ReplicaHeader is not believed:
// on the code before, any client could keep an object off its replicas.
func TestReplicationRestsOnTheSignedHop(t *testing.T) {
	rg := newRig(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == ReplicatePath {
			w.Header().Set(AckHeader, "owner")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		// A consult: the replica has no copy.
		w.Header().Set("Cache-Status", "owner; fwd=request; detail=only-if-cached")
		http.Error(w, "not cached", http.StatusGatewayTimeout)
	})
	rg.node.cfg.Replicas = 2
	replicated := func(target string) int {
		n := 0
		for _, r := range rg.owner.requests() {
			if r.URL.Path == ReplicatePath && strings.Contains(r.URL.RawQuery, url.QueryEscape(target)) {
				n++
			}
		}
		return n
	}
	peerGet := func(target, hop string, kv ...string) {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Host = testHost
		for i := 0; i+1 < len(kv); i += 2 {
			req.Header.Set(kv[i], kv[i+1])
		}
		rg.node.sig.sign(req.Header, req.Method, req.Host, req.RequestURI, "owner", hop, rg.node.sig.self)
		rec := httptest.NewRecorder()
		rg.node.PeerHandler(rg.edge).ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("peer GET %s (hop %s): %d", target, hop, rec.Code)
		}
	}

	forged := rg.target("self", "/rep/client", cacheable)
	if rec := rg.get(forged, ReplicaHeader, "1"); rec.Code != 200 {
		t.Fatalf("client GET: %d", rec.Code)
	}
	poll.Until(t, 5*time.Second, "the replica is asked to copy a client's fill", func() bool { return replicated(forged) == 1 })

	replica := rg.target("self", "/rep/replica", cacheable)
	peerGet(replica, hopReplica)
	compat := rg.target("self", "/rep/compat", cacheable)
	peerGet(compat, hopOwner, ReplicaHeader, "1")
	// The replication orders go out in the background, owned by the
	// node: Close waits for any that started.
	rg.node.Close()
	if n := replicated(replica) + replicated(compat); n != 0 {
		t.Errorf("a replica's own copy was replicated again (%d orders)", n)
	}
	if got := rg.origin.Requests(); got != 3 {
		t.Errorf("origin saw %d requests, want 3", got)
	}
}

// The owner's mark (fill.PeerHeader) never reaches the client, whether the
// answer is stored or passed through as it came (no-store, private, too
// large): the pass path hands upstream's response on, and it carried the
// owner's name.
func TestPeerMarkNeverReachesTheClient(t *testing.T) {
	for _, cc := range []string{"max-age=600", "no-store", "private"} {
		t.Run(cc, func(t *testing.T) {
			rg := newRig(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", cc)
				w.Header().Set("Cache-Status", "owner; fwd=uri-miss") // the member's own answer
				io.WriteString(w, "from the owner")
			})
			rec := rg.get(rg.target("owner", "/mark/", cacheable))
			if rec.Code != 200 || rec.Body.String() != "from the owner" {
				t.Fatalf("client got %d %q", rec.Code, rec.Body.String())
			}
			if v := rec.Header().Get(fill.PeerHeader); v != "" {
				t.Errorf("client saw %s: %q", fill.PeerHeader, v)
			}
		})
	}
}
