package node_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/origin"
)

// cdn is several regions of clustered edge nodes in front of one demo
// origin, with the origin shield configured.
type cdn struct {
	t         testing.TB
	demo      *origin.Demo
	regions   map[string][]*node.Node
	names     []string
	client    *http.Client
	originURL string
	cfgs      map[string]node.Config // by node name, as last applied
}

func startCDN(t testing.TB, regions []string, edges int, shield []string, direct bool) *cdn {
	t.Helper()
	demo := origin.NewDemo(nil)
	osrv := httptest.NewServer(demo)
	tr := &http.Transport{MaxIdleConnsPerHost: 32}
	c := &cdn{t: t, demo: demo, regions: map[string][]*node.Node{}, names: regions,
		client: &http.Client{Transport: tr, Timeout: 20 * time.Second}, originURL: osrv.URL}
	t.Cleanup(func() {
		for _, ns := range c.regions {
			for _, n := range ns {
				n.Shutdown(context.Background())
			}
		}
		tr.CloseIdleConnections()
		demo.Close()
		osrv.Close()
	})
	cfgs := map[string]node.Config{}
	for _, r := range regions {
		var seeds []string
		for e := 0; e < edges; e++ {
			name := fmt.Sprintf("%s-%d", r, e)
			cfg := nodeConfig(name, osrv.URL, seeds...)
			cfg.Region = r
			cfg.Admin.DrainDelay = 0
			n, err := node.Start(cfg, node.Options{})
			if err != nil {
				t.Fatal(err)
			}
			cfgs[name] = cfg
			seeds = append(seeds, n.Cluster().GossipAddr())
			c.regions[r] = append(c.regions[r], n)
		}
	}
	var table []node.RegionConfig
	for _, r := range regions {
		waitMembers(t, c.regions[r], edges)
		rc := node.RegionConfig{Name: r}
		for _, n := range c.regions[r] {
			rc.Edges = append(rc.Edges, node.EdgeRef{Name: n.Cluster().Name(), Peer: n.Cluster().PeerAddr()})
		}
		table = append(table, rc)
	}
	// Publish the regions to every node and turn the shield on.
	for _, r := range regions {
		for _, n := range c.regions[r] {
			cfg := cfgs[n.Cluster().Name()]
			cfg.Regions = table
			cfg.Sites[0].Shield = edge.ShieldConfig{Regions: shield, Direct: &direct}
			if _, err := n.Reload(cfg); err != nil {
				t.Fatal(err)
			}
			cfgs[n.Cluster().Name()] = cfg
		}
	}
	c.cfgs = cfgs
	return c
}

func (c *cdn) get(n *node.Node, target string) (int, string, string) {
	req, _ := http.NewRequest("GET", "http://"+n.HTTPAddr()+target, nil)
	req.Host = "site.test"
	resp, err := c.client.Do(req)
	if err != nil {
		c.t.Errorf("GET %s via %s: %v", target, n.HTTPAddr(), err)
		return 0, "", ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Cache-Status")
}

func (c *cdn) all() []*node.Node {
	var out []*node.Node
	for _, r := range c.names {
		out = append(out, c.regions[r]...)
	}
	return out
}

func TestShieldOneOriginFetchForTheWholeCDN(t *testing.T) {
	c := startCDN(t, []string{"eu", "us", "ap"}, 2, []string{"eu"}, true)
	const target = "/cold?cc=max-age%3D600&size=3000"
	var wg sync.WaitGroup
	for _, n := range c.all() {
		for k := 0; k < 5; k++ {
			wg.Add(1)
			go func(n *node.Node) {
				defer wg.Done()
				status, body, cs := c.get(n, target)
				if status != 200 || len(body) != 3000 {
					t.Errorf("via %s: %d, %d bytes (%s)", n.HTTPAddr(), status, len(body), cs)
				}
			}(n)
		}
	}
	wg.Wait()
	if got := c.demo.RequestsFor(target); got != 1 {
		t.Fatalf("the origin saw %d requests for one object across 3 regions, want 1", got)
	}
	// A second object asked at one edge of a non-shield region: the
	// answer's Cache-Status shows the shield's entry before the edge's.
	_, _, cs := c.get(c.regions["us"][0], "/second?cc=max-age%3D600")
	if !strings.Contains(cs, "eu-") {
		t.Fatalf("Cache-Status %q does not show the shield region", cs)
	}
	// The shield's answers are counted: in each other region the owner of
	// the first object asked the shield once, a miss for the first region
	// to ask and a hit for the next (the shield's own region asks nobody).
	var misses, hits float64
	for _, r := range []string{"us", "ap"} {
		for _, n := range c.regions[r] {
			fams, _ := n.Registry().Gather()
			for _, f := range fams {
				if f.GetName() != "meridian_shield_requests_total" {
					continue
				}
				for _, m := range f.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "result" && l.GetValue() == "hit" {
							hits += m.GetCounter().GetValue()
						} else if l.GetName() == "result" {
							misses += m.GetCounter().GetValue()
						}
					}
				}
			}
		}
	}
	if hits+misses < 3 || misses < 1 {
		t.Fatalf("shield answers counted: %v hits, %v misses", hits, misses)
	}
}

func TestShieldRegionDownFallsBack(t *testing.T) {
	c := startCDN(t, []string{"eu", "us", "ap"}, 2, []string{"eu", "us"}, true)
	for _, n := range c.regions["eu"] {
		n.Shutdown(context.Background())
	}
	for i := 0; i < 10; i++ {
		target := fmt.Sprintf("/fb%d?cc=max-age%%3D600", i)
		for _, r := range []string{"us", "ap"} {
			for _, n := range c.regions[r] {
				status, _, cs := c.get(n, target)
				if status != 200 {
					t.Fatalf("%s via %s: %d (%s)", target, r, status, cs)
				}
			}
		}
		if got := c.demo.RequestsFor(target); got != 1 {
			t.Fatalf("%s reached the origin %d times through the fallback shield, want 1", target, got)
		}
	}
}

func TestShieldDownWithoutDirectGivesErrorOrStale(t *testing.T) {
	c := startCDN(t, []string{"eu", "us"}, 2, []string{"eu"}, false)
	// Stored but stale at once, and allowed stale on error.
	stale := "/stale?cc=max-age%3D0%2C%20stale-if-error%3D600"
	us := c.regions["us"]
	for _, n := range us {
		if status, _, cs := c.get(n, stale); status != 200 {
			t.Fatalf("warm-up: %d %s", status, cs)
		}
	}
	for _, n := range c.regions["eu"] {
		n.Shutdown(context.Background())
	}
	before := c.demo.Requests()
	status, _, cs := c.get(us[0], "/uncached?cc=max-age%3D600")
	if status != http.StatusBadGateway && status != http.StatusGatewayTimeout {
		t.Fatalf("no shield and no direct fill: got %d (%s), want 502 or 504", status, cs)
	}
	owner := us[0]
	for _, n := range us {
		if o, _ := n.Cluster().Owner("site.test" + stale); o.Name == n.Cluster().Name() {
			owner = n
		}
	}
	status, _, cs = c.get(owner, stale)
	if status != 200 || !strings.Contains(cs, "stale-if-error") {
		t.Fatalf("a stale copy should stand in: %d %q", status, cs)
	}
	if after := c.demo.Requests(); after != before {
		t.Fatalf("the origin was reached directly %d times although direct fills are off", after-before)
	}
}

// A region whose own path to the origin fails fills from another region's
// owner of the key before falling back to stale or an error.
func TestRegionFailoverWhenOwnUpstreamFails(t *testing.T) {
	c := startCDN(t, []string{"eu", "us"}, 2, nil, true)
	for _, n := range c.regions["eu"] {
		cfg := c.cfgs[n.Cluster().Name()]
		cfg.Sites[0].Origin = "http://127.0.0.1:1" // refused
		cfg.Sites[0].Pool.Servers = nil
		if _, err := n.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ {
		target := fmt.Sprintf("/fo%d?cc=max-age%%3D600", i)
		for _, n := range c.regions["eu"] {
			status, _, cs := c.get(n, target)
			if status != 200 {
				t.Fatalf("%s via %s: %d (%s)", target, n.Cluster().Name(), status, cs)
			}
			if !strings.Contains(cs, "us-") {
				t.Fatalf("Cache-Status %q does not show the us region", cs)
			}
		}
		if got := c.demo.RequestsFor(target); got != 1 {
			t.Fatalf("%s reached the origin %d times, want 1 (through us)", target, got)
		}
	}
}

func newClient(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 32}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}
