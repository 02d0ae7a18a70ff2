package cdntest

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
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
	// first starts, once everything else is set (a restart keeps the
	// config last applied).
	Config func(region string, i int, c *node.Config)
	// PeerAddr, if set, is the address at which the edges of region
	// l.From are told, by their regions table, to reach edge l.Edge's
	// peer endpoint (the way to the shield and to failover regions), in
	// place of l.Addr, where it listens: a test interposes a proxy on
	// each link with it. It is called once per region and edge (the
	// region's own edges included) before any edge starts. Nil: l.Addr.
	PeerAddr func(l PeerLink) string
	// Logger receives every node's logs. Nil keeps those at Info and
	// above, and prints them if the test fails.
	Logger *slog.Logger
}

// PeerLink is the way from the edges of one region to one edge's peer
// endpoint, as a regions table names it.
type PeerLink struct {
	// From is the region whose edges dial.
	From string
	// Region and Edge name the edge dialled.
	Region, Edge string
	// Addr is where that edge's peer endpoint listens.
	Addr string
}

// CDN is several regions of clustered edges in front of one origin,
// each edge started through node.Start. Every edge's gossip and peer
// addresses are chosen before any edge starts, so that each edge's first
// config names all the others in its regions table, with the site's
// shield, as a deployment's config does; they are kept across restarts,
// as a host's are. Edge i of region r is named r-(i+1), "eu-1".
type CDN struct {
	t       testing.TB
	names   []string
	regions map[string]*Region
}

// startAttempts bounds how many times StartCDN picks ports and starts
// the edges: another test process may bind a port picked here before
// its edge does.
const startAttempts = 3

// StartCDN starts every edge of every region at once, with its regions
// table and the site's shield, and waits until each region has
// converged. The test's Cleanup stops every edge.
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
	if opts.Logger == nil {
		opts.Logger = logOnFailure(t)
	}
	for attempt := 1; ; attempt++ {
		c, err := startCDN(t, o, opts)
		if err == nil {
			c.WaitConverged()
			return c
		}
		if attempt == startAttempts {
			t.Fatalf("cdntest: %v", err)
		}
		t.Logf("cdntest: %v; starting again on other ports", err)
	}
}

// startCDN picks the addresses, builds every edge's config and starts
// every edge at once. If one fails to start it stops the others.
func startCDN(t testing.TB, o *Origin, opts CDNOptions) (*CDN, error) {
	type addrs struct{ gossip, peer string }
	ports := freePorts(t, 2*len(opts.Regions)*opts.Nodes)
	at := map[string][]addrs{}
	for _, r := range opts.Regions {
		for range opts.Nodes {
			at[r] = append(at[r], addrs{
				gossip: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
				peer:   net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])),
			})
			ports = ports[2:]
		}
	}
	// The regions table each region's edges are given.
	tables := map[string][]node.RegionConfig{}
	for _, from := range opts.Regions {
		for _, r := range opts.Regions {
			rc := node.RegionConfig{Name: r}
			for i, a := range at[r] {
				l := PeerLink{From: from, Region: r, Edge: nodeName(r+"-", i), Addr: a.peer}
				peer := l.Addr
				if opts.PeerAddr != nil {
					peer = opts.PeerAddr(l)
				}
				rc.Edges = append(rc.Edges, node.EdgeRef{Name: l.Edge, Peer: peer})
			}
			tables[from] = append(tables[from], rc)
		}
	}
	direct := !opts.NoDirect
	c := &CDN{t: t, names: opts.Regions, regions: map[string]*Region{}}
	type edgeStart struct {
		r   *Region
		cfg node.Config
		n   *Node
		err error
	}
	var edges []*edgeStart
	for _, name := range opts.Regions {
		r := newRegion(t, o, RegionOptions{
			Nodes:  opts.Nodes,
			Prefix: name + "-",
			Logger: opts.Logger,
			Config: func(i int, cfg *node.Config) {
				cfg.Region = name
				cfg.Cluster.GossipListen = at[name][i].gossip
				cfg.Cluster.PeerListen = at[name][i].peer
				cfg.Regions = cloneRegions(tables[name]) // each edge's own
				cfg.Sites[0].Shield = edge.ShieldConfig{Regions: opts.Shield, Direct: &direct}
				if opts.Config != nil {
					opts.Config(name, i, cfg)
				}
			},
		})
		r.fixed = true
		c.regions[name] = r
		var seeds []string // the first edge is the others' only seed, as in StartRegion
		for i := range opts.Nodes {
			edges = append(edges, &edgeStart{r: r, cfg: r.config(i, seeds)})
			seeds = []string{at[name][0].gossip}
		}
	}
	// All at once: the seeds' joins are retried, and a region whose
	// members arrive together builds fewer rings.
	var wg sync.WaitGroup
	for _, e := range edges {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.n, e.err = e.r.startNode(e.cfg)
		}()
	}
	wg.Wait()
	var failed error
	for _, e := range edges {
		if e.err != nil {
			failed = fmt.Errorf("start %s: %w", e.cfg.Name, e.err)
		}
	}
	if failed != nil {
		for _, e := range edges {
			if e.n != nil {
				e.n.stop()
			}
		}
		return nil, failed
	}
	for _, e := range edges { // region by region, in order
		e.r.nodes = append(e.r.nodes, e.n)
	}
	return c, nil
}

// freePorts returns n distinct ports on 127.0.0.1, each free a moment ago
// for both TCP and UDP (memberlist binds both), below Linux's ephemeral
// range (32768-60999), so that no outgoing connection takes one before
// its edge binds it, when it starts or while it is down for a restart.
// Another test process may still pick and bind one first: StartCDN
// starts again on other ports when an edge cannot.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var out []int
	taken := map[int]bool{}
	for tries := 0; len(out) < n; tries++ {
		if tries == 100*n {
			t.Fatal("cdntest: no free port")
		}
		port := 20000 + rand.IntN(12000)
		if taken[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		taken[port] = true
		out = append(out, port)
	}
	return out
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

// WatchRings is Region.WatchRings for every node of the CDN live now.
func (c *CDN) WatchRings() (stop func() map[string][]int) {
	return watchRings(c.Nodes())
}
