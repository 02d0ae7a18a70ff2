package node_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/node"
)

// Issue 17: a rolling restart of a region whose edges keep a disk tier
// leaves the region warm. Every edge in turn is shut down and started
// again on its own disk; after each step every object is still a hit,
// wherever it is asked, and the origin sees no refetch.
func TestRollingRestartOnDiskKeepsTheRegionWarm(t *testing.T) {
	o := &diskOrigin{}
	osrv := httptest.NewServer(o)
	defer osrv.Close()
	client := newClient(t)

	const edges, objects = 3, 24
	dirs := make([]string, edges)
	cfgs := make([]node.Config, edges)
	nodes := make([]*node.Node, edges)
	var seeds []string
	for i := range edges {
		dirs[i] = t.TempDir()
		cfgs[i] = nodeConfig(fmt.Sprintf("edge-%d", i), osrv.URL, seeds...)
		cfgs[i].Cache.Disk = edge.DiskConfig{Path: dirs[i], MaxBytes: 64 << 20}
		n, err := node.Start(cfgs[i], node.Options{})
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = n
		seeds = append(seeds, n.Cluster().GossipAddr())
	}
	defer func() {
		for _, n := range nodes {
			if n != nil {
				n.Shutdown(context.Background())
			}
		}
	}()
	waitMembers(t, nodes, edges)

	// askAll asks every edge for every object and returns how many
	// answers were hits; every body must be the origin's.
	askAll := func(step string) (hits, asked int) {
		for _, n := range nodes {
			for k := range objects {
				path := fmt.Sprintf("/roll/%d", k)
				code, body, cs := fetch(t, client, n, path)
				if code != 200 || string(body) != string(diskBody(path)) {
					t.Fatalf("%s: %s from %s: %d, %d bytes", step, path, n.HTTPAddr(), code, len(body))
				}
				asked++
				if strings.Contains(cs, "hit") {
					hits++
				}
			}
		}
		return hits, asked
	}
	askAll("warming")
	if got := o.requests.Load(); got != objects {
		t.Fatalf("warming asked the origin %d times for %d objects", got, objects)
	}
	hits, asked := askAll("warm")
	t.Logf("before the restarts: %d of %d answers were hits", hits, asked)

	for i := range edges {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := nodes[i].Shutdown(ctx); err != nil {
			t.Errorf("shutdown of edge-%d: %v", i, err)
		}
		cancel()
		nodes[i] = nil
		var others []*node.Node
		var seeds []string
		for j, n := range nodes {
			if j != i && n != nil {
				others = append(others, n)
				seeds = append(seeds, n.Cluster().GossipAddr())
			}
		}
		// The others must have dropped the old incarnation (its peer
		// address dies with it) before the new one joins: otherwise
		// "every ring has 3 members" can still count the old one, and
		// its keys' fills go to a closed address and on to the origin.
		waitMembers(t, others, edges-1)
		cfg := cfgs[i]
		cfg.Cluster.Seeds = seeds
		n, err := node.Start(cfg, node.Options{})
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = n
		waitMembers(t, nodes, edges)
		before := o.requests.Load()
		hits, asked := askAll(fmt.Sprintf("after restarting edge-%d", i))
		t.Logf("after restarting edge-%d: %d of %d answers were hits", i, hits, asked)
		if refetched := o.requests.Load() - before; refetched != 0 {
			t.Fatalf("after restarting edge-%d the origin was asked %d times: the region lost what it had on disk", i, refetched)
		}
		if hits < asked*9/10 {
			t.Fatalf("after restarting edge-%d only %d of %d answers were hits", i, hits, asked)
		}
	}
}
