package cdntest_test

import (
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/cdntest"
	"github.com/meridiancdn/meridian/internal/leakcheck"
	"github.com/meridiancdn/meridian/internal/poll"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m)
}

func TestRegionHarness(t *testing.T) {
	o := cdntest.StartOrigin(t)
	reg := cdntest.StartRegion(t, o, cdntest.RegionOptions{Nodes: 2, Prefix: "h", Zones: []string{"z1", "z2"}})
	reg.WaitConverged(cdntest.ConvergeTimeout)
	if got := reg.Live(); len(got) != 2 {
		t.Fatalf("live nodes %v", got)
	}
	for _, i := range reg.Live() {
		n := reg.Node(i)
		if want := []string{"h1", "h2"}[i]; n.Name != want || n.Cluster.Name() != want {
			t.Errorf("node %d named %q / %q, want %q", i, n.Name, n.Cluster.Name(), want)
		}
		resp, body, err := reg.Get(i, "/h?cc=max-age%3D60")
		if err != nil || resp.StatusCode != 200 || len(body) != 1024 {
			t.Fatalf("GET via node %d: %v, %v, %d bytes", i, err, resp, len(body))
		}
	}
	if got := o.RequestsFor("/h?cc=max-age%3D60"); got != 1 {
		t.Errorf("origin saw the key %d times, want once", got)
	}

	// The loop counts what fails: here every request to a killed node.
	reg.Kill(1)
	reg.Kill(1) // twice is fine
	res := reg.StartLoad(cdntest.LoadOptions{Nodes: []int{0, 1}, Targets: []string{"/l"}, MaxRequests: 10}).Wait()
	if res.Requests != 10 || res.Failures != 5 || len(res.Errors) != 5 || !strings.HasPrefix(res.Errors[0], "h2 /l") {
		t.Errorf("10 requests, half to a killed node: %+v", res)
	}

	n := reg.Restart(1)
	reg.WaitConverged(cdntest.ConvergeTimeout)
	if n != reg.Node(1) || n.Name != "h2" {
		t.Errorf("restart gave %+v", n)
	}
	var checked atomic.Int64
	res = reg.StartLoad(cdntest.LoadOptions{Targets: []string{"/l?cc=max-age%3D60"}, MaxRequests: 20, Check: func(_ string, resp *http.Response, _ []byte) error {
		checked.Add(1)
		return nil
	}}).Wait()
	if res.Requests != 20 || res.Failures != 0 || checked.Load() != 20 {
		t.Errorf("loop after restart: %+v, %d checked", res, checked.Load())
	}
	if unchanged := reg.WatchRings(); !cdntest.Unchanged(unchanged()) {
		t.Error("rings changed while nothing happened")
	}
}

// The region's nodes are assembled by node.Start, the binary's wiring:
// each has its admin API, and the internal endpoints the cluster's peers
// call (here a replication order: with two replicas, the key's owner has
// its replica take a copy). On the harness before, which wired the edge
// and the cluster by hand, no node answered replication orders and every
// key stayed on its owner alone.
func TestRegionRunsTheProductionWiring(t *testing.T) {
	o := cdntest.StartOrigin(t)
	reg := cdntest.StartRegion(t, o, cdntest.RegionOptions{Nodes: 2, Zones: []string{"z1", "z2"},
		Config: func(_ int, c *node.Config) { c.Cluster.Replicas = 2 }})
	reg.WaitConverged(cdntest.ConvergeTimeout)
	for _, i := range reg.Live() {
		resp, err := http.Get("http://" + reg.Node(i).Node.AdminAddr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("node %d: admin /readyz %d", i, resp.StatusCode)
		}
	}
	if resp, _, err := reg.Get(0, "/r?cc=max-age%3D600"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET: %v %v", resp, err)
	}
	poll.Until(t, 10*time.Second, "both nodes store the key (owner and replica)", func() bool {
		for _, i := range reg.Live() {
			if n, _, _ := reg.Node(i).Edge.StoreStats(); n != 1 {
				return false
			}
		}
		return true
	})
	if got := o.Requests(); got != 1 {
		t.Errorf("origin saw %d requests, want 1: the replica's copy comes from the owner", got)
	}
}

// A CDN's regions are told about each other: every edge is in its region,
// holds the regions table with every edge's peer address and the site's
// shield, and fills through the shield region. A node stopped and
// restarted keeps that config, its seeds, and its gossip and peer
// addresses (the table publishes the latter); a config edited through
// Node.Config leaves the node's own untouched.
func TestCDNHarness(t *testing.T) {
	o := cdntest.StartOrigin(t)
	c := cdntest.StartCDN(t, o, cdntest.CDNOptions{Shield: []string{"eu"}})
	var names []string
	peers, gossips := map[string]string{}, map[string]string{}
	for _, n := range c.Nodes() {
		names = append(names, n.Name)
		peers[n.Name] = n.Cluster.PeerAddr()
		gossips[n.Name] = n.Cluster.GossipAddr()
	}
	if want := []string{"eu-1", "eu-2", "us-1", "us-2"}; !slices.Equal(names, want) {
		t.Fatalf("nodes %q, want %q", names, want)
	}
	for _, n := range c.Nodes() {
		cfg := n.Config()
		if want := n.Name[:2]; cfg.Region != want {
			t.Errorf("%s is in region %q, want %q", n.Name, cfg.Region, want)
		}
		if sh := cfg.Sites[0].Shield; !slices.Equal(sh.Regions, []string{"eu"}) || sh.Direct == nil || !*sh.Direct {
			t.Errorf("%s: shield %+v", n.Name, sh)
		}
		got := map[string]string{}
		for _, r := range cfg.Regions {
			for _, e := range r.Edges {
				if e.Name[:2] != r.Name {
					t.Errorf("%s: edge %s listed in region %s", n.Name, e.Name, r.Name)
				}
				got[e.Name] = e.Peer
			}
		}
		if !maps.Equal(got, peers) {
			t.Errorf("%s: regions table %v, want %v", n.Name, got, peers)
		}
		if p := n.Node.Plan(); p == nil {
			t.Errorf("%s has no plan", n.Name)
		}
	}
	us := c.Region("us")
	resp, _, err := us.Get(0, "/s?cc=max-age%3D600")
	if err != nil || resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Status"), "eu-") {
		t.Fatalf("GET via us-1: %v %v: the shield region should answer", resp, err)
	}

	edited := us.Node(1).Config()
	edited.Sites[0].Origin = "http://127.0.0.1:1"
	edited.Regions[0].Edges[0].Peer = "127.0.0.1:1"
	if cfg := us.Node(1).Config(); cfg.Sites[0].Origin != o.URL || cfg.Regions[0].Edges[0].Peer != peers["eu-1"] {
		t.Fatalf("editing a copy of the config changed the node's: %+v", cfg)
	}

	seeds := us.Node(1).Config().Cluster.Seeds
	if !slices.Equal(seeds, []string{gossips["us-1"]}) {
		t.Errorf("us-2's seeds %q, want us-1's gossip address %s", seeds, gossips["us-1"])
	}
	if err := us.Stop(1); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := us.Stop(1); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	n := us.Restart(1)
	c.WaitConverged()
	if n.Name != "us-2" || n.Cluster.PeerAddr() != peers["us-2"] || n.Cluster.GossipAddr() != gossips["us-2"] {
		t.Errorf("restarted as %s at peer %s, gossip %s; want us-2 at %s, %s", n.Name, n.Cluster.PeerAddr(), n.Cluster.GossipAddr(), peers["us-2"], gossips["us-2"])
	}
	if cfg := n.Config(); len(cfg.Regions) != 2 || cfg.Region != "us" || !slices.Equal(cfg.Cluster.Seeds, seeds) {
		t.Errorf("the restarted node lost its config: region %q, regions %+v, seeds %q", cfg.Region, cfg.Regions, cfg.Cluster.Seeds)
	}
	resp, _, err = n.Get("/s2?cc=max-age%3D600")
	if err != nil || resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Status"), "eu-") {
		t.Fatalf("GET via the restarted us-2: %v %v: the shield region should answer", resp, err)
	}
}

// CDNOptions.PeerAddr routes a link through the address it returns: the
// regions table of us names, for eu's edges, a listener of the test's
// that hangs up at once, and us's fills dial it on their way to the
// shield, then fill from the origin directly; the other tables name the
// edges where they listen. Each (region, edge) link is asked for once,
// with the edge's region and peer address.
func TestCDNPeerAddrRoutesALink(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var dialled atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			dialled.Add(1)
			conn.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	var mu sync.Mutex
	asked := map[[2]string]cdntest.PeerLink{}
	o := cdntest.StartOrigin(t)
	c := cdntest.StartCDN(t, o, cdntest.CDNOptions{Shield: []string{"eu"}, PeerAddr: func(l cdntest.PeerLink) string {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := asked[[2]string{l.From, l.Edge}]; ok {
			t.Errorf("link %s → %s asked for twice", l.From, l.Edge)
		}
		asked[[2]string{l.From, l.Edge}] = l
		if l.From == "us" && l.Region == "eu" {
			return ln.Addr().String()
		}
		return l.Addr
	}})
	if len(asked) != 8 {
		t.Errorf("%d links asked for, want 8 (2 regions × 4 edges)", len(asked))
	}
	for _, n := range c.Nodes() {
		for _, from := range []string{"eu", "us"} {
			if l := asked[[2]string{from, n.Name}]; l.Addr != n.Cluster.PeerAddr() || l.Region != n.Name[:2] {
				t.Errorf("link %s → %s: %+v, want region %s and address %s", from, n.Name, l, n.Name[:2], n.Cluster.PeerAddr())
			}
		}
	}
	for _, n := range c.Nodes() {
		for _, r := range n.Config().Regions {
			for _, e := range r.Edges {
				want := asked[[2]string{n.Config().Region, e.Name}].Addr
				if n.Config().Region == "us" && r.Name == "eu" {
					want = ln.Addr().String()
				}
				if e.Peer != want {
					t.Errorf("%s's regions table names %s at %s, want %s", n.Name, e.Name, e.Peer, want)
				}
			}
		}
	}
	for _, i := range c.Region("us").Live() {
		target := fmt.Sprintf("/routed%d?cc=max-age%%3D600", i)
		resp, _, err := c.Region("us").Get(i, target)
		if err != nil || resp.StatusCode != 200 || strings.Contains(resp.Header.Get("Cache-Status"), "eu-") {
			t.Fatalf("GET %s via us with the shield's links hung up: %v %v, want a direct fill", target, resp, err)
		}
	}
	if dialled.Load() == 0 {
		t.Error("no edge of us dialled the address PeerAddr gave for eu's edges")
	}
}
