package cluster_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/cdntest"
)

// BenchmarkPeerHit measures a client GET at a non-owner edge for an object
// its owner holds: one signed peer round trip on loopback (the non-owner
// keeps no hot copy here).
func BenchmarkPeerHit(b *testing.B) {
	benchRegion(b, func(owner bool) bool { return !owner })
}

// BenchmarkOwnerHit is the same GET at the owner, served from its store:
// the baseline the peer round trip adds to.
func BenchmarkOwnerHit(b *testing.B) {
	benchRegion(b, func(owner bool) bool { return owner })
}

func benchRegion(b *testing.B, pick func(owner bool) bool) {
	o := cdntest.StartOrigin(b)
	reg := cdntest.StartRegion(b, o, cdntest.RegionOptions{
		Nodes:  2,
		Config: func(_ int, c *node.Config) { c.Cache.HotBytes = 1 },
	})
	reg.WaitConverged(15 * time.Second)
	// A key owned by node 0, asked at node 0 (owner) or node 1.
	var target string
	for k := 0; ; k++ {
		target = fmt.Sprintf("/bench/%d%s", k, cacheable)
		if p, _ := reg.Node(0).Cluster.Owner(key(target)); p.Name == reg.Node(0).Name {
			break
		}
	}
	via := 1
	if pick(true) {
		via = 0
	}
	if _, _, err := reg.Get(0, target); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, _, err := reg.Get(via, target)
		if err != nil || resp.StatusCode != 200 {
			b.Fatal(err, resp)
		}
	}
	b.StopTimer()
	if got := o.RequestsFor(target); got != 1 {
		b.Errorf("origin saw %d requests, want 1", got)
	}
}
