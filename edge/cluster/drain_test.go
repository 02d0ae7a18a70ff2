package cluster_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/cluster"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/cdntest"
	"github.com/meridiancdn/meridian/internal/poll"
	"github.com/meridiancdn/meridian/ring"
)

// cacheStatusNames returns the member names of a Cache-Status field's
// entries, first (the owner's) to last (the edge the client asked).
func cacheStatusNames(cs string) []string {
	var out []string
	for _, e := range strings.Split(cs, ",") {
		name, _, _ := strings.Cut(strings.TrimSpace(e), ";")
		out = append(out, name)
	}
	return out
}

// TestDrainWhileRunning: a running member set draining (SetDraining, as
// an operator does before maintenance) gives its keys away on every
// member's ring, about 1/n of them and none between the others, while it
// stays a member and keeps answering what it holds: the keys it filled
// are not asked of the origin again (their new owners consult it), new
// keys are filled by the others and never stored on it, and no client
// request fails, including those sent to the draining member itself.
// Undrained, it owns its share again.
func TestDrainWhileRunning(t *testing.T) {
	o := cdntest.StartOrigin(t)
	reg := cdntest.StartRegion(t, o, cdntest.RegionOptions{
		Config: func(_ int, c *node.Config) {
			// No hot copies: which member stores a key is decided by
			// the ring alone.
			c.Cache.HotBytes = 1
			// Nobody fails here: see TestDrainingMemberOwnsNothing.
			c.Cluster.Preset = cluster.PresetLAN
		},
		Logger: logBuffer(t),
	})
	reg.WaitConverged(cdntest.ConvergeTimeout)
	const drained = 1
	dn := reg.Node(drained)
	before := reg.Node(0).Cluster.Ring()

	// Keys filled before the drain: the clients keep asking for the
	// first half (loop) through every member while it drains; the second
	// half is asked for again only once every ring has it drained.
	const keys = 150
	targets := make([]string, keys)
	held := 0 // keys the drained member owns and fills before it drains
	for k := range targets {
		targets[k] = fmt.Sprintf("/drain/%d%s", k, cacheable)
		resp, _, err := reg.Get(0, targets[k])
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", targets[k], resp, err)
		}
		if p, _ := before.Owner(key(targets[k])); p.Name == dn.Name {
			held++
		}
	}
	poll.Until(t, 10*time.Second, dn.Name+" stores the keys it owns", func() bool {
		entries, _, _ := dn.Edge.StoreStats()
		return entries == held
	})
	looped, later := targets[:keys/2], targets[keys/2:]
	load := reg.StartLoad(cdntest.LoadOptions{Targets: looped, Workers: 4, MaxDuration: 60 * time.Second})
	defer load.Stop()
	poll.Until(t, 30*time.Second, "the loop runs", func() bool { return load.Count().Requests >= len(looped) })

	if err := dn.Cluster.SetDraining(true); err != nil {
		t.Fatal(err)
	}
	for _, i := range reg.Live() {
		n := reg.Node(i).Cluster
		poll.Until(t, cdntest.ConvergeTimeout, n.Name()+"'s ring has "+dn.Name+" draining", func() bool {
			r := n.Ring()
			return r.Len() == 3 && r.Share(dn.Name) == 0
		})
	}
	after := reg.Node(0).Cluster.Ring()
	for _, i := range reg.Live() {
		n := reg.Node(i).Cluster
		if got := n.Members(); len(got) != 3 || !got[drained].Draining || got[0].Draining || got[2].Draining {
			t.Fatalf("%s: members %+v, want %s draining", n.Name(), got, dn.Name)
		}
	}

	// About 1/n of the keys moved, all away from the drained member.
	var moved, between int
	const sample = 20000
	for k := range sample {
		kk := fmt.Sprintf("sample/%d", k)
		p, _ := before.Owner(kk)
		q, _ := after.Owner(kk)
		switch {
		case q.Name == dn.Name:
			t.Fatalf("%s still owned by the draining %s", kk, dn.Name)
		case p.Name == dn.Name:
			moved++
		case p.Name != q.Name:
			between++
		}
	}
	t.Logf("draining 1 of 3 running members moved %.2f%% of %d keys (ideal 33.33%%), %d between the others; %s held %d of %d filled keys",
		100*float64(moved)/sample, sample, between, dn.Name, held, keys)
	if between != 0 || moved < sample*28/100 || moved > sample*39/100 {
		t.Errorf("moved %d of %d keys away and %d between the others, want about 1/3 and none", moved, sample, between)
	}

	start := load.Count().Requests
	poll.Until(t, 30*time.Second, "the loop asks for each of its keys again through every member", func() bool {
		return load.Count().Requests >= start+3*len(looped)
	})
	res := load.Stop()
	t.Logf("loop: %d requests across the drain, %d failed", res.Requests, res.Failures)
	if res.Failures != 0 {
		t.Fatalf("%d of %d client requests failed across the drain: %q", res.Failures, res.Requests, res.Errors)
	}

	// The drained member still answers what it holds: its keys' new
	// owners take its copy (consult), the origin is not asked again.
	consulted := 0
	for _, i := range []int{0, 2, drained} {
		for _, target := range later {
			resp, _, err := reg.Get(i, target)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("GET %s via %s: %v %v", target, reg.Node(i).Name, resp, err)
			}
		}
	}
	for _, target := range later {
		p, _ := before.Owner(key(target))
		if p.Name == dn.Name {
			consulted++
		}
		if n := o.RequestsFor(target); n != 1 {
			t.Errorf("%s (owned by %s before the drain): origin saw it %d times, want 1", target, p.Name, n)
		}
	}
	var fromDrained uint64
	for _, i := range reg.Live() {
		fromDrained += reg.Node(i).Cluster.Consulted()
	}
	t.Logf("%d of the %d keys asked after the drain were the drained member's; copies taken from peers: %d", consulted, len(later), fromDrained)
	if consulted > 0 && fromDrained == 0 {
		t.Errorf("no member took a copy from the drained %s", dn.Name)
	}

	// New keys are filled by the others: never stored on the drained
	// member, and through the others never by it.
	entries, _, _ := dn.Edge.StoreStats()
	for k := range 60 {
		target := fmt.Sprintf("/drained/%d%s", k, cacheable)
		for _, i := range reg.Live() {
			resp, _, err := reg.Get(i, target)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("GET %s via %s: %v %v", target, reg.Node(i).Name, resp, err)
			}
			cs := resp.Header.Get("Cache-Status")
			names := cacheStatusNames(cs)
			if names[0] == dn.Name || i != drained && strings.Contains(cs, dn.Name+";") {
				t.Errorf("GET %s via %s: Cache-Status %q: filled by the draining %s", target, reg.Node(i).Name, cs, dn.Name)
			}
		}
		if n := o.RequestsFor(target); n != 1 {
			t.Errorf("%s: origin saw it %d times, want 1", target, n)
		}
	}
	if now, _, _ := dn.Edge.StoreStats(); now != entries {
		t.Errorf("the draining %s stored %d new entries", dn.Name, now-entries)
	}

	// Undrained, it owns its share again, the same keys as before.
	if err := dn.Cluster.SetDraining(false); err != nil {
		t.Fatal(err)
	}
	for _, i := range reg.Live() {
		n := reg.Node(i).Cluster
		poll.Until(t, cdntest.ConvergeTimeout, n.Name()+"'s ring has "+dn.Name+" back", func() bool {
			return n.Ring().Share(dn.Name) > 0
		})
	}
	back := reg.Node(0).Cluster.Ring()
	for _, p := range back.Peers() {
		if p.Draining {
			t.Errorf("%s still draining after SetDraining(false)", p.Name)
		}
	}
	if !samePlacement(before, back) {
		t.Error("undrained, the ring places keys otherwise than before the drain")
	}
}

// samePlacement reports whether two rings own a sample of keys alike.
func samePlacement(a, b *ring.Ring) bool {
	for k := range 5000 {
		kk := fmt.Sprintf("sample/%d", k)
		p, _ := a.Owner(kk)
		q, _ := b.Owner(kk)
		if p.Name != q.Name {
			return false
		}
	}
	return true
}

// TestSetDrainingAloneAndAfterClose: a lone member drains in name only
// (its keys have nowhere else to go); after Close SetDraining is refused.
func TestSetDrainingAloneAndAfterClose(t *testing.T) {
	o := cdntest.StartOrigin(t)
	reg := cdntest.StartRegion(t, o, cdntest.RegionOptions{Nodes: 1})
	n := reg.Node(0).Cluster
	if err := n.SetDraining(true); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, cdntest.ConvergeTimeout, "the lone member drains", func() bool {
		m := n.Members()
		return len(m) == 1 && m[0].Draining && n.Ring().Len() == 1
	})
	if !n.Draining() {
		t.Error("Draining() = false after SetDraining(true)")
	}
	// The only member drains in name only: the keys have nowhere else to
	// go (ring.TestDrainAll).
	if share := n.Ring().Share(n.Name()); share != 1 {
		t.Errorf("the lone draining member owns %.3f, want all", share)
	}
	reg.Kill(0)
	if err := n.SetDraining(false); err == nil {
		t.Error("SetDraining after Close: no error")
	}
}
