package node_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/meridiancdn/meridian/edge/node"
)

// A regions table that the ring refuses (an edge listed twice) is refused
// by the reload with an error that names the entry, and the running
// config keeps applying: the shield is still used.
func TestReloadRefusesDuplicatedRegionEdge(t *testing.T) {
	c := startCDN(t, []string{"eu", "us"}, 2, []string{"eu"}, true)
	us := c.regions["us"][0]
	cfg := c.cfgs[us.Cluster().Name()]
	bad := cfg
	bad.Regions = slices.Clone(cfg.Regions)
	for i, r := range bad.Regions {
		if r.Name == "eu" {
			r.Edges = append(slices.Clone(r.Edges), node.EdgeRef{Name: r.Edges[0].Name, Peer: "127.0.0.1:1"})
			bad.Regions[i] = r
		}
	}
	_, err := us.Reload(bad)
	if err == nil {
		t.Fatal("reload with a duplicated edge in regions was accepted")
	}
	if want := `regions[0].edges[2].name: duplicate "eu-0" (also edges[0])`; !strings.Contains(err.Error(), want) {
		t.Fatalf("reload refused with %q, want it to name %q", err, want)
	}
	for _, n := range c.regions["us"] {
		target := "/after-refused-reload?cc=max-age%3D600&via=" + n.Cluster().Name()
		status, _, cs := c.get(n, target)
		if status != 200 || !strings.Contains(cs, "eu-") {
			t.Fatalf("via %s after the refused reload: %d, Cache-Status %q does not show the shield", n.Cluster().Name(), status, cs)
		}
	}
}
