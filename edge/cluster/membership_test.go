package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/cluster"
	"github.com/meridiancdn/meridian/edge/fill"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/cdntest"
	"github.com/meridiancdn/meridian/internal/poll"
	"github.com/meridiancdn/meridian/ring"
)

// notFound is the peer endpoint's next of a bare member: 404 for all.
var notFound = cluster.PeerServerFunc(func(w http.ResponseWriter, r *http.Request, _ fill.Peer) { http.NotFound(w, r) })

// startNode starts a bare member (its peer endpoint answers 404) on
// loopback with the local preset.
func startNode(t *testing.T, name string, mutate func(*cluster.Config), opt cluster.Options) *cluster.Member {
	t.Helper()
	cfg := cluster.Config{
		Name:         name,
		GossipListen: "127.0.0.1:0",
		PeerListen:   "127.0.0.1:0",
		Secret:       cdntest.Secret,
		Preset:       cluster.PresetLocal,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	n, err := cluster.New(cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if err := n.Start(notFound); err != nil {
		t.Fatal(err)
	}
	return n
}

func names(peers []ring.Peer) string {
	var s []string
	for _, p := range peers {
		s = append(s, p.Name)
	}
	return strings.Join(s, ",")
}

// fakeResolver answers for one name once it is ready, and counts lookups.
type fakeResolver struct {
	ready   atomic.Bool
	lookups atomic.Int64
}

func (r *fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	r.lookups.Add(1)
	if host != "peers.region.test" || !r.ready.Load() {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return []string{"127.0.0.1"}, nil
}

func TestSeedDNSJoinsWhenSeedsAppear(t *testing.T) {
	a := startNode(t, "a", nil, cluster.Options{})
	_, port, _ := net.SplitHostPort(a.GossipAddr())
	res := &fakeResolver{}
	b := startNode(t, "b", func(c *cluster.Config) { c.SeedDNS = "peers.region.test:" + port }, cluster.Options{Resolver: res})

	// b keeps looking while the name has no records.
	poll.Until(t, 10*time.Second, "b retries the lookup", func() bool { return res.lookups.Load() >= 3 })
	if got := names(b.Members()); got != "b" {
		t.Fatalf("b's members before the seed appears: %s", got)
	}
	res.ready.Store(true)
	for _, n := range []*cluster.Member{a, b} {
		poll.Until(t, 10*time.Second, n.Name()+" sees a and b", func() bool {
			return names(n.Members()) == "a,b" && n.Ring().Len() == 2
		})
	}
}

func TestStaticSeedThatStartsLater(t *testing.T) {
	// b's seed is a's fixed port, taken before a exists.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seed := ln.Addr().String()
	ln.Close()
	b := startNode(t, "b", func(c *cluster.Config) { c.Seeds = []string{seed} }, cluster.Options{})
	a := startNode(t, "a", func(c *cluster.Config) { c.GossipListen = seed; c.Seeds = []string{seed} }, cluster.Options{})
	for _, n := range []*cluster.Member{a, b} {
		poll.Until(t, 10*time.Second, n.Name()+" sees a and b", func() bool { return names(n.Members()) == "a,b" })
	}
}

// logRecorder keeps the messages of log records.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.msgs = append(l.msgs, r.Message)
	l.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }
func (l *logRecorder) has(msg string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if m == msg {
			return true
		}
	}
	return false
}

func TestWrongSecretCannotJoin(t *testing.T) {
	a := startNode(t, "a", nil, cluster.Options{})
	rec := &logRecorder{}
	intruder := startNode(t, "intruder", func(c *cluster.Config) {
		c.Secret = "some-other-secret-entirely"
		c.Seeds = []string{a.GossipAddr()}
	}, cluster.Options{Logger: slog.New(rec)})
	poll.Until(t, 10*time.Second, "the intruder's join fails", func() bool { return rec.has("join failed; retrying in the background") })
	if got := names(a.Members()); got != "a" {
		t.Errorf("a's members: %s, want a alone", got)
	}
	if got := names(intruder.Members()); got != "intruder" {
		t.Errorf("intruder's members: %s, want itself alone", got)
	}
}

func TestMetadataCarriesZoneAndWeight(t *testing.T) {
	o := cdntest.StartOrigin(t)
	reg := cdntest.StartRegion(t, o, cdntest.RegionOptions{
		Zones: []string{"za", "zb"},
		Config: func(i int, c *node.Config) {
			if i == 0 {
				c.Cluster.Weight = 2
			}
			c.Cluster.Preset = cluster.PresetLAN // nobody fails: see TestDrainingMemberOwnsNothing
		},
	})
	reg.WaitConverged(cdntest.ConvergeTimeout)
	want := []ring.Peer{{Name: "edge1", Zone: "za", Weight: 2}, {Name: "edge2", Zone: "zb", Weight: 1}, {Name: "edge3", Zone: "za", Weight: 1}}
	for _, i := range reg.Live() {
		n := reg.Node(i).Cluster
		got := n.Members()
		if len(got) != len(want) {
			t.Fatalf("%s: members %+v, want %+v", n.Name(), got, want)
		}
		for j := range want {
			if got[j] != want[j] {
				t.Errorf("%s: member %d = %+v, want %+v", n.Name(), j, got[j], want[j])
			}
		}
		if share := n.Ring().Share("edge1"); share < 0.48 || share > 0.52 {
			t.Errorf("%s: edge1 (weight 2 of 4) owns %.3f", n.Name(), share)
		}
		if reps := n.Ring().Replicas("some/key", 2); reps[0].Zone == reps[1].Zone {
			t.Errorf("%s: replicas %+v share a zone", n.Name(), reps)
		}
	}
}

// TestDrainingMemberOwnsNothing: a member configured draining stays a
// member (listed, last in preference lists) but owns no key on any
// member's ring.
func TestDrainingMemberOwnsNothing(t *testing.T) {
	o := cdntest.StartOrigin(t)
	reg := cdntest.StartRegion(t, o, cdntest.RegionOptions{
		Config: func(i int, c *node.Config) {
			c.Cluster.Draining = i == 1
			// Nobody fails here: the LAN preset's failure detection
			// does not flap members that were slow to ack while the
			// process built rings (over a second each under -race on a
			// loaded machine), as the local preset's 100ms probes do.
			c.Cluster.Preset = cluster.PresetLAN
		},
	})
	reg.WaitConverged(cdntest.ConvergeTimeout)
	for _, i := range reg.Live() {
		n := reg.Node(i).Cluster
		got := n.Members()
		if len(got) != 3 || got[1].Name != "edge2" || !got[1].Draining || got[0].Draining || got[2].Draining {
			t.Fatalf("%s: members %+v, want edge2 draining", n.Name(), got)
		}
		if share := n.Ring().Share("edge2"); share != 0 {
			t.Errorf("%s: the draining edge2 owns %.3f", n.Name(), share)
		}
		for k := range 100 {
			key := fmt.Sprintf("some/key/%d", k)
			if o, _ := n.Owner(key); o.Name == "edge2" {
				t.Fatalf("%s: %s owned by the draining edge2", n.Name(), key)
			}
			if reps := n.Ring().Replicas(key, 3); reps[2].Name != "edge2" {
				t.Fatalf("%s: replicas of %s %v, want the draining edge2 last", n.Name(), key, names(reps))
			}
		}
	}
}

func TestLeaveDropsMemberAtOnce(t *testing.T) {
	o := cdntest.StartOrigin(t)
	reg := cdntest.StartRegion(t, o, cdntest.RegionOptions{
		// Failure detection slower than any wait below: only the leave
		// message can explain the others dropping the member.
		Config: func(_ int, c *node.Config) { c.Cluster.Preset = cluster.PresetLAN },
	})
	reg.WaitConverged(cdntest.ConvergeTimeout)
	leaving := reg.Node(2).Cluster
	if err := leaving.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := leaving.Leave(2 * time.Second); err != nil {
		t.Errorf("second Leave: %v", err)
	}
	// The bound is no speed assertion: after Leave, edge3's gossip still
	// answers probes, so failure detection never drops it; only its
	// leave message can, however long the rings take to rebuild (a
	// second or more each under -race on a loaded machine).
	for _, i := range []int{0, 1} {
		n := reg.Node(i).Cluster
		poll.Until(t, 30*time.Second, n.Name()+" drops edge3", func() bool {
			return names(n.Members()) == "edge1,edge2" && n.Ring().Len() == 2
		})
	}
	// The peer endpoint is closed: a fill for edge3's keys goes elsewhere.
	if _, err := http.Get("http://" + leaving.PeerAddr() + "/"); err == nil {
		t.Error("peer endpoint still answers after Leave")
	}
	if err := leaving.Close(); err != nil {
		t.Errorf("Close after Leave: %v", err)
	}
	if err := leaving.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestNodeLifecycle(t *testing.T) {
	cfg := cluster.Config{Name: "a", GossipListen: "127.0.0.1:0", PeerListen: "127.0.0.1:0", Secret: cdntest.Secret, Preset: cluster.PresetLocal}
	n, err := cluster.New(cfg, cluster.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if n.GossipAddr() != "" || n.Ring().Len() != 0 {
		t.Errorf("before Start: gossip %q, ring of %d", n.GossipAddr(), n.Ring().Len())
	}
	if _, ok := n.Owner("k"); ok {
		t.Error("owner on an empty ring")
	}
	if err := n.Leave(time.Second); err != nil {
		t.Errorf("Leave before Start: %v", err)
	}
	if err := n.Start(notFound); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(notFound); err == nil {
		t.Error("second Start succeeded")
	}
	poll.Until(t, 5*time.Second, "a owns everything", func() bool {
		p, ok := n.Owner("k")
		return ok && p.Name == "a"
	})
	if err := errors.Join(n.Close(), n.Close()); err != nil {
		t.Errorf("Close twice: %v", err)
	}
	if err := n.Start(notFound); err == nil {
		t.Error("Start after Close succeeded")
	}
	if err := n.Leave(time.Second); err != nil {
		t.Errorf("Leave after Close: %v", err)
	}

	// A busy gossip port is reported by Start, naming the field.
	busy := startNode(t, "busy", nil, cluster.Options{})
	c := cfg
	c.GossipListen = busy.GossipAddr()
	b, err := cluster.New(c, cluster.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(notFound); err == nil || !strings.HasPrefix(err.Error(), "cluster.gossip_listen:") {
		t.Errorf("Start on a busy gossip port: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close after a failed Start: %v", err)
	}

	// Close without Start releases the peer listener.
	m, err := cluster.New(cfg, cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := m.PeerAddr()
	m.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("peer port still bound after Close: %v", err)
	}
	ln.Close()
}
