package chaos

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/cluster"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/cdntest"
	"github.com/meridiancdn/meridian/internal/poll"
	"github.com/meridiancdn/meridian/ring"
)

// SiteHost is the Host every edge started here serves.
const SiteHost = "site.test"

// secret is the peer-signing secret the whole CDN shares.
const secret = "chaos-cdn-secret-0123456789abcdef"

// Options shape a CDN. The zero value is three regions of three edges,
// no shield, one replica.
type Options struct {
	// Regions are the regions' names. Default r1, r2, r3.
	Regions []string
	// Edges is how many edges each region has. Default 3.
	Edges int
	// Shield is the site's origin shield regions. Default none.
	Shield []string
	// NoDirect forbids fills straight from the origin when no shield
	// answers (shield.direct: false).
	NoDirect bool
	// Replicas is cluster.replicas. Default 1.
	Replicas int
	// PeerTimeout is cluster.peer_timeout. Default 500ms.
	PeerTimeout time.Duration
	// SiteTimeout is the site's timeout (the wait for an upstream
	// header). Default 10s.
	SiteTimeout time.Duration
	// SeedAll gives every edge every edge of its region as a seed (as
	// `meridian up` does); otherwise the first edge is the others' only
	// seed and has none itself (as `meridian up` did before).
	SeedAll bool
	// Edit, if set, adjusts edge i of a region's config before it starts
	// (and restarts).
	Edit func(region string, i int, c *node.Config)
	// Logger receives every node's logs. Nil keeps those at Info and
	// above, and prints them if the test fails.
	Logger *slog.Logger
}

// CDN is regions of clustered edges in front of one origin, started
// through node.Start. Each edge keeps its gossip and peer ports across
// restarts (as a real host does). The regions table each region's edges
// are given publishes every edge's peer endpoint through a Proxy of that
// region's own (Link), so that a test can delay, drop or cut the links
// from one region to another.
type CDN struct {
	t      testing.TB
	origin *Origin
	opts   Options
	client *http.Client
	links  map[[2]string]*Proxy // (from region, to edge) → proxy

	mu    sync.Mutex
	edges map[string][]*Edge // by region
}

// Edge is one edge of the CDN.
type Edge struct {
	// Region and Name name it ("r1", "r1-1"); Index is its place in the
	// region, from 0.
	Region, Name string
	Index        int
	// Gossip is its fixed gossip address; Peer its peer endpoint's.
	Gossip, Peer string

	cfg  node.Config
	node *node.Node // nil while stopped
}

// Start starts the CDN and waits until every region's members see each
// other; the test's Cleanup stops it.
func Start(t testing.TB, o *Origin, opts Options) *CDN {
	t.Helper()
	if len(opts.Regions) == 0 {
		opts.Regions = []string{"r1", "r2", "r3"}
	}
	if opts.Edges == 0 {
		opts.Edges = 3
	}
	if opts.PeerTimeout == 0 {
		opts.PeerTimeout = 500 * time.Millisecond
	}
	if opts.SiteTimeout == 0 {
		opts.SiteTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = logOnFailure(t)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	c := &CDN{t: t, origin: o, opts: opts, edges: map[string][]*Edge{}, links: map[[2]string]*Proxy{},
		client: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
	t.Cleanup(func() {
		c.Close()
		tr.CloseIdleConnections()
	})

	// Ports first, so that every config can name every edge.
	for _, r := range opts.Regions {
		for i := range opts.Edges {
			c.edges[r] = append(c.edges[r], &Edge{Region: r, Name: fmt.Sprintf("%s-%d", r, i+1), Index: i,
				Gossip: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))),
				Peer:   net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))})
		}
	}
	// Each region's table reaches every edge through that region's links.
	tables := map[string][]node.RegionConfig{}
	for _, from := range opts.Regions {
		for _, r := range opts.Regions {
			rc := node.RegionConfig{Name: r}
			for _, e := range c.edges[r] {
				p := StartProxy(t, e.Peer)
				c.links[[2]string{from, e.Name}] = p
				rc.Edges = append(rc.Edges, node.EdgeRef{Name: e.Name, Peer: p.Addr()})
			}
			tables[from] = append(tables[from], rc)
		}
	}
	direct := !opts.NoDirect
	for _, r := range opts.Regions {
		for i, e := range c.edges[r] {
			var seeds []string
			for j, o := range c.edges[r] {
				if opts.SeedAll || i > 0 && j == 0 {
					seeds = append(seeds, o.Gossip)
				}
			}
			e.cfg = node.Config{
				Config: edge.Config{
					AccessLog: edge.AccessLogConfig{Destination: "off"},
					Name:      e.Name,
					Listen:    "127.0.0.1:0",
					Server:    edge.ServerConfig{ShutdownTimeout: 2 * time.Second},
					Sites: []edge.SiteConfig{{
						Hosts:   []string{SiteHost},
						Origin:  o.URL,
						Timeout: opts.SiteTimeout,
						Shield:  edge.ShieldConfig{Regions: opts.Shield, Direct: &direct},
					}},
				},
				Region: r,
				Admin:  node.AdminConfig{Listen: "127.0.0.1:0"},
				Cluster: &cluster.Config{
					GossipListen: e.Gossip,
					PeerListen:   e.Peer,
					Seeds:        seeds,
					Secret:       secret,
					Preset:       cluster.PresetLocal,
					PeerTimeout:  opts.PeerTimeout,
					Replicas:     opts.Replicas,
				},
				Regions: tables[r],
			}
			if opts.Edit != nil {
				opts.Edit(r, i, &e.cfg)
			}
		}
	}
	// All at once: the seeds' joins are retried, and a region whose
	// members arrive together builds fewer rings.
	var wg sync.WaitGroup
	errs := make(chan error, len(opts.Regions)*opts.Edges)
	for _, e := range c.Edges() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.start(e); err != nil {
				errs <- fmt.Errorf("chaos: start %s: %w", e.Name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c.WaitRegion("", cdntest.ConvergeTimeout)
	return c
}

func (c *CDN) start(e *Edge) error {
	n, err := node.Start(e.cfg, node.Options{Logger: c.opts.Logger.With("edge", e.Name)})
	if err != nil {
		return err
	}
	c.mu.Lock()
	e.node = n
	c.mu.Unlock()
	return nil
}

// Link returns the proxy through which the edges of region from reach
// edge to's peer endpoint (for the shield and failover).
func (c *CDN) Link(from, to string) *Proxy {
	p := c.links[[2]string{from, to}]
	if p == nil {
		c.t.Fatalf("chaos: no link from %s to %s", from, to)
	}
	return p
}

// SetLinks sets the links from region from to every edge of region to.
func (c *CDN) SetLinks(from, to string, l Link) {
	for _, e := range c.edges[to] {
		c.Link(from, e.Name).SetLink(l)
	}
}

// Edge returns edge i (0-based) of a region.
func (c *CDN) Edge(region string, i int) *Edge {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.edges[region][i]
}

// Node returns edge i of a region's running node; nil while it is stopped.
func (c *CDN) Node(region string, i int) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.edges[region][i].node
}

// Edges returns every edge, region by region.
func (c *CDN) Edges() []*Edge {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Edge
	for _, r := range c.opts.Regions {
		out = append(out, c.edges[r]...)
	}
	return out
}

// Kill stops edge i of a region abruptly, as if its machine died: its
// gossip stops without a goodbye and its peer connections close at once,
// then its listeners and cache.
func (c *CDN) Kill(region string, i int) {
	c.t.Helper()
	n := c.detach(region, i)
	if n == nil {
		return
	}
	n.Cluster().Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n.Shutdown(ctx)
}

// Stop stops edge i of a region gracefully: it leaves its region first.
func (c *CDN) Stop(region string, i int) {
	c.t.Helper()
	n := c.detach(region, i)
	if n == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n.Shutdown(ctx)
}

func (c *CDN) detach(region string, i int) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.edges[region][i]
	n := e.node
	e.node = nil
	return n
}

// Restart starts stopped edge i of a region again: the same config and
// ports, an empty cache.
func (c *CDN) Restart(region string, i int) {
	c.t.Helper()
	e := c.Edge(region, i)
	if c.Node(region, i) != nil {
		c.t.Fatalf("chaos: restart of %s, which runs", e.Name)
	}
	// The ports were just released; a moment's retry covers a socket
	// still closing.
	var err error
	for range 50 {
		if err = c.start(e); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("chaos: restart %s: %v", e.Name, err)
}

// Close stops every running edge. The test's Cleanup calls it.
func (c *CDN) Close() {
	var wg sync.WaitGroup
	for _, r := range c.opts.Regions {
		for i := range c.opts.Edges {
			if n := c.detach(r, i); n != nil {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					n.Shutdown(ctx)
				}()
			}
		}
	}
	wg.Wait()
}

// Views returns, for each running edge of a region, the members on its
// ring, sorted.
func (c *CDN) Views(region string) map[string][]string {
	out := map[string][]string{}
	for i := range c.opts.Edges {
		n := c.Node(region, i)
		if n == nil {
			continue
		}
		var names []string
		for _, p := range n.Cluster().Ring().Peers() {
			names = append(names, p.Name)
		}
		out[n.Cluster().Name()] = names
	}
	return out
}

// OneView reports whether every running edge of a region has exactly the
// running edges on its ring.
func (c *CDN) OneView(region string) bool {
	var want []string
	for i := range c.opts.Edges {
		if c.Node(region, i) != nil {
			want = append(want, c.Edge(region, i).Name)
		}
	}
	slices.Sort(want)
	for _, got := range c.Views(region) {
		if !slices.Equal(got, want) {
			return false
		}
	}
	return true
}

// WaitRegion waits until OneView holds for a region ("": every region),
// and has for a moment (longer than the local preset's suspicion, so that
// a member wrongly suspected on a busy machine is cleared or dropped
// first); it fails the test after timeout.
func (c *CDN) WaitRegion(region string, timeout time.Duration) {
	c.t.Helper()
	regions := []string{region}
	if region == "" {
		regions = c.opts.Regions
	}
	one := func() bool {
		for _, r := range regions {
			if !c.OneView(r) {
				return false
			}
		}
		return true
	}
	poll.Steady(c.t, timeout, cdntest.ConvergedFor, fmt.Sprintf("regions %v have one view of their running edges", regions), one)
}

// WatchRings watches, until the returned func is called, whether the
// ring of any edge running now changes; the func reports whether one did.
// A test that counts origin requests exactly can tell with it whether a
// membership change it did not cause (a member wrongly declared dead on a
// loaded machine, and back) happened while it measured.
func (c *CDN) WatchRings() (changed func() bool) {
	type watched struct {
		n    *node.Node
		ring *ring.Ring
	}
	var ws []watched
	for _, e := range c.Edges() {
		if n := c.Node(e.Region, e.Index); n != nil {
			ws = append(ws, watched{n, n.Cluster().Ring()})
		}
	}
	var moved atomic.Bool
	poll := func() {
		for _, w := range ws {
			if w.n.Cluster().Ring() != w.ring {
				moved.Store(true)
			}
		}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		// Ring builds follow a settle delay of 100ms: polling every
		// 10ms sees every one.
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				poll()
			}
		}
	}()
	var once sync.Once
	return func() bool {
		once.Do(func() {
			close(done)
			<-stopped
			poll()
		})
		return moved.Load()
	}
}

// Suspicions is how many times the running edges have passed over a peer
// as suspect (cluster.Member.Suspicions), summed.
func (c *CDN) Suspicions() uint64 {
	var sum uint64
	for _, e := range c.Edges() {
		if n := c.Node(e.Region, e.Index); n != nil {
			sum += n.Cluster().Suspicions()
		}
	}
	return sum
}

// WaitUnsuspected waits until no running edge passes over a peer as
// suspect (a suspicion lasts cluster.suspect_for).
func (c *CDN) WaitUnsuspected(timeout time.Duration) {
	c.t.Helper()
	poll.Until(c.t, timeout, "no edge suspects a peer", func() bool {
		for _, e := range c.Edges() {
			if n := c.Node(e.Region, e.Index); n != nil && len(n.Cluster().Suspects()) > 0 {
				return false
			}
		}
		return true
	})
}

// Get sends GET target (path and query) with Host SiteHost to edge i of
// a region, with the extra header fields kv (name, value, ...), and
// returns the response with its body read; err is set if the body broke.
func (c *CDN) Get(region string, i int, target string, kv ...string) (*http.Response, []byte, error) {
	n := c.Node(region, i)
	if n == nil {
		return nil, nil, fmt.Errorf("chaos: %s is stopped", c.Edge(region, i).Name)
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+n.HTTPAddr()+target, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Host = SiteHost
	for j := 0; j+1 < len(kv); j += 2 {
		req.Header.Add(kv[j], kv[j+1])
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// OwnerIn returns the index of the edge of a region that owns target on
// the ring of the region's edge from (or of the first running one when
// from < 0).
func (c *CDN) OwnerIn(region string, from int, target string) int {
	c.t.Helper()
	if from < 0 {
		for i := range c.opts.Edges {
			if c.Node(region, i) != nil {
				from = i
				break
			}
		}
	}
	p, ok := c.Node(region, from).Cluster().Owner(SiteHost + target)
	if !ok {
		c.t.Fatalf("chaos: %s has an empty ring", c.Edge(region, from).Name)
	}
	for i, e := range c.edges[region] {
		if e.Name == p.Name {
			return i
		}
	}
	c.t.Fatalf("chaos: owner %s is not in region %s", p.Name, region)
	return -1
}

// logOnFailure returns a logger whose lines (Info and above) the test
// prints if it fails.
func logOnFailure(t testing.TB) *slog.Logger {
	w := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of the CDN:\n%s", w.String())
		}
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
