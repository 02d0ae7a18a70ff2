package node

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/cluster"
	"github.com/meridiancdn/meridian/edge/fill"
	"github.com/meridiancdn/meridian/ring"
)

// Plan is where each site's misses go under one config: the upstream
// chain, built and checked once per config (at start and on each reload)
// rather than while the sites are being wired, so that a chain that
// cannot be built refuses the config instead of being left out. A fill
// goes, in order:
//
//  1. to the key's owner among the region's members (with a cluster;
//     the owner and its replicas keep the object);
//  2. when this node owns the key: to the owner of the key in each shield
//     region in turn (the shield regions the site lists before this
//     node's region), then, when allowed, to the origin;
//  3. to the site's origin pool;
//  4. only when that path failed (no shield answered, no connection to
//     the origin): to the owner of the key in each other region, nearest
//     first (the failover order).
//
// Each region's ring is built once per plan and shared by every site, and
// kept across reloads while the region's edges are unchanged. A Plan is
// immutable once built.
type Plan struct {
	// Generation counts the configs this node has applied: 1 at start,
	// one more for each reload applied. 0 for a plan not applied.
	Generation uint64 `json:"generation"`
	// Node and Region are this node's name and region.
	Node   string `json:"node"`
	Region string `json:"region"`
	// Cluster reports whether the node fills from its region's members.
	Cluster bool `json:"cluster"`
	// Replicas is how many members keep each object (0 outside a
	// cluster).
	Replicas int `json:"replicas,omitempty"`
	// Sites are the sites' chains, in config order.
	Sites []SitePlan `json:"sites"`
	// Rings are the other regions' rings the chains use, by name.
	Rings []RingPlan `json:"rings,omitempty"`

	regions map[string]*regionRing // by region name, shared by every site
}

// SitePlan is one site's upstream chain.
type SitePlan struct {
	// Hosts are the site's hosts.
	Hosts []string `json:"hosts"`
	// Shield are the shield regions asked, in order, when this node owns
	// a key: the site's shield regions listed before this node's region.
	Shield []string `json:"shield,omitempty"`
	// IsShield reports that this node's region is one of the site's
	// shields: the shields listed after it are not asked, and it fills
	// from the origin for the regions behind it.
	IsShield bool `json:"is_shield,omitempty"`
	// Direct reports whether the origin is asked when no shield answers
	// (always true without shields).
	Direct bool `json:"direct"`
	// Origin is the site's origin pool.
	Origin OriginPlan `json:"origin"`
	// Failover are the regions asked, nearest first, when the path to the
	// origin failed.
	Failover []string `json:"failover,omitempty"`

	shield   cluster.ShieldOptions
	failover []cluster.ShieldRegion
}

// OriginPlan is a site's origin pool.
type OriginPlan struct {
	// Pool is the pool's name (its metrics label).
	Pool string `json:"pool"`
	// Servers are its servers' URLs.
	Servers []string `json:"servers"`
}

// RingPlan is a region's ring as the plan uses it.
type RingPlan struct {
	// Region is the region's name.
	Region string `json:"region"`
	// Edges are its edges' names, in config order.
	Edges []string `json:"edges"`
	// Reused reports that the ring was taken over from the previous plan
	// (the region's edges, zones and weights did not change).
	Reused bool `json:"reused"`
}

// regionRing is a region's published edges and the ring built of them.
type regionRing struct {
	key    string // what the ring depends on: sorted names, zones, weights
	ring   *ring.Ring
	reused bool
}

// BuildPlan validates cfg and builds its plan. The rings of prev (the
// running plan, or nil) are reused for regions whose edges did not change;
// a region whose edges make no ring is an error naming it.
func BuildPlan(cfg Config, prev *Plan) (*Plan, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Plan{Node: cfg.Name, Region: cfg.Region, Cluster: cfg.Cluster != nil, regions: map[string]*regionRing{}}
	if cfg.Cluster != nil {
		p.Replicas = cfg.Cluster.Replicas
	}
	// ringOf builds (or takes over) region r's ring once for every site.
	ringOf := func(i int, r RegionConfig) (cluster.ShieldRegion, error) {
		sr := r.published()
		rr, ok := p.regions[r.Name]
		if !ok {
			rr = &regionRing{key: ringKey(sr.Peers)}
			if old := prev.regionRing(r.Name); old != nil && old.key == rr.key {
				rr.ring, rr.reused = old.ring, true
			} else {
				rg, err := ring.New(sr.Peers)
				if err != nil {
					return sr, fmt.Errorf("regions[%d].edges: %w", i, err)
				}
				rr.ring = rg
			}
			p.regions[r.Name] = rr
			rp := RingPlan{Region: r.Name, Reused: rr.reused}
			for _, e := range r.Edges {
				rp.Edges = append(rp.Edges, e.Name)
			}
			p.Rings = append(p.Rings, rp)
		}
		sr.Ring = rr.ring
		return sr, nil
	}
	index := make(map[string]int, len(cfg.Regions))
	for i, r := range cfg.Regions {
		index[r.Name] = i
	}
	var failover []cluster.ShieldRegion
	if cfg.Cluster != nil {
		for _, r := range cfg.failoverRegions() {
			sr, err := ringOf(index[r.Name], r)
			if err != nil {
				return nil, err
			}
			failover = append(failover, sr)
		}
	}
	for _, sc := range cfg.Sites {
		sp := SitePlan{
			Hosts:  slices.Clone(sc.Hosts),
			Direct: sc.Shield.DirectAllowed(),
			Origin: OriginPlan{Pool: sc.Pool.Name},
		}
		for _, s := range sc.Pool.Servers {
			sp.Origin.Servers = append(sp.Origin.Servers, s.URL)
		}
		if cfg.Cluster != nil {
			sp.shield = cluster.ShieldOptions{Direct: sp.Direct}
			for _, name := range sc.Shield.Regions {
				if name == cfg.Region {
					sp.IsShield = true
					break
				}
				i := index[name]
				sr, err := ringOf(i, cfg.Regions[i])
				if err != nil {
					return nil, err
				}
				sp.shield.Regions = append(sp.shield.Regions, sr)
				sp.Shield = append(sp.Shield, name)
			}
			sp.failover = failover
			for _, sr := range failover {
				sp.Failover = append(sp.Failover, sr.Name)
			}
		}
		if len(sp.Shield) == 0 {
			sp.Direct = true
		}
		p.Sites = append(p.Sites, sp)
	}
	return p, nil
}

// ringKey is what a ring of peers depends on (names, weights, and zones
// for replicas), in a canonical order: two peer lists of one key build the
// same ring.
func ringKey(peers []ring.Peer) string {
	ps := slices.Clone(peers)
	slices.SortFunc(ps, func(a, b ring.Peer) int { return cmp.Compare(a.Name, b.Name) })
	var b strings.Builder
	for _, p := range ps {
		w := p.Weight
		if w == 0 {
			w = 1
		}
		fmt.Fprintf(&b, "%q %q %d\n", p.Name, p.Zone, w)
	}
	return b.String()
}

func (p *Plan) regionRing(name string) *regionRing {
	if p == nil {
		return nil
	}
	return p.regions[name]
}

// site returns the plan of the site whose first host is host.
func (p *Plan) site(sc edge.SiteConfig) (*SitePlan, bool) {
	for i := range p.Sites {
		if len(sc.Hosts) > 0 && len(p.Sites[i].Hosts) > 0 && strings.EqualFold(p.Sites[i].Hosts[0], sc.Hosts[0]) {
			return &p.Sites[i], true
		}
	}
	return nil, false
}

// wrap puts a site's chain around its origin pool: the shield under the
// failover under the region's peer transport.
func (sp *SitePlan) wrap(cn *cluster.Member, hooks cluster.ShieldOptions, up fill.Upstream) (fill.Upstream, error) {
	if len(sp.shield.Regions) > 0 {
		so := sp.shield
		so.OnFallback, so.OnAnswer = hooks.OnFallback, hooks.OnAnswer
		shield, err := cn.Shield(so, up)
		if err != nil {
			return nil, err
		}
		up = shield
	}
	if len(sp.failover) > 0 {
		failover, err := cn.Failover(sp.failover, up)
		if err != nil {
			return nil, err
		}
		up = failover
	}
	return cn.Transport(up), nil
}

// Explain writes the plan for an operator: one block per site, the hops
// of a fill in the order they are tried.
func (p *Plan) Explain(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s in region %s", p.Node, p.Region)
	if p.Generation > 0 {
		fmt.Fprintf(&b, ", config generation %d", p.Generation)
	}
	b.WriteString("\n")
	for _, sp := range p.Sites {
		fmt.Fprintf(&b, "site %s\n", strings.Join(sp.Hosts, ", "))
		step := 0
		hop := func(format string, args ...any) {
			step++
			fmt.Fprintf(&b, "  %d. %s\n", step, fmt.Sprintf(format, args...))
		}
		if p.Cluster {
			hop("owner: the key's owner on region %s's ring of members (%d kept per object); the owner goes on", p.Region, p.Replicas)
		} else {
			hop("owner: this node (no cluster)")
		}
		switch {
		case len(sp.Shield) > 0:
			direct := "then the origin"
			if !sp.Direct {
				direct = "never the origin directly (direct: false)"
			}
			hop("shield: the key's owner in region %s; %s", strings.Join(sp.Shield, ", then in "), direct)
		case sp.IsShield:
			hop("shield: none; region %s is this site's shield and fills from the origin", p.Region)
		}
		hop("origin: pool %s: %s", sp.Origin.Pool, strings.Join(sp.Origin.Servers, ", "))
		if len(sp.Failover) > 0 {
			hop("failover, only when the path to the origin failed: the key's owner in region %s", strings.Join(sp.Failover, ", then in "))
		}
	}
	for _, r := range p.Rings {
		reused := ""
		if r.Reused {
			reused = " (unchanged, kept)"
		}
		fmt.Fprintf(&b, "ring %s: %s%s\n", r.Region, strings.Join(r.Edges, ", "), reused)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
