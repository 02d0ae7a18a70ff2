package cluster_test

import (
	"fmt"
	"testing"

	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/cdntest"
)

// BenchmarkPeerHit measures a client GET at a non-owner edge for an object
// its owner holds: one signed peer round trip on loopback (the non-owner
// keeps no hot copy here).
func BenchmarkPeerHit(b *testing.B) {
	for _, size := range []int{1024, 64 << 10} {
		for _, mtls := range []bool{false, true} {
			b.Run(fmt.Sprintf("size=%d/mtls=%v", size, mtls), func(b *testing.B) {
				benchRegion(b, func(owner bool) bool { return !owner }, size, mtls)
			})
		}
	}
}

// BenchmarkOwnerHit is the same GET at the owner, served from its store:
// the baseline the peer round trip adds to.
func BenchmarkOwnerHit(b *testing.B) {
	benchRegion(b, func(owner bool) bool { return owner }, 1024, false)
}

func benchRegion(b *testing.B, pick func(owner bool) bool, size int, mtls bool) {
	o := cdntest.StartOrigin(b)
	var p *pki
	if mtls {
		p = newPKI(b, "bench cluster CA")
	}
	reg := cdntest.StartRegion(b, o, cdntest.RegionOptions{
		Nodes: 2,
		Config: func(_ int, c *node.Config) {
			c.Cache.HotBytes = 1
			if p != nil {
				c.Cluster.TLS = p.member(c.Name)
			}
		},
	})
	reg.WaitConverged(cdntest.ConvergeTimeout)
	// A key owned by node 0, asked at node 0 (owner) or node 1.
	var target string
	for k := 0; ; k++ {
		target = fmt.Sprintf("/bench/%d%s&size=%d", k, cacheable, size)
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
	b.SetBytes(int64(size))
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
