package cluster_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/internal/cdntest"
)

// cacheable is the query that makes the demo origin's objects cacheable.
const cacheable = "?cc=max-age%3D600"

func TestRegionStoresEachKeyOnce(t *testing.T) {
	o := cdntest.StartOrigin(t)
	reg := cdntest.StartRegion(t, o, cdntest.RegionOptions{})
	reg.WaitConverged(15 * time.Second)

	const keys = 300
	for k := range keys {
		target := fmt.Sprintf("/once/%d%s", k, cacheable)
		for _, i := range reg.Live() {
			resp, _, err := reg.Get(i, target)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s via node %d: status %d", target, i, resp.StatusCode)
			}
		}
	}
	if got := o.Requests(); got != keys {
		t.Errorf("origin saw %d requests, want %d", got, keys)
	}
	for _, i := range reg.Live() {
		n := reg.Node(i)
		entries, _, _ := n.Edge.StoreStats()
		t.Logf("%s stores %d entries (share %.3f)", n.Name, entries, n.Cluster.Ring().Share(n.Name))
		if entries < keys*20/100 || entries > keys*47/100 {
			t.Errorf("%s stores %d of %d keys, want 20%%-47%%", n.Name, entries, keys)
		}
	}
}
