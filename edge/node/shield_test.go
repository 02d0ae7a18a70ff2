package node_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/cdntest"
)

// startCDN starts regions of edges edges each in front of a demo origin,
// with the site's shield regions and direct fills as given, through
// cdntest.StartCDN; every edge takes the admin token "t0ken".
func startCDN(t testing.TB, regions []string, edges int, shield []string, direct bool) (*cdntest.CDN, *cdntest.Origin) {
	t.Helper()
	o := cdntest.StartOrigin(t)
	c := cdntest.StartCDN(t, o, cdntest.CDNOptions{
		Regions:  regions,
		Nodes:    edges,
		Shield:   shield,
		NoDirect: !direct,
		Config: func(_ string, _ int, c *node.Config) {
			c.Admin.Token = "t0ken"
			c.Server.ShutdownTimeout = 5 * time.Second
		},
	})
	return c, o
}

// get sends GET target to n and returns the status, the body and the
// Cache-Status; a failed request is an error of the test (get may run in
// a goroutine of it).
func get(t testing.TB, n *cdntest.Node, target string) (int, string, string) {
	resp, body, err := n.Get(target)
	if err != nil {
		t.Errorf("GET %s via %s: %v", target, n.Name, err)
		return 0, "", ""
	}
	return resp.StatusCode, string(body), resp.Header.Get("Cache-Status")
}

// stopRegion stops every node of a region gracefully.
func stopRegion(r *cdntest.Region) {
	for _, i := range r.Live() {
		r.Stop(i)
	}
}

// nodes returns a region's live nodes.
func nodes(r *cdntest.Region) []*cdntest.Node {
	var out []*cdntest.Node
	for _, i := range r.Live() {
		out = append(out, r.Node(i))
	}
	return out
}

func TestShieldOneOriginFetchForTheWholeCDN(t *testing.T) {
	c, o := startCDN(t, []string{"eu", "us", "ap"}, 2, []string{"eu"}, true)
	const target = "/cold?cc=max-age%3D600&size=3000"
	var wg sync.WaitGroup
	for _, n := range c.Nodes() {
		for k := 0; k < 5; k++ {
			wg.Add(1)
			go func(n *cdntest.Node) {
				defer wg.Done()
				status, body, cs := get(t, n, target)
				if status != 200 || len(body) != 3000 {
					t.Errorf("via %s: %d, %d bytes (%s)", n.Node.HTTPAddr(), status, len(body), cs)
				}
			}(n)
		}
	}
	wg.Wait()
	if got := o.RequestsFor(target); got != 1 {
		t.Fatalf("the origin saw %d requests for one object across 3 regions, want 1", got)
	}
	// A second object asked at one edge of a non-shield region: the
	// answer's Cache-Status shows the shield's entry before the edge's.
	_, _, cs := get(t, c.Region("us").Node(0), "/second?cc=max-age%3D600")
	if !strings.Contains(cs, "eu-") {
		t.Fatalf("Cache-Status %q does not show the shield region", cs)
	}
	// The shield's answers are counted: in each other region the owner of
	// the first object asked the shield once, a miss for the first region
	// to ask and a hit for the next (the shield's own region asks nobody).
	var misses, hits float64
	for _, r := range []string{"us", "ap"} {
		for _, n := range nodes(c.Region(r)) {
			fams, _ := n.Node.Registry().Gather()
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
	c, o := startCDN(t, []string{"eu", "us", "ap"}, 2, []string{"eu", "us"}, true)
	stopRegion(c.Region("eu"))
	for i := 0; i < 10; i++ {
		target := fmt.Sprintf("/fb%d?cc=max-age%%3D600", i)
		for _, r := range []string{"us", "ap"} {
			for _, n := range nodes(c.Region(r)) {
				status, _, cs := get(t, n, target)
				if status != 200 {
					t.Fatalf("%s via %s: %d (%s)", target, r, status, cs)
				}
			}
		}
		if got := o.RequestsFor(target); got != 1 {
			t.Fatalf("%s reached the origin %d times through the fallback shield, want 1", target, got)
		}
	}
}

func TestShieldDownWithoutDirectGivesErrorOrStale(t *testing.T) {
	c, o := startCDN(t, []string{"eu", "us"}, 2, []string{"eu"}, false)
	// Stored but stale at once, and allowed stale on error.
	stale := "/stale?cc=max-age%3D0%2C%20stale-if-error%3D600"
	us := nodes(c.Region("us"))
	for _, n := range us {
		if status, _, cs := get(t, n, stale); status != 200 {
			t.Fatalf("warm-up: %d %s", status, cs)
		}
	}
	stopRegion(c.Region("eu"))
	before := o.Requests()
	status, _, cs := get(t, us[0], "/uncached?cc=max-age%3D600")
	if status != http.StatusBadGateway && status != http.StatusGatewayTimeout {
		t.Fatalf("no shield and no direct fill: got %d (%s), want 502 or 504", status, cs)
	}
	owner := us[0]
	for _, n := range us {
		if p, _ := n.Cluster.Owner("site.test" + stale); p.Name == n.Cluster.Name() {
			owner = n
		}
	}
	status, _, cs = get(t, owner, stale)
	if status != 200 || !strings.Contains(cs, "stale-if-error") {
		t.Fatalf("a stale copy should stand in: %d %q", status, cs)
	}
	if after := o.Requests(); after != before {
		t.Fatalf("the origin was reached directly %d times although direct fills are off", after-before)
	}
}

// A region whose own path to the origin fails fills from another region's
// owner of the key before falling back to stale or an error.
func TestRegionFailoverWhenOwnUpstreamFails(t *testing.T) {
	c, o := startCDN(t, []string{"eu", "us"}, 2, nil, true)
	eu := nodes(c.Region("eu"))
	for _, n := range eu {
		cfg := n.Config()
		cfg.Sites[0].Origin = "http://127.0.0.1:1" // refused
		cfg.Sites[0].Pool.Servers = nil
		if _, err := n.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ {
		target := fmt.Sprintf("/fo%d?cc=max-age%%3D600", i)
		for _, n := range eu {
			status, _, cs := get(t, n, target)
			if status != 200 {
				t.Fatalf("%s via %s: %d (%s)", target, n.Name, status, cs)
			}
			if !strings.Contains(cs, "us-") {
				t.Fatalf("Cache-Status %q does not show the us region", cs)
			}
		}
		if got := o.RequestsFor(target); got != 1 {
			t.Fatalf("%s reached the origin %d times, want 1 (through us)", target, got)
		}
	}
}

func newClient(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 32}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}
