package node_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/node"
)

// benchConfig is a clustered node of region eu with sites sites, each
// shielded by us, in a CDN of regions eu, us and ap of 3 edges each: every
// site's chain needs the rings of us (shield, failover) and ap (failover).
func benchConfig(sites int) node.Config {
	cfg := nodeConfig("eu-0", "http://127.0.0.1:1")
	cfg.Region = "eu"
	cfg.Admin.DrainDelay = 0
	cfg.Sites = nil
	for i := 0; i < sites; i++ {
		cfg.Sites = append(cfg.Sites, edge.SiteConfig{
			Hosts:  []string{fmt.Sprintf("site%d.test", i)},
			Origin: "http://127.0.0.1:1",
			Shield: edge.ShieldConfig{Regions: []string{"us", "eu"}},
		})
	}
	for _, r := range []string{"eu", "us", "ap"} {
		rc := node.RegionConfig{Name: r}
		for e := 0; e < 3; e++ {
			rc.Edges = append(rc.Edges, node.EdgeRef{Name: fmt.Sprintf("%s-%d", r, e), Peer: fmt.Sprintf("127.0.0.1:%d", 1+e)})
		}
		cfg.Regions = append(cfg.Regions, rc)
	}
	return cfg
}

// BenchmarkNodeStart starts and stops a clustered node of 4 sites in a
// CDN of 3 regions.
func BenchmarkNodeStart(b *testing.B) {
	cfg := benchConfig(4)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		n, err := node.Start(cfg, node.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		n.Shutdown(context.Background())
		b.StartTimer()
	}
}

// BenchmarkNodeReload reloads that node with one site's origin changed
// (the regions table is the same).
func BenchmarkNodeReload(b *testing.B) {
	cfg := benchConfig(4)
	n, err := node.Start(cfg, node.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		next := benchConfig(4)
		next.Sites[0].Origin = fmt.Sprintf("http://127.0.0.1:%d", 2+i%2)
		if err := reload(n, next); err != nil {
			b.Fatal(err)
		}
	}
}
