// Package cdntest starts real edge nodes, regions and origins on loopback
// for tests: the one multi-node harness of the packages' tests. Every node
// is started by node.Start from its config, the wiring the binary uses, so
// a multi-node test runs the production assembly (upstream plan, peer
// endpoint, internal endpoints) rather than a copy of it. A Region is the
// clustered edges of one region; a CDN (StartCDN) is several regions told
// about each other by a regions table and the site's shield, each edge at
// addresses it keeps across restarts. A CDN's links between regions can
// be routed through a test's proxies (CDNOptions.PeerAddr): internal/chaos
// injects its faults there. Waits use internal/poll.
//
// Everything listens on 127.0.0.1, with port 0 but for a CDN's gossip and
// peer endpoints (ports picked before the edges start), and is stopped by
// the test's Cleanup. A typical test:
//
//	o := cdntest.StartOrigin(t)
//	reg := cdntest.StartRegion(t, o, cdntest.RegionOptions{Nodes: 3})
//	reg.WaitConverged(10 * time.Second)
//	resp, body, err := reg.Get(0, "/a?cc=max-age%3D600")
//	reg.Kill(1)
//	reg.Restart(1)
//
// and across regions, with the origin shield in eu:
//
//	c := cdntest.StartCDN(t, o, cdntest.CDNOptions{Regions: []string{"eu", "us"}, Shield: []string{"eu"}})
//	resp, body, err := c.Region("us").Get(0, "/a?cc=max-age%3D600")
//
// A test that needs its own origin passes a nil Origin and sets the site's
// origin in the Config hook.
package cdntest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/cluster"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/poll"
	"github.com/meridiancdn/meridian/origin"
	"github.com/meridiancdn/meridian/ring"
)

// SiteHost is the Host every edge started here serves.
const SiteHost = "site.test"

// Secret is the region secret the nodes share unless an option changes it.
const Secret = "cdntest-region-secret-0123456789"

// Origin is a demo origin (counting every request) on 127.0.0.1.
type Origin struct {
	*origin.Demo
	// URL is the origin's base URL, http://127.0.0.1:port.
	URL string
	srv *httptest.Server
}

// StartOrigin starts a demo origin; the test's Cleanup stops it.
func StartOrigin(t testing.TB) *Origin {
	t.Helper()
	d := origin.NewDemo(nil)
	srv := httptest.NewServer(d)
	t.Cleanup(func() {
		d.Close() // release waiting handlers first
		srv.CloseClientConnections()
		srv.Close()
	})
	return &Origin{Demo: d, URL: srv.URL, srv: srv}
}

// RegionOptions shape a region. The zero value is three nodes on the
// "local" preset.
type RegionOptions struct {
	// Nodes is how many edges the region starts with. Default 3.
	Nodes int
	// Prefix names the nodes: Prefix1, Prefix2, …. Default "edge".
	Prefix string
	// Zones, if set, puts node i in Zones[i % len(Zones)].
	Zones []string
	// Config, if set, adjusts node i's config (edge, cluster, admin)
	// before it starts, and before each restart.
	Config func(i int, c *node.Config)
	// Logger receives every node's logs. Nil keeps those at Info and
	// above, and prints them if the test fails.
	Logger *slog.Logger
	// SpanExporter, when set, receives every node's spans (see
	// node.Options.SpanExporter). Nil: nodes record none.
	SpanExporter sdktrace.SpanExporter
}

// Region is a set of clustered edges in front of one origin, each started
// through node.Start from its config, as `meridian edge` starts one.
type Region struct {
	t      testing.TB
	origin *Origin
	opts   RegionOptions
	client *http.Client

	// fixed: the nodes' addresses were chosen before they started
	// (StartCDN), and a restarted node keeps the config it last applied,
	// addresses and seeds included.
	fixed bool

	mu    sync.Mutex
	nodes []*Node
}

// Node is one edge of a region.
type Node struct {
	// Name is the node's edge and member name.
	Name string
	// Node is the running node.
	Node *node.Node
	// Edge is its cache handler (Node.Handler()).
	Edge *edge.Handler
	// Cluster is its membership (Node.Cluster()).
	Cluster *cluster.Member
	// URL is the base URL of its client listener, http://127.0.0.1:port.
	URL string

	client *http.Client
	dead   bool // guarded by the Region's mu

	mu  sync.Mutex
	cfg node.Config // as last applied
}

// StartRegion starts opts.Nodes edges, the first as the seed of the
// others. It returns once every node has started, not once they have all
// found each other: see WaitConverged. The test's Cleanup stops them all.
// o may be nil when opts.Config sets the site's origin (a test's own
// origin server).
func StartRegion(t testing.TB, o *Origin, opts RegionOptions) *Region {
	t.Helper()
	r := newRegion(t, o, opts)
	var seeds []string
	for i := range r.opts.Nodes {
		n, err := r.startNode(r.config(i, seeds))
		if err != nil {
			t.Fatalf("cdntest: start node %d: %v", i, err)
		}
		r.mu.Lock()
		r.nodes = append(r.nodes, n)
		r.mu.Unlock()
		if i == 0 {
			seeds = []string{n.Cluster.GossipAddr()}
		}
	}
	return r
}

// newRegion is a region of no node yet, its options' defaults filled in;
// the test's Cleanup stops the nodes it will have.
func newRegion(t testing.TB, o *Origin, opts RegionOptions) *Region {
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Prefix == "" {
		opts.Prefix = "edge"
	}
	if opts.Logger == nil {
		opts.Logger = logOnFailure(t)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	r := &Region{t: t, origin: o, opts: opts, client: &http.Client{
		Transport:     tr,
		Timeout:       60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	t.Cleanup(func() {
		r.Close()
		tr.CloseIdleConnections()
	})
	return r
}

// nodeName is the name of node i of a region whose names start with
// prefix.
func nodeName(prefix string, i int) string { return fmt.Sprintf("%s%d", prefix, i+1) }

// config is node i's config as the region starts it with seeds: every
// listener on 127.0.0.1 with port 0, one site (SiteHost) in front of the
// origin, the region's secret, the local preset, no access log; then
// RegionOptions.Config.
func (r *Region) config(i int, seeds []string) node.Config {
	name := nodeName(r.opts.Prefix, i)
	var originURL string
	if r.origin != nil {
		originURL = r.origin.URL
	}
	c := node.Config{
		Config: edge.Config{
			AccessLog: edge.AccessLogConfig{Destination: "off"},
			Name:      name,
			Listen:    "127.0.0.1:0",
			Sites: []edge.SiteConfig{{
				Hosts:   []string{SiteHost},
				Origin:  originURL,
				Timeout: 10 * time.Second,
			}},
		},
		Admin: node.AdminConfig{Listen: "127.0.0.1:0"},
		Cluster: &cluster.Config{
			Name:         name,
			GossipListen: "127.0.0.1:0",
			PeerListen:   "127.0.0.1:0",
			Seeds:        seeds,
			Secret:       Secret,
			Preset:       cluster.PresetLocal,
		},
	}
	if len(r.opts.Zones) > 0 {
		c.Cluster.Zone = r.opts.Zones[i%len(r.opts.Zones)]
	}
	if r.opts.Config != nil {
		r.opts.Config(i, &c)
	}
	return c
}

// startNode starts a node from cfg.
func (r *Region) startNode(cfg node.Config) (*Node, error) {
	n, err := node.Start(cfg, node.Options{Logger: r.opts.Logger, SpanExporter: r.opts.SpanExporter})
	if err != nil {
		return nil, err
	}
	return &Node{Name: cfg.Name, Node: n, Edge: n.Handler(), Cluster: n.Cluster(), URL: "http://" + n.HTTPAddr(),
		client: r.client, cfg: cloneConfig(cfg)}, nil
}

// Config returns a copy of the config the node last applied: the one it
// started with, or the last one this Node's Reload applied. Its sites,
// regions and cluster section are copies, so a test may set their fields
// and Reload.
func (n *Node) Config() node.Config {
	n.mu.Lock()
	defer n.mu.Unlock()
	return cloneConfig(n.cfg)
}

// Reload applies cfg to the running node (node.Node.Reload) and, if it
// is applied, remembers it as the node's config.
func (n *Node) Reload(cfg node.Config) (node.ReloadReport, error) {
	rep, err := n.Node.Reload(cfg)
	if err == nil {
		n.mu.Lock()
		n.cfg = cloneConfig(cfg)
		n.mu.Unlock()
	}
	return rep, err
}

// cloneConfig copies c deeply enough that setting a field of a site, of
// a regions entry or of the cluster section, or an edge of a regions
// entry, in the copy leaves c as it was (a site's own slices, such as
// its hosts, are still shared).
func cloneConfig(c node.Config) node.Config {
	c.Sites = slices.Clone(c.Sites)
	c.Regions = cloneRegions(c.Regions)
	if c.Cluster != nil {
		cc := *c.Cluster
		cc.Seeds = slices.Clone(cc.Seeds)
		c.Cluster = &cc
	}
	return c
}

// cloneRegions copies a regions table and each entry's edges.
func cloneRegions(rs []node.RegionConfig) []node.RegionConfig {
	rs = slices.Clone(rs)
	for i := range rs {
		rs[i].Edges = slices.Clone(rs[i].Edges)
	}
	return rs
}

// Get sends GET target (a path and query) to the node with Host SiteHost
// and the header fields in header (name, value, name, value, …), and
// returns the response with its body read.
func (n *Node) Get(target string, header ...string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, n.URL+target, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Host = SiteHost
	for k := 0; k+1 < len(header); k += 2 {
		req.Header.Add(header[k], header[k+1])
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, body, fmt.Errorf("GET %s: body: %w", target, err)
	}
	return resp, body, nil
}

// stop stops a node abruptly: its gossip and peer endpoint at once (no
// goodbye), then the rest of the node.
func (n *Node) stop() {
	n.Cluster.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n.Node.Shutdown(ctx)
}

// Node returns node i (its current incarnation after a Restart).
func (r *Region) Node(i int) *Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nodes[i]
}

// Live returns the indexes of the nodes that are not killed.
func (r *Region) Live() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for i, n := range r.nodes {
		if !n.dead {
			out = append(out, i)
		}
	}
	return out
}

// Kill stops node i abruptly, as if its machine died: its gossip stops
// without a goodbye and its peer endpoint and connections close, so the
// others must detect the failure. Its client listener is closed too.
func (r *Region) Kill(i int) {
	r.mu.Lock()
	n := r.nodes[i]
	dead := n.dead
	n.dead = true
	r.mu.Unlock()
	if !dead {
		n.stop()
	}
}

// Stop stops node i gracefully, as `meridian edge` does on SIGTERM: it
// leaves its region, then drains (node.Node.Shutdown, given 10s). It
// returns Shutdown's error; nil if the node was already stopped.
func (r *Region) Stop(i int) error {
	r.mu.Lock()
	n := r.nodes[i]
	dead := n.dead
	n.dead = true
	r.mu.Unlock()
	if dead {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return n.Node.Shutdown(ctx)
}

// Restart starts a new incarnation of killed (or stopped) node i, with
// the same name and an empty cache. In a region of a CDN (StartCDN) it
// keeps the config it last applied, addresses and seeds included, as a
// host that restarts the binary does (a moment's retry covers a socket
// of the old incarnation still closing); elsewhere its config is made
// afresh (RegionOptions.Config included), with the live nodes as seeds
// and new ports.
func (r *Region) Restart(i int) *Node {
	r.t.Helper()
	r.mu.Lock()
	old := r.nodes[i]
	if !old.dead {
		r.mu.Unlock()
		r.t.Fatalf("cdntest: restart of node %d, which is not killed", i)
	}
	var seeds []string
	for _, n := range r.nodes {
		if !n.dead {
			seeds = append(seeds, n.Cluster.GossipAddr())
		}
	}
	r.mu.Unlock()
	var n *Node
	if r.fixed {
		cfg := old.Config()
		poll.Until(r.t, restartRetry, fmt.Sprintf("%s restarts at its addresses", old.Name), func() bool {
			var err error
			if n, err = r.startNode(cfg); err != nil {
				r.t.Logf("cdntest: restart %s: %v", old.Name, err)
			}
			return err == nil
		})
	} else {
		var err error
		if n, err = r.startNode(r.config(i, seeds)); err != nil {
			r.t.Fatalf("cdntest: restart node %d: %v", i, err)
		}
	}
	r.mu.Lock()
	r.nodes[i] = n
	r.mu.Unlock()
	return n
}

// restartRetry bounds how long Restart tries to start a node again at
// its addresses.
const restartRetry = 5 * time.Second

// Close stops every live node. The test's Cleanup calls it; it is safe to
// call more than once.
func (r *Region) Close() {
	r.mu.Lock()
	var live []*Node
	for _, n := range r.nodes {
		if !n.dead {
			n.dead = true
			live = append(live, n)
		}
	}
	r.mu.Unlock()
	for _, n := range live {
		n.stop()
	}
}

// ConvergedFor is how long the rings of a region must agree before a
// multi-node test starts: longer than the local preset's suspicion (1s),
// so that a member wrongly suspected while the machine was busy building
// rings is either cleared or dropped (and waited for again) first.
const ConvergedFor = 1200 * time.Millisecond

// ConvergeTimeout bounds a region's wait to converge: no speed is
// asserted by it. Each membership change makes every member build a
// ring (2^20 partitions: 1-1.7s each under -race on this 2-core machine,
// measured with ring's BenchmarkNew), and under the load of a whole
// test run a 3-member region took 8-51s to agree with the local preset.
const ConvergeTimeout = 90 * time.Second

// WaitConverged waits until every live node's ring holds exactly the live
// nodes, and has for a moment, and fails the test if that takes longer
// than timeout.
func (r *Region) WaitConverged(timeout time.Duration) {
	r.t.Helper()
	poll.Steady(r.t, timeout, ConvergedFor, "every ring holds exactly the live nodes", r.converged)
}

// converged reports whether every live node's ring holds exactly the live
// nodes.
func (r *Region) converged() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	var want []string
	for _, n := range r.nodes {
		if !n.dead {
			want = append(want, n.Name)
		}
	}
	slices.Sort(want)
	for _, n := range r.nodes {
		if n.dead {
			continue
		}
		var got []string
		for _, p := range n.Cluster.Ring().Peers() {
			got = append(got, p.Name)
		}
		if !slices.Equal(got, want) {
			return false
		}
	}
	return true
}

// WatchRings records, until the returned stop is called, the size of each
// successive ring of every node live now: a node whose membership did not
// change has a history of one ring. A test that counts origin requests
// exactly can tell with it whether a membership change it did not cause
// (a member wrongly declared dead on a loaded machine, and back) happened
// while it measured.
func (r *Region) WatchRings() (stop func() map[string][]int) {
	var nodes []*Node
	for _, i := range r.Live() {
		nodes = append(nodes, r.Node(i))
	}
	return watchRings(nodes)
}

// watchRings is WatchRings for nodes.
func watchRings(nodes []*Node) (stop func() map[string][]int) {
	last := make([]*ring.Ring, len(nodes))
	hist := map[string][]int{}
	poll := func() {
		for i, n := range nodes {
			if rg := n.Cluster.Ring(); rg != last[i] || hist[n.Name] == nil {
				last[i] = rg
				hist[n.Name] = append(hist[n.Name], rg.Len())
			}
		}
	}
	poll()
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		// A ring build takes milliseconds and follows a settle delay,
		// so polling every 2ms sees every ring.
		t := time.NewTicker(2 * time.Millisecond)
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
	return func() map[string][]int {
		once.Do(func() {
			close(done)
			<-stopped
			poll()
		})
		return hist
	}
}

// Unchanged reports whether a WatchRings history shows no membership
// change at all.
func Unchanged(hist map[string][]int) bool {
	for _, sizes := range hist {
		if len(sizes) != 1 {
			return false
		}
	}
	return true
}

// Get sends GET target (a path and query) to node i with Host SiteHost
// and the header fields in header (name, value, …), and returns the
// response with its body read.
func (r *Region) Get(i int, target string, header ...string) (*http.Response, []byte, error) {
	return r.Node(i).Get(target, header...)
}

// Owner returns the index of the node that owns target (a path and query
// of SiteHost) on the ring of the region's first live node.
func (r *Region) Owner(target string) int {
	r.t.Helper()
	live := r.Live()
	if len(live) == 0 {
		r.t.Fatal("cdntest: Owner of a region with no live node")
	}
	from := r.Node(live[0])
	p, ok := from.Cluster.Owner(SiteHost + target)
	if !ok {
		r.t.Fatalf("cdntest: %s has an empty ring", from.Name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, n := range r.nodes {
		if n.Name == p.Name {
			return i
		}
	}
	r.t.Fatalf("cdntest: owner %s of %s is not in the region", p.Name, target)
	return -1
}

// LoadOptions shape a request loop.
type LoadOptions struct {
	// Nodes are the indexes of the nodes to send to, in turn. Default:
	// the live nodes when the loop starts.
	Nodes []int
	// Targets are the paths and queries to request, in turn. Required.
	Targets []string
	// Workers is how many requests are in flight at once. Default 4.
	Workers int
	// MaxRequests bounds the loop's requests. Default 100000.
	MaxRequests int
	// MaxDuration bounds the loop's run time. Default 30s.
	MaxDuration time.Duration
	// Check judges a response; nil accepts status 200 with a complete
	// body. A request fails if it errs or Check returns an error.
	Check func(target string, resp *http.Response, body []byte) error
}

// Load is a running request loop.
type Load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	res    LoadResult
	issued int
}

// LoadResult counts a loop's requests.
type LoadResult struct {
	// Requests is how many requests completed, failed ones included.
	Requests int
	// Failures is how many of them failed.
	Failures int
	// Errors describes the first few failures.
	Errors []string
}

// maxLoadErrors bounds LoadResult.Errors.
const maxLoadErrors = 10

// StartLoad starts a request loop; Stop ends it. The loop also ends by
// itself after MaxRequests or MaxDuration.
func (r *Region) StartLoad(opts LoadOptions) *Load {
	r.t.Helper()
	if len(opts.Targets) == 0 {
		r.t.Fatal("cdntest: StartLoad without targets")
	}
	if len(opts.Nodes) == 0 {
		opts.Nodes = r.Live()
	}
	if opts.Workers == 0 {
		opts.Workers = 4
	}
	if opts.MaxRequests == 0 {
		opts.MaxRequests = 100000
	}
	if opts.MaxDuration == 0 {
		opts.MaxDuration = 30 * time.Second
	}
	if opts.Check == nil {
		opts.Check = checkOK
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.MaxDuration)
	l := &Load{cancel: cancel}
	for range opts.Workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				l.mu.Lock()
				k := l.issued
				l.issued++
				l.mu.Unlock()
				if k >= opts.MaxRequests {
					return
				}
				target := opts.Targets[k%len(opts.Targets)]
				node := r.Node(opts.Nodes[k%len(opts.Nodes)])
				resp, body, err := node.Get(target)
				if err == nil {
					err = opts.Check(target, resp, body)
				}
				l.record(node.Name, target, err)
			}
		}()
	}
	return l
}

func (l *Load) record(node, target string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.res.Requests++
	if err != nil {
		l.res.Failures++
		if len(l.res.Errors) < maxLoadErrors {
			l.res.Errors = append(l.res.Errors, fmt.Sprintf("%s %s: %v", node, target, err))
		}
	}
}

// Count returns the result so far.
func (l *Load) Count() LoadResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	res := l.res
	res.Errors = slices.Clone(res.Errors)
	return res
}

// Wait waits until the loop ends by its bounds (MaxRequests or
// MaxDuration) and returns the result.
func (l *Load) Wait() LoadResult {
	l.wg.Wait()
	l.cancel()
	return l.Count()
}

// Stop ends the loop, waits for its requests in flight and returns the
// result. It is safe to call more than once.
func (l *Load) Stop() LoadResult {
	l.cancel()
	return l.Wait()
}

// checkOK accepts a 200 whose body is as long as it said.
func checkOK(target string, resp *http.Response, body []byte) error {
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d (Cache-Status %q): %s", resp.StatusCode, resp.Header.Get("Cache-Status"), strings.TrimSpace(string(body)))
	}
	if resp.ContentLength >= 0 && int64(len(body)) != resp.ContentLength {
		return errors.New("short body")
	}
	return nil
}

// logOnFailure returns a logger whose lines (Info and above) the test
// prints if it fails.
func logOnFailure(t testing.TB) *slog.Logger {
	w := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of the nodes:\n%s", w.String())
		}
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// lockedBuffer is a bytes.Buffer that several nodes' loggers write to.
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
