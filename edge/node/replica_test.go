package node_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/cluster"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/origin"
)

// With two replicas in different zones, losing a member does not send its
// keys back to the origin; with one, about a third of them go.
func TestReplicasSpareTheOriginWhenAMemberIsLost(t *testing.T) {
	for _, tc := range []struct {
		replicas             int
		maxRefill, minRefill float64 // share of the keys refetched from origin
	}{
		{replicas: 2, maxRefill: 0.10},
		{replicas: 1, minRefill: 0.15, maxRefill: 0.6},
	} {
		t.Run(fmt.Sprintf("replicas=%d", tc.replicas), func(t *testing.T) {
			demo := origin.NewDemo(nil)
			defer demo.Close()
			osrv := httptest.NewServer(demo)
			defer osrv.Close()
			var nodes []*node.Node
			var seeds []string
			for i, zone := range []string{"a", "b", "c"} {
				cfg := nodeConfig(fmt.Sprintf("r-%d", i), osrv.URL, seeds...)
				cfg.Cluster.Zone = zone
				cfg.Cluster.Replicas = tc.replicas
				// The member is lost by a Shutdown, which leaves the
				// region: no failure detection is needed, and the LAN
				// preset's does not flap members that were slow to ack
				// while the process built rings (over a second each under
				// -race on a loaded machine), as the local preset's 100ms
				// probes do: a flap mid-count sends keys to the origin.
				cfg.Cluster.Preset = cluster.PresetLAN
				cfg.Admin.DrainDelay = 0
				n, err := node.Start(cfg, node.Options{})
				if err != nil {
					t.Fatal(err)
				}
				defer n.Shutdown(context.Background())
				seeds = append(seeds, n.Cluster().GossipAddr())
				nodes = append(nodes, n)
			}
			waitMembers(t, nodes, 3)
			c := &cdn{t: t, demo: demo, client: newClient(t)}
			const keys = 90
			target := func(i int) string { return fmt.Sprintf("/rep%d?cc=max-age%%3D600", i) }
			for i := 0; i < keys; i++ {
				c.originServes(nodes[i%3], target(i))
			}
			stored := func() int {
				total := 0
				for _, n := range nodes {
					e, _, _ := n.Handler().StoreStats()
					total += e
				}
				return total
			}
			// Replica copies are taken in the background.
			want := keys * tc.replicas
			deadline := time.Now().Add(10 * time.Second)
			for stored() < want && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if got := stored(); got < want*95/100 {
				t.Fatalf("%d copies stored, want about %d", got, want)
			}
			if got := demo.Requests(); got != keys {
				t.Fatalf("the origin saw %d requests for %d keys: replica copies must come from the owner", got, keys)
			}
			before := demo.Requests()
			nodes[2].Shutdown(context.Background())
			waitMembers(t, nodes[:2], 2)
			for i := 0; i < keys; i++ {
				c.originServes(nodes[i%2], target(i))
			}
			refill := float64(demo.Requests()-before) / keys
			if refill > tc.maxRefill || refill < tc.minRefill {
				t.Fatalf("replicas=%d: %.0f%% of the keys went back to the origin, want %.0f%%-%.0f%%",
					tc.replicas, 100*refill, 100*tc.minRefill, 100*tc.maxRefill)
			}
			t.Logf("replicas=%d: %.1f%% of the keys refetched after losing a member", tc.replicas, 100*refill)
		})
	}
}
