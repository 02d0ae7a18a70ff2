package cluster

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/fill"
	"github.com/meridiancdn/meridian/origin"
	"github.com/meridiancdn/meridian/ring"
)

// An owner that takes longer than PeerTimeout to answer, but says it is
// alive (102 Processing) meanwhile, is waited for: its answer is used, the
// origin is not asked, and it is not suspected. On the code before, the
// header timeout (PeerTimeout) covered the owner's own wait on the origin.
func TestTransportWaitsForALiveOwner(t *testing.T) {
	rg := newRig(t, func(w http.ResponseWriter, r *http.Request) {
		for range 10 { // 1s, past PeerTimeout (300ms) three times over
			w.WriteHeader(http.StatusProcessing)
			time.Sleep(100 * time.Millisecond)
		}
		ownerAnswers(200, "slow but alive")(w, r)
	})
	target := rg.target("owner", "/slow/", cacheable)
	rec := rg.get(target)
	if rec.Code != 200 || rec.Body.String() != "slow but alive" {
		t.Fatalf("client got %d %q, want the owner's answer", rec.Code, short(rec.Body.String()))
	}
	if got := rg.origin.Requests(); got != 0 {
		t.Errorf("origin saw %d requests, want 0", got)
	}
	if rg.node.isSuspect("owner") {
		t.Error("a live owner was marked suspect")
	}
}

// The peer endpoint sends 102 Processing while its edge has no answer
// yet, without the fields the edge is preparing, and stops once the
// answer starts; a v1 asker (which might relay them) gets none.
func TestPeerEndpointSendsLiveness(t *testing.T) {
	n, err := New(Config{Name: "self", GossipListen: "127.0.0.1:0", PeerListen: "127.0.0.1:0",
		Secret: testSecret, PeerTimeout: 200 * time.Millisecond}, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Prepared", "not for the interim answers")
		time.Sleep(400 * time.Millisecond) // two PeerTimeouts
		w.Header().Set("Cache-Status", "self; hit")
		io.WriteString(w, "done")
	})
	srv := httptest.NewServer(n.PeerHandler(PeerServerFunc(func(w http.ResponseWriter, r *http.Request, _ fill.Peer) { slow(w, r) })))
	defer srv.Close()
	ask := func(sign func(h http.Header, target string)) (interim int, leaked bool, body string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/x", nil)
		req.Host = testHost
		sign(req.Header, "/x")
		var mu sync.Mutex
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				mu.Lock()
				defer mu.Unlock()
				if code == http.StatusProcessing {
					interim++
				}
				leaked = leaked || h.Get("X-Prepared") != ""
				return nil
			}}))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.Header.Get("X-Prepared") == "" || resp.Header.Get("Cache-Status") != "self; hit" {
			t.Errorf("final answer lost its fields: %v", resp.Header)
		}
		mu.Lock()
		defer mu.Unlock()
		return interim, leaked, string(b)
	}
	interim, leaked, body := ask(func(h http.Header, target string) {
		n.sig.sign(h, http.MethodGet, testHost, target, "peer", hopOwner, n.sig.self)
	})
	if interim < 2 || leaked || body != "done" {
		t.Errorf("v2 asker: %d interim answers (want ≥ 2), fields leaked %v, body %q", interim, leaked, body)
	}
	interim, _, _ = ask(func(h http.Header, target string) {
		ts := fmt.Sprint(time.Now().Unix())
		h.Set(HeaderPeerName, "peer")
		h.Set(HeaderPeerTime, ts)
		h.Set(HeaderPeerSignature, sigPrefixV1+fmt.Sprintf("%x", n.sig.macV1(http.MethodGet, testHost, target, ts, "peer")))
	})
	if interim != 0 {
		t.Errorf("v1 asker got %d interim answers, want none", interim)
	}
}

// A consult is answered from the cache only: a miss is a 504 and never
// reaches the origin, whatever the asker's Cache-Control says.
func TestConsultIsAnsweredFromCacheOnly(t *testing.T) {
	rg := newRig(t, ownerAnswers(200, "unused"))
	mine := rg.target("self", "/consult/", cacheable)
	peerGet := func(target string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Host = testHost
		req.Header.Set("Cache-Control", "no-cache")
		rg.node.sig.sign(req.Header, req.Method, req.Host, req.RequestURI, "owner", hopConsult, rg.node.sig.self)
		rec := httptest.NewRecorder()
		rg.node.PeerHandler(rg.edge).ServeHTTP(rec, req)
		return rec
	}
	if rec := peerGet(mine); rec.Code != http.StatusGatewayTimeout || rg.origin.Requests() != 0 {
		t.Fatalf("consult of an uncached key: %d, origin %d; want 504 and 0", rec.Code, rg.origin.Requests())
	}
	rg.get(mine) // now cached
	if rec := peerGet(mine); rec.Code != 200 || rg.origin.Requests() != 1 {
		t.Fatalf("consult of a cached key: %d, origin %d; want 200 and 1", rec.Code, rg.origin.Requests())
	}
}

// A key's owner that misses asks the key's replica for its copy (hop
// "consult") before the origin, and keeps the copy as its own.
func TestOwnerConsultsReplicaBeforeOrigin(t *testing.T) {
	var hops []string
	var mu sync.Mutex
	rg := newRig(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hops = append(hops, r.Header.Get(HeaderPeerHop))
		mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/consult/none") {
			w.Header().Set("Cache-Status", "owner; fwd=request; detail=only-if-cached")
			http.Error(w, "not cached", http.StatusGatewayTimeout)
			return
		}
		ownerAnswers(200, "the replica's copy")(w, r)
	})
	rg.node.cfg.Replicas = 2
	mine := rg.target("self", "/consult/", cacheable)
	rec := rg.get(mine)
	if rec.Code != 200 || rec.Body.String() != "the replica's copy" || rg.origin.Requests() != 0 {
		t.Fatalf("owner miss: %d %q, origin %d; want the replica's copy and no origin request", rec.Code, short(rec.Body.String()), rg.origin.Requests())
	}
	if entries, _, _ := rg.edge.StoreStats(); entries != 1 {
		t.Errorf("the owner stored %d entries, want its own copy", entries)
	}
	if len(hops) != 1 || hops[0] != hopConsult {
		t.Errorf("replica saw hops %q, want one %q", hops, hopConsult)
	}
	if rg.node.Consulted() != 1 {
		t.Errorf("Consulted() = %d, want 1", rg.node.Consulted())
	}
	// A replica without a copy sends the owner to the origin.
	none := rg.target("self", "/consult/none", cacheable)
	if rec := rg.get(none); rec.Code != 200 || rg.origin.RequestsFor(none) != 1 {
		t.Fatalf("replica without a copy: %d, origin %d", rec.Code, rg.origin.RequestsFor(none))
	}
	if rg.node.isSuspect("owner") {
		t.Error("a replica without a copy was marked suspect")
	}
}

// Two members whose rings disagree (each thinks the other owns a key)
// and both miss it at once do not wait on each other until the fill's
// timeout: one is refused (HeaderPeerLoop) and fills from the origin,
// and both answer. Before liveness, the header timeout broke the cycle;
// without the refusal, the heartbeats would keep it alive.
func TestDisagreeingRingsDoNotDeadlock(t *testing.T) {
	demo := origin.NewDemo(nil)
	osrv := httptest.NewServer(demo)
	defer func() { demo.Close(); osrv.CloseClientConnections(); osrv.Close() }()
	log := slog.New(slog.DiscardHandler)
	mk := func(name string) (*Member, *edge.Handler, *httptest.Server) {
		n, err := New(Config{Name: name, GossipListen: "127.0.0.1:0", PeerListen: "127.0.0.1:0",
			Secret: testSecret, PeerTimeout: 300 * time.Millisecond}, Options{Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		h, err := edge.New(edge.Config{Name: name, Sites: []edge.SiteConfig{{Hosts: []string{testHost}, Origin: osrv.URL, Timeout: 20 * time.Second}}},
			edge.Options{Logger: log, WrapUpstream: func(_ edge.SiteConfig, up fill.Upstream) fill.Upstream { return n.Transport(up) }})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(n.PeerHandler(h))
		t.Cleanup(func() { srv.Close(); h.Close(); n.Close() })
		return n, h, srv
	}
	a, ha, sa := mk("a")
	b, hb, sb := mk("b")
	addr := func(s *httptest.Server) string { return s.Listener.Addr().String() }
	ab, _ := ring.New([]ring.Peer{{Name: "a"}, {Name: "b"}})
	onlyA, _ := ring.New([]ring.Peer{{Name: "a"}})
	a.view.Store(&view{ring: ab, addrs: map[string]string{"a": addr(sa), "b": addr(sb)}})
	b.view.Store(&view{ring: onlyA, addrs: map[string]string{"a": addr(sa)}}) // b thinks a owns everything
	var target string
	for k := range 1000 {
		target = fmt.Sprintf("/cycle%d?cc=max-age%%3D600&delay=300ms", k)
		if p, _ := ab.Owner(testHost + target); p.Name == "b" {
			break
		}
	}
	var wg sync.WaitGroup
	var ok atomic.Int32
	for _, h := range []*edge.Handler{ha, hb, ha, hb} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest(http.MethodGet, target, nil)
			req.Host = testHost
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code == 200 {
				ok.Add(1)
			} else {
				t.Errorf("status %d (%s)", rec.Code, rec.Header().Get("Cache-Status"))
			}
		}()
	}
	wg.Wait()
	if got := demo.RequestsFor(target); got < 1 || got > 2 {
		t.Errorf("origin saw %d requests, want 1 or 2", got)
	}
	if a.isSuspect("b") || b.isSuspect("a") {
		t.Error("a member refusing for disagreeing rings was marked suspect")
	}
}

// Failover moves a fill to another region only when this region's path
// failed (no shield answered, or no connection to the origin), never for
// the origin's own answer or trouble, and never for a fill that serves
// another region's request.
func TestFailoverOnlyWhenThePathFails(t *testing.T) {
	var asked atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		w.Header().Set("Cache-Status", "far-1; fwd=uri-miss")
		io.WriteString(w, "from far")
	}))
	defer other.Close()
	n, err := New(Config{Name: "near-1", GossipListen: "127.0.0.1:0", PeerListen: "127.0.0.1:0", Secret: testSecret},
		Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	dialErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	cases := []struct {
		name     string
		upstream func() (*http.Response, error)
		hop      string
		want     int32 // requests to the other region
	}{
		{"origin 500", func() (*http.Response, error) {
			return &http.Response{StatusCode: 500, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("down"))}, nil
		}, "", 0},
		{"origin 503 relayed by the shield", func() (*http.Response, error) {
			return &http.Response{StatusCode: 503, Header: http.Header{"Cache-Status": {"shield-1; fwd=uri-miss; fwd-status=503"}}, Body: io.NopCloser(strings.NewReader("down"))}, nil
		}, "", 0},
		{"origin timeout", func() (*http.Response, error) {
			return nil, &origin.Error{Kind: origin.KindTimeout, Pool: "p", Err: errors.New("no response headers within timeout")}
		}, "", 0},
		{"origin reset", func() (*http.Response, error) {
			return nil, &origin.Error{Kind: origin.KindReset, Pool: "p", Err: io.ErrUnexpectedEOF}
		}, "", 0},
		{"origin refused", func() (*http.Response, error) {
			return nil, &origin.Error{Kind: origin.KindRefused, Pool: "p", Err: dialErr}
		}, "", 1},
		{"no shield answered", func() (*http.Response, error) { return nil, fmt.Errorf("%w: shield r1: gone", errNoShield) }, "", 1},
		{"dial failed, serving another region's failover", func() (*http.Response, error) { return nil, dialErr }, hopFailover, 0},
		{"dial failed, serving a shield request", func() (*http.Response, error) { return nil, dialErr }, hopShield, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			asked.Store(0)
			fo, err := n.Failover([]ShieldRegion{{Name: "far", Peers: []ring.Peer{{Name: "far-1"}},
				Addrs: map[string]string{"far-1": other.Listener.Addr().String()}}},
				fill.Func(func(*http.Request, fill.Info) (*http.Response, error) { return tc.upstream() }))
			if err != nil {
				t.Fatal(err)
			}
			h, err := edge.New(edge.Config{Name: "near-1", Sites: []edge.SiteConfig{{Hosts: []string{testHost}, Origin: "http://127.0.0.1:1"}}},
				edge.Options{Logger: slog.New(slog.DiscardHandler), WrapUpstream: func(edge.SiteConfig, fill.Upstream) fill.Upstream { return fo }})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			var handler http.Handler = h
			req := httptest.NewRequest(http.MethodGet, "/f"+cacheable, nil)
			req.Host = testHost
			if tc.hop != "" {
				n.sig.sign(req.Header, req.Method, req.Host, req.RequestURI, "far-2", tc.hop, n.sig.self)
				handler = n.PeerHandler(h)
			}
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req)
			if got := asked.Load(); got != tc.want {
				t.Errorf("the other region was asked %d times, want %d (client got %d)", got, tc.want, rec.Code)
			}
			if tc.want == 1 && rec.Body.String() != "from far" {
				t.Errorf("client got %d %q, want the other region's answer", rec.Code, short(rec.Body.String()))
			}
		})
	}
}

// short cuts a body for a test message.
func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
