package node_test

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/cdntest"
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
	for i := range dirs {
		dirs[i] = t.TempDir()
	}
	// Each edge, and each of its restarts, on its own disk.
	reg := cdntest.StartRegion(t, nil, cdntest.RegionOptions{Nodes: edges, Prefix: "edge-", Config: func(i int, c *node.Config) {
		c.Sites[0].Origin = osrv.URL
		c.Cache.Disk = edge.DiskConfig{Path: dirs[i], MaxBytes: 64 << 20}
		c.Admin.DrainDelay = 150 * time.Millisecond
	}})
	reg.WaitConverged(cdntest.ConvergeTimeout)

	// askAll asks every edge for every object and returns how many
	// answers were hits; every body must be the origin's.
	askAll := func(step string) (hits, asked int) {
		for i := range edges {
			n := reg.Node(i).Node
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
		if err := reg.Stop(i); err != nil {
			t.Errorf("shutdown of edge-%d: %v", i, err)
		}
		// The others must have dropped the old incarnation (its peer
		// address dies with it) before the new one joins: otherwise
		// "every ring has 3 members" can still count the old one, and
		// its keys' fills go to a closed address and on to the origin.
		reg.WaitConverged(cdntest.ConvergeTimeout)
		reg.Restart(i)
		reg.WaitConverged(cdntest.ConvergeTimeout)
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
