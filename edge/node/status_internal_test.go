package node

import (
	"testing"
	"time"

	"github.com/meridiancdn/meridian/internal/fakeclock"
)

// The config hash is the same for the same config, different for another,
// and leaves the secrets out: two nodes of one config with different
// tokens show one hash, and the hash tells nothing of a token.
func TestConfigHash(t *testing.T) {
	base := planConfig()
	h := ConfigHash(base)
	if len(h) != 12 || h != ConfigHash(planConfig()) || h != ConfigHash(base.WithDefaults()) {
		t.Fatalf("hash %q, again %q, with defaults %q", h, ConfigHash(planConfig()), ConfigHash(base.WithDefaults()))
	}
	secrets := planConfig()
	secrets.Admin.Token, secrets.Admin.ReadToken = "admin-token", "read-token"
	secrets.Cluster.Secret = "another-secret-0123456789"
	secrets.Sites[0].PurgeToken = "site-token"
	if got := ConfigHash(secrets); got != h {
		t.Errorf("secrets changed the hash: %q, was %q", got, h)
	}
	for name, change := range map[string]func(*Config){
		"a site's origin": func(c *Config) { c.Sites[0].Origin = "http://127.0.0.1:9" },
		"a region's edge": func(c *Config) { c.Regions[1].Edges[0].Peer = "127.0.0.1:99" },
		"the cache size":  func(c *Config) { c.Cache.MaxBytes = 1 << 30 },
		"a duration":      func(c *Config) { c.Sites[2].DefaultTTL = time.Minute },
	} {
		c := planConfig()
		change(&c)
		if got := ConfigHash(c); got == h || got == "" {
			t.Errorf("%s changed, hash %q (was %q)", name, got, h)
		}
	}
}

// A shield region is reachable while its last fill was answered,
// unreachable once passed over (or while all its edges are), unknown
// before any fill; the next fill goes to the first one not unreachable.
func TestShieldsStatus(t *testing.T) {
	clock := fakeclock.New()
	n := &Node{shields: &shieldTracker{now: clock.Now, regions: map[string]*shieldSeen{}}}
	cfg := planConfig().WithDefaults()
	cfg.Region = "ap"
	plan, err := BuildPlan(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	regions := n.regionsStatus(cfg, plan)
	active := func() []string {
		var out []string
		for _, s := range n.shieldsStatus(plan, regions) {
			out = append(out, s.Active)
		}
		return out
	}
	// Sites: a (us, eu), b (us), c (eu, us).
	if got := active(); got[0] != "us" || got[1] != "us" || got[2] != "eu" {
		t.Fatalf("before any fill: %v", got)
	}
	n.shields.passedOver("us")
	clock.Advance(time.Second)
	if got := active(); got[0] != "eu" || got[1] != "origin" || got[2] != "eu" {
		t.Fatalf("us passed over: %v", got)
	}
	n.shields.answered("us") // us answers again
	if got := active(); got[0] != "us" || got[1] != "us" {
		t.Fatalf("us answered again: %v", got)
	}
	st := n.shieldsStatus(plan, regions)[0].Regions[0]
	if st.Name != "us" || st.State != "reachable" || st.Answers != 1 || st.Fallbacks != 1 ||
		!st.LastAnswer.Equal(clock.Now()) || !st.LastFallback.Equal(clock.Now().Add(-time.Second)) {
		t.Fatalf("us: %+v", st)
	}
	// Without direct fills, no shield reachable means no fill at all.
	no := false
	cfg.Sites[1].Shield.Direct = &no
	if plan, err = BuildPlan(cfg, nil); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	n.shields.passedOver("us")
	if got := n.shieldsStatus(plan, regions)[1].Active; got != "none" {
		t.Fatalf("b with us unreachable and no direct fills: %q", got)
	}
	// Every edge of a region down: unreachable whatever it last answered.
	clock.Advance(time.Second)
	n.shields.answered("us")
	regions[2].EdgesUp = 0 // ... of us (regions: ap (self), eu, us)
	if regions[2].Name != "us" {
		t.Fatalf("regions order: %+v", regions)
	}
	if got := n.shieldsStatus(plan, regions)[1].Regions[0].State; got != "unreachable" {
		t.Fatalf("us with no edge up: %q", got)
	}
}
