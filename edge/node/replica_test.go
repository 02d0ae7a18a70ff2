package node_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/cluster"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/cdntest"
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
			o := cdntest.StartOrigin(t)
			reg := cdntest.StartRegion(t, o, cdntest.RegionOptions{
				Nodes:  3,
				Prefix: "r-",
				Zones:  []string{"a", "b", "c"},
				Config: func(_ int, c *node.Config) {
					c.Cluster.Replicas = tc.replicas
					// The member is lost by a Stop, which leaves the
					// region: no failure detection is needed, and the LAN
					// preset's does not flap members that were slow to ack
					// while the process built rings (over a second each under
					// -race on a loaded machine), as the local preset's 100ms
					// probes do: a flap mid-count sends keys to the origin.
					c.Cluster.Preset = cluster.PresetLAN
				},
			})
			nodes := []*cdntest.Node{reg.Node(0), reg.Node(1), reg.Node(2)}
			reg.WaitConverged(cdntest.ConvergeTimeout)
			const keys = 90
			target := func(i int) string { return fmt.Sprintf("/rep%d?cc=max-age%%3D600", i) }
			for i := 0; i < keys; i++ {
				originServes(t, nodes[i%3], target(i))
			}
			stored := func() int {
				total := 0
				for _, n := range nodes {
					e, _, _ := n.Edge.StoreStats()
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
			if got := o.Requests(); got != keys {
				t.Fatalf("the origin saw %d requests for %d keys: replica copies must come from the owner", got, keys)
			}
			before := o.Requests()
			reg.Stop(2)
			reg.WaitConverged(cdntest.ConvergeTimeout)
			for i := 0; i < keys; i++ {
				originServes(t, nodes[i%2], target(i))
			}
			refill := float64(o.Requests()-before) / keys
			if refill > tc.maxRefill || refill < tc.minRefill {
				t.Fatalf("replicas=%d: %.0f%% of the keys went back to the origin, want %.0f%%-%.0f%%",
					tc.replicas, 100*refill, 100*tc.minRefill, 100*tc.maxRefill)
			}
			t.Logf("replicas=%d: %.1f%% of the keys refetched after losing a member", tc.replicas, 100*refill)
		})
	}
}
