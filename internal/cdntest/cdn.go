package cdntest

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/poll"
)

// CDNOptions shape a CDN. The zero value is two regions, eu and us, of
// two nodes each, no shield, direct fills allowed.
type CDNOptions struct {
	// Regions are the regions' names, in the order of the regions
	// table. Default eu, us.
	Regions []string
	// Nodes is how many edges each region has. Default 2.
	Nodes int
	// Shield is the site's origin shield regions. Default none.
	Shield []string
	// NoDirect forbids fills straight from the origin when no shield
	// answers (shield.direct: false).
	NoDirect bool
	// Config, if set, adjusts edge i of a region's config before it
	// starts (a restart keeps the config last applied instead).
	Config func(region string, i int, c *node.Config)
	// Logger receives every node's logs. Nil discards them.
	Logger *slog.Logger
}

// CDN is several regions of clustered edges in front of one origin,
// each edge started through node.Start. Once every region has converged
// the regions table (each edge's name and peer address) and the site's
// shield are published to every edge by node.Node.Reload, as an operator
// rolls out a config that names edges whose addresses are known only
// once they run. Edge i of region r is named r-(i+1), "eu-1".
type CDN struct {
	t       testing.TB
	names   []string
	regions map[string]*Region
}

// StartCDN starts the regions, waits until each has converged, and
// publishes the regions table and the shield to every edge. The test's
// Cleanup stops every edge.
// As with StartRegion, o may be nil when opts.Config sets the site's
// origin.
func StartCDN(t testing.TB, o *Origin, opts CDNOptions) *CDN {
	t.Helper()
	if len(opts.Regions) == 0 {
		opts.Regions = []string{"eu", "us"}
	}
	if opts.Nodes == 0 {
		opts.Nodes = 2
	}
	c := &CDN{t: t, names: opts.Regions, regions: map[string]*Region{}}
	for _, name := range opts.Regions {
		r := StartRegion(t, o, RegionOptions{
			Nodes:  opts.Nodes,
			Prefix: name + "-",
			Logger: opts.Logger,
			Config: func(i int, cfg *node.Config) {
				cfg.Region = name
				if opts.Config != nil {
					opts.Config(name, i, cfg)
				}
			},
		})
		r.keep = true
		c.regions[name] = r
	}
	c.WaitConverged()
	var table []node.RegionConfig
	for _, name := range opts.Regions {
		rc := node.RegionConfig{Name: name}
		for _, n := range c.Region(name).nodes { // all live: none is stopped yet
			rc.Edges = append(rc.Edges, node.EdgeRef{Name: n.Cluster.Name(), Peer: n.Cluster.PeerAddr()})
		}
		table = append(table, rc)
	}
	direct := !opts.NoDirect
	for _, n := range c.Nodes() {
		cfg := n.Config()
		cfg.Regions = table
		cfg.Sites[0].Shield = edge.ShieldConfig{Regions: opts.Shield, Direct: &direct}
		if _, err := n.Reload(cfg); err != nil {
			t.Fatalf("cdntest: publish the regions table to %s: %v", n.Name, err)
		}
	}
	return c
}

// Region returns the region called name.
func (c *CDN) Region(name string) *Region {
	c.t.Helper()
	r := c.regions[name]
	if r == nil {
		c.t.Fatalf("cdntest: no region %q", name)
	}
	return r
}

// Nodes returns every live node, region by region in the order of
// CDNOptions.Regions.
func (c *CDN) Nodes() []*Node {
	var out []*Node
	for _, name := range c.names {
		r := c.regions[name]
		for _, i := range r.Live() {
			out = append(out, r.Node(i))
		}
	}
	return out
}

// WaitConverged waits until, in every region, every live node's ring
// holds exactly the region's live nodes, and has for ConvergedFor; it
// fails the test after ConvergeTimeout.
func (c *CDN) WaitConverged() {
	c.t.Helper()
	poll.Steady(c.t, ConvergeTimeout, ConvergedFor, fmt.Sprintf("every ring of regions %v holds exactly its region's live nodes", c.names), func() bool {
		for _, r := range c.regions {
			if !r.converged() {
				return false
			}
		}
		return true
	})
}
