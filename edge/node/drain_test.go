package node_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/cluster"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/cdntest"
	"github.com/meridiancdn/meridian/internal/poll"
)

// TestReloadDrains: cluster.draining is applied by a reload (SIGHUP), as
// an operator drains a running edge before maintenance: every member's
// ring gives the edge's keys to the others, the edge keeps answering what
// it holds (and the new owner takes its copy rather than the origin's),
// /status shows it draining; a reload back undrains it. Other cluster
// settings still need a restart, and say so.
func TestReloadDrains(t *testing.T) {
	o := cdntest.StartOrigin(t)
	var mu sync.Mutex
	cfgs := map[int]node.Config{}
	reg := cdntest.StartRegion(t, o, cdntest.RegionOptions{Config: func(i int, c *node.Config) {
		c.Cache.HotBytes = 1                 // no hot copies: the ring alone decides who stores
		c.Cluster.Preset = cluster.PresetLAN // nobody fails here
		mu.Lock()
		cfgs[i] = *c
		mu.Unlock()
	}})
	reg.WaitConverged(cdntest.ConvergeTimeout)
	const drained = 1
	dn := reg.Node(drained)
	withDraining := func(on bool, more func(*cluster.Config)) node.Config {
		mu.Lock()
		c := cfgs[drained]
		mu.Unlock()
		cc := *c.Cluster
		cc.Draining = on
		if more != nil {
			more(&cc)
		}
		c.Cluster = &cc
		return c
	}

	// Keys the edge owns, filled through another member: stored on it.
	var owned []string
	for k := 0; len(owned) < 10; k++ {
		target := fmt.Sprintf("/reload-drain/%d?cc=max-age%%3D600", k)
		if p, _ := dn.Cluster.Owner(cdntest.SiteHost + target); p.Name != dn.Name {
			continue
		}
		owned = append(owned, target)
		if resp, _, err := reg.Get(0, target); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", target, resp, err)
		}
	}
	poll.Until(t, 10*time.Second, dn.Name+" stores its keys", func() bool {
		entries, _, _ := dn.Edge.StoreStats()
		return entries == len(owned)
	})

	if code, _ := publicHealth(t, dn.Node); code != 200 {
		t.Fatalf("%s's public /healthz before the drain: %d", dn.Name, code)
	}
	rep, err := dn.Node.Reload(withDraining(true, nil))
	if err != nil {
		t.Fatal(err)
	}
	// Steering probes the public /healthz: it sends new clients to the
	// other members while this one drains.
	if code, body := publicHealth(t, dn.Node); code != http.StatusServiceUnavailable || body != "draining\n" {
		t.Fatalf("%s's public /healthz while draining: %d %q", dn.Name, code, body)
	}
	if code, _ := publicHealth(t, reg.Node(0).Node); code != 200 {
		t.Fatalf("a member that is not draining: public /healthz %d", code)
	}
	if !slices.Contains(rep.Applied, "cluster.draining") || len(rep.NeedsRestart) != 0 {
		t.Fatalf("reload report: %s; want cluster.draining applied and nothing needing a restart", rep)
	}
	for _, i := range reg.Live() {
		n := reg.Node(i).Cluster
		poll.Until(t, cdntest.ConvergeTimeout, n.Name()+"'s ring has "+dn.Name+" draining", func() bool {
			return n.Ring().Len() == 3 && n.Ring().Share(dn.Name) == 0
		})
	}
	for _, target := range owned {
		// The draining edge answers what it holds from its cache...
		resp, _, err := reg.Get(drained, target)
		if err != nil || resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Status"), dn.Name+"; hit") {
			t.Fatalf("GET %s via the draining %s: %v %v", target, dn.Name, resp, err)
		}
		// ...and the key's new owner takes its copy.
		if p, _ := reg.Node(0).Cluster.Owner(cdntest.SiteHost + target); p.Name == dn.Name {
			t.Fatalf("%s still owned by the draining %s", target, dn.Name)
		}
		if resp, _, err := reg.Get(0, target); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s after the drain: %v %v", target, resp, err)
		}
		if n := o.RequestsFor(target); n != 1 {
			t.Errorf("%s: origin saw it %d times, want 1 (the drained edge's copy)", target, n)
		}
	}
	if got := statusMembers(t, dn.Node); !got[dn.Name] || got[reg.Node(0).Name] {
		t.Errorf("/status members draining: %v, want %s only", got, dn.Name)
	}

	// Undrained by a reload that also changes a setting that needs a
	// restart: the drain is applied, the other setting reported.
	rep, err = dn.Node.Reload(withDraining(false, func(c *cluster.Config) { c.PeerTimeout = 3 * time.Second }))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(rep.Applied, "cluster.draining") || !slices.Equal(rep.NeedsRestart, []string{"cluster"}) {
		t.Fatalf("reload report: %s; want cluster.draining applied and cluster needing a restart", rep)
	}
	for _, i := range reg.Live() {
		n := reg.Node(i).Cluster
		poll.Until(t, cdntest.ConvergeTimeout, n.Name()+"'s ring has "+dn.Name+" back", func() bool {
			return n.Ring().Share(dn.Name) > 0.25
		})
	}
	if code, _ := publicHealth(t, dn.Node); code != 200 {
		t.Fatalf("%s's public /healthz after the drain: %d", dn.Name, code)
	}
	// The same config again changes nothing.
	if rep, err = dn.Node.Reload(withDraining(false, nil)); err != nil || len(rep.Applied) != 0 || len(rep.NeedsRestart) != 0 {
		t.Fatalf("reload of the running config: %s, %v", rep, err)
	}
}

// statusMembers returns /status's members of n, by name: whether each is
// draining.
func statusMembers(t *testing.T, n *node.Node) map[string]bool {
	t.Helper()
	resp, err := newClient(t).Get("http://" + n.AdminAddr() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Members []struct {
			Name     string `json:"name"`
			Draining bool   `json:"draining"`
		} `json:"members"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range st.Members {
		out[m.Name] = m.Draining
	}
	return out
}
