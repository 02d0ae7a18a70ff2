package node

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/cluster"
)

// planConfig is node eu-0 of region eu with two sites shielded by us and
// regions eu, us and ap of two edges each.
func planConfig() Config {
	cfg := Config{
		Config: edge.Config{
			Name: "eu-0",
			Sites: []edge.SiteConfig{
				{Hosts: []string{"a.test"}, Origin: "http://127.0.0.1:1", Shield: edge.ShieldConfig{Regions: []string{"us", "eu"}}},
				{Hosts: []string{"b.test"}, Origin: "http://127.0.0.1:2", Shield: edge.ShieldConfig{Regions: []string{"us"}}},
				{Hosts: []string{"c.test"}, Origin: "http://127.0.0.1:3", Shield: edge.ShieldConfig{Regions: []string{"eu", "us"}}},
			},
		},
		Region:  "eu",
		Cluster: &cluster.Config{Secret: "0123456789abcdef0123"},
	}
	for _, r := range []string{"eu", "us", "ap"} {
		rc := RegionConfig{Name: r}
		for e := 0; e < 2; e++ {
			rc.Edges = append(rc.Edges, EdgeRef{Name: fmt.Sprintf("%s-%d", r, e), Peer: fmt.Sprintf("127.0.0.1:%d", 10+e)})
		}
		cfg.Regions = append(cfg.Regions, rc)
	}
	return cfg
}

// Every site's chain uses one ring per region, and a new plan keeps the
// rings of regions whose edges did not change (and rebuilds the others),
// while taking the new peer addresses.
func TestPlanSharesRingsPerRegion(t *testing.T) {
	cfg := planConfig()
	p, err := BuildPlan(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := p.Sites[0], p.Sites[1], p.Sites[2]
	if len(a.shield.Regions) != 1 || len(b.shield.Regions) != 1 || len(c.shield.Regions) != 0 || !c.IsShield {
		t.Fatalf("shields: a %v, b %v, c %v (is shield %v)", a.Shield, b.Shield, c.Shield, c.IsShield)
	}
	us := a.shield.Regions[0].Ring
	if us == nil || b.shield.Regions[0].Ring != us {
		t.Fatal("sites a and b do not share region us's ring")
	}
	for _, sp := range p.Sites {
		if len(sp.failover) != 2 || sp.failover[0].Ring != us && sp.failover[1].Ring != us {
			t.Fatalf("site %v: failover does not use the shared ring of us", sp.Hosts)
		}
	}
	if len(p.Rings) != 2 {
		t.Fatalf("rings built: %+v, want us and ap once each", p.Rings)
	}

	// us's edges move to other addresses, ap gains an edge.
	next := planConfig()
	next.Regions[1].Edges[0].Peer = "127.0.0.1:99"
	next.Regions[2].Edges = append(next.Regions[2].Edges, EdgeRef{Name: "ap-2", Peer: "127.0.0.1:12"})
	q, err := BuildPlan(next, p)
	if err != nil {
		t.Fatal(err)
	}
	if got := q.Sites[0].shield.Regions[0]; got.Ring != us || got.Addrs["us-0"] != "127.0.0.1:99" {
		t.Fatalf("us's ring not kept (%v) or its new address not taken (%q)", got.Ring == us, got.Addrs["us-0"])
	}
	ap := p.regions["ap"].ring
	if q.regions["ap"].ring == ap || q.regions["ap"].ring.Len() != 3 {
		t.Fatal("ap's ring was not rebuilt with its new edge")
	}
	for _, r := range q.Rings {
		if r.Reused != (r.Region == "us") {
			t.Fatalf("ring %s reported reused=%v", r.Region, r.Reused)
		}
	}
}

// A regions table the ring refuses is refused by BuildPlan (and by
// Validate before it) with the entry named.
func TestPlanRefusesWhatTheRingRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"duplicated edge", func(c *Config) {
			c.Regions[1].Edges = append(c.Regions[1].Edges, EdgeRef{Name: "us-0", Peer: "127.0.0.1:5"})
		}, `regions[1].edges[2].name: duplicate "us-0" (also edges[0])`},
		{"duplicated region", func(c *Config) {
			c.Regions = append(c.Regions, RegionConfig{Name: "us", Edges: []EdgeRef{{Name: "us-9", Peer: "127.0.0.1:9"}}})
		}, `regions[3].name: "us" listed twice`},
		{"weight too large", func(c *Config) { c.Regions[2].Edges[1].Weight = 1 << 21 }, "regions[2].edges: ring: peers[1].weight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := planConfig()
			tc.edit(&cfg)
			if _, err := BuildPlan(cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("BuildPlan: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestPlanExplain(t *testing.T) {
	cfg := planConfig()
	f := false
	cfg.Sites[1].Shield.Direct = &f
	p, err := BuildPlan(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := p.Explain(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"node eu-0 in region eu\n",
		"site a.test\n  1. owner: the key's owner on region eu's ring of members (1 kept per object)",
		"  2. shield: the key's owner in region us; then the origin\n  3. origin: pool a.test: http://127.0.0.1:1\n",
		"  4. failover, only when the path to the origin failed: the key's owner in region us, then in ap\n",
		"site b.test\n", "shield: the key's owner in region us; never the origin directly (direct: false)",
		"site c.test\n", "  2. shield: none; region eu is this site's shield and fills from the origin\n",
		"ring us: us-0, us-1\n", "ring ap: ap-0, ap-1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
}

// With a point for every region, failover goes nearest first (by
// great-circle distance); without, in the table's order.
func TestPlanFailoverNearestFirst(t *testing.T) {
	cfg := planConfig()
	order := func() []string {
		t.Helper()
		p, err := BuildPlan(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		return p.Sites[0].Failover
	}
	cfg.Regions = append(cfg.Regions, RegionConfig{Name: "sa", Edges: []EdgeRef{{Name: "sa-0", Peer: "127.0.0.1:20"}}})
	if got := order(); !slices.Equal(got, []string{"us", "ap", "sa"}) {
		t.Fatalf("without points: %v, want the table's order", got)
	}
	points := map[string]Point{"eu": {50.11, 8.68}, "us": {39.04, -77.49}, "ap": {35.69, 139.69}, "sa": {-23.55, -46.63}}
	for i := range cfg.Regions {
		pt := points[cfg.Regions[i].Name]
		cfg.Regions[i].Point = &pt
	}
	// Frankfurt to Ashburn 6,500 km, to São Paulo 9,800 km, to Tokyo 9,300 km.
	if got := order(); !slices.Equal(got, []string{"us", "ap", "sa"}) {
		t.Fatalf("from Frankfurt: %v, want us, ap, sa", got)
	}
	cfg.Region = "sa"
	if got := order(); !slices.Equal(got, []string{"us", "eu", "ap"}) {
		t.Fatalf("from São Paulo: %v, want us, eu, ap", got)
	}
	cfg.Regions[3].Point = &Point{Lat: 91}
	if _, err := BuildPlan(cfg, nil); err == nil || !strings.Contains(err.Error(), "regions[3].point") {
		t.Fatalf("a point out of range: %v", err)
	}
}
