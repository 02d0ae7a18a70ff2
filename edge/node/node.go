// Package node assembles one Meridian edge node from its config file: the
// edge cache and its listeners, the admin API with metrics and purge, and
// (when configured) the region cluster it fills from. `meridian edge`,
// `meridian up` and multi-node tests all start nodes through it.
//
// Each site's upstream chain (the key's owner in the region, the shield
// regions, the origin pool, the failover regions) is a [Plan], built and
// checked from the config before anything is wired, at [Start] and at
// each [Node.Reload]; `meridian validate --explain` prints it.
//
// # Locks
//
// Node.reloadMu serializes the handler's build at Start and Reload: it is
// held while a reload reads its files and gossips cluster.draining, which
// only delays the next reload (no request waits on it). Node.mu guards the
// running config, its hash and plan, and the reload counts; the purger's
// mu its table of missed purges; the shield tracker's mu what the
// shields' answers told. These three are leaves, never held across I/O (a
// purge is sent with the purger's mu released). The order is
// Node.reloadMu → the cluster's and the edge's locks (package docs of
// edge/cluster and edge) → Node.mu.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/certs"
	"github.com/meridiancdn/meridian/edge/cluster"
	"github.com/meridiancdn/meridian/edge/fill"
	"github.com/meridiancdn/meridian/edge/listen"
	"github.com/meridiancdn/meridian/edge/tracing"
	"github.com/meridiancdn/meridian/origin/yamlconf"
	"github.com/meridiancdn/meridian/ring"
)

// Config is a node's YAML file: the edge's own settings at the top level,
// plus the admin API.
type Config struct {
	edge.Config `yaml:",inline"`
	// Region is the region this node serves in. Default "local".
	Region string `yaml:"region"`
	// Admin is the admin API's listener and purge token.
	Admin AdminConfig `yaml:"admin"`
	// Cluster, when set, makes this node a member of its region's
	// cluster: peers share one cache over a consistent-hash ring. Its name
	// defaults to the node's name.
	Cluster *cluster.Config `yaml:"cluster"`
	// Regions publishes the CDN's regions and their edges: the origin
	// shield fills from them, and purges reach them. Default none.
	Regions []RegionConfig `yaml:"regions"`
}

// RegionConfig is one region's published edge list.
type RegionConfig struct {
	// Name is the region's name. Required, unique.
	Name string `yaml:"name"`
	// Edges are its edges. At least one.
	Edges []EdgeRef `yaml:"edges"`
	// Point is where the region is. When every region has one, edge-side
	// failover tries other regions nearest first; else in this order.
	Point *Point `yaml:"point"`
}

// Point is a position on the Earth in decimal degrees, as geo.Point (the
// same YAML): Lat in [-90, 90], north positive; Lon in [-180, 180], east
// positive. A node needs only the distance between two, not all of geo.
type Point struct {
	Lat float64 `yaml:"lat" json:"lat"`
	Lon float64 `yaml:"lon" json:"lon"`
}

// distanceKm is the great-circle (haversine) distance from p to q in
// kilometres on a sphere of the Earth's mean radius.
func (p Point) distanceKm(q Point) float64 {
	const rad, earthKm = math.Pi / 180, 6371.0088
	s1, s2 := math.Sin((q.Lat-p.Lat)*rad/2), math.Sin((q.Lon-p.Lon)*rad/2)
	h := s1*s1 + math.Cos(p.Lat*rad)*math.Cos(q.Lat*rad)*s2*s2
	return 2 * earthKm * math.Asin(math.Sqrt(min(max(h, 0), 1)))
}

// EdgeRef is one published edge.
type EdgeRef struct {
	// Name is the edge's name (its cluster member name). Required.
	Name string `yaml:"name"`
	// Peer is its peer endpoint, host:port. Required.
	Peer string `yaml:"peer"`
	// Zone and Weight place it on the region's ring, as the region's own
	// members do. Defaults "" and 1.
	Zone   string `yaml:"zone"`
	Weight int    `yaml:"weight"`
}

// AdminConfig configures the admin API (health, metrics, status, purge).
type AdminConfig struct {
	// Listen is the admin address. Default "127.0.0.1:9090".
	Listen string `yaml:"listen"`
	// TokenFile holds the purge API's bearer token. Default none.
	TokenFile string `yaml:"token_file"`
	// Token is the token itself, for tests and `meridian up`; prefer
	// TokenFile. Without either, every purge is refused.
	Token string `yaml:"token"`
	// ReadTokenFile holds the bearer token that GET /status (it names the
	// most requested URLs) and GET /metrics then require; the purge
	// token is accepted too. Default none: they are open to whoever
	// reaches the admin address, which should then be a private one.
	ReadTokenFile string `yaml:"read_token_file"`
	// ReadToken is the read token itself, for tests; prefer ReadTokenFile.
	ReadToken string `yaml:"read_token"`
	// DrainDelay is how long a stopping node reports not-ready before it
	// stops accepting, so load balancers take it out first. Default 0.
	DrainDelay time.Duration `yaml:"drain_delay"`
}

// readTokens returns the purge token and the read token: Token and
// ReadToken, or the contents of TokenFile and ReadTokenFile (white space
// around them trimmed). The error names the field.
func (a AdminConfig) readTokens() (token, readToken string, err error) {
	token, readToken = a.Token, a.ReadToken
	if a.TokenFile != "" {
		b, err := os.ReadFile(a.TokenFile)
		if err != nil {
			return "", "", fmt.Errorf("admin.token_file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if a.ReadTokenFile != "" {
		b, err := os.ReadFile(a.ReadTokenFile)
		if err != nil {
			return "", "", fmt.Errorf("admin.read_token_file: %w", err)
		}
		if readToken = strings.TrimSpace(string(b)); readToken == "" {
			return "", "", errors.New("admin.read_token_file: empty")
		}
	}
	return token, readToken, nil
}

// WithDefaults fills in every unset field.
func (c Config) WithDefaults() Config {
	c.Config = c.Config.WithDefaults()
	if c.Region == "" {
		c.Region = "local"
	}
	if c.Admin.Listen == "" {
		c.Admin.Listen = "127.0.0.1:9090"
	}
	if c.Cluster != nil {
		cc := *c.Cluster
		if cc.Name == "" {
			cc.Name = c.Name
		}
		cc = cc.WithDefaults()
		c.Cluster = &cc
	}
	return c
}

// Validate reports the first problem, naming the field.
func (c Config) Validate() error {
	if err := c.Config.Validate(); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(c.Admin.Listen); err != nil {
		return fmt.Errorf("admin.listen: %v", err)
	}
	if c.Admin.DrainDelay < 0 {
		return errors.New("admin.drain_delay: negative")
	}
	if c.Admin.TokenFile != "" && c.Admin.Token != "" {
		return errors.New("admin: token and token_file are exclusive")
	}
	if c.Admin.ReadTokenFile != "" && c.Admin.ReadToken != "" {
		return errors.New("admin: read_token and read_token_file are exclusive")
	}
	if c.Cluster != nil {
		if err := c.Cluster.Validate(); err != nil {
			return prefixed("cluster", err)
		}
		if c.Cluster.Name != c.Name {
			// A peer's answer counts as the owner's only when its
			// Cache-Status entry carries the owner's member name.
			return fmt.Errorf("cluster.name: %q must equal name %q", c.Cluster.Name, c.Name)
		}
	}
	regions := map[string]bool{}
	for i, r := range c.Regions {
		f := fmt.Sprintf("regions[%d]", i)
		if r.Name == "" {
			return fmt.Errorf("%s.name: required", f)
		}
		if regions[r.Name] {
			return fmt.Errorf("%s.name: %q listed twice", f, r.Name)
		}
		regions[r.Name] = true
		if len(r.Edges) == 0 {
			return fmt.Errorf("%s.edges: empty", f)
		}
		if pt := r.Point; pt != nil && !(pt.Lat >= -90 && pt.Lat <= 90 && pt.Lon >= -180 && pt.Lon <= 180) {
			return fmt.Errorf("%s.point: (%v, %v) out of range (lat in [-90, 90], lon in [-180, 180])", f, pt.Lat, pt.Lon)
		}
		names := make(map[string]int, len(r.Edges))
		for j, e := range r.Edges {
			ef := fmt.Sprintf("%s.edges[%d]", f, j)
			if e.Name == "" {
				return fmt.Errorf("%s.name: required", ef)
			}
			if k, dup := names[e.Name]; dup {
				// The region's ring places keys by name: two entries of
				// one name make no ring, and no shield or failover.
				return fmt.Errorf("%s.name: duplicate %q (also edges[%d])", ef, e.Name, k)
			}
			names[e.Name] = j
			if _, _, err := net.SplitHostPort(e.Peer); err != nil {
				return fmt.Errorf("%s.peer: %v", ef, err)
			}
			if e.Weight < 0 {
				return fmt.Errorf("%s.weight: negative", ef)
			}
		}
		// Whatever else ring.New would refuse (a weight above
		// ring.MaxWeight, too many edges) is refused here, not when the
		// plan is built.
		if err := ring.Check(r.published().Peers); err != nil {
			return fmt.Errorf("%s.edges: %w", f, err)
		}
	}
	for i, s := range c.Sites {
		for j, r := range s.Shield.Regions {
			if !regions[r] {
				return fmt.Errorf("sites[%d].shield.regions[%d]: unknown region %q (not in regions)", i, j, r)
			}
		}
		if len(s.Shield.Regions) > 0 && c.Cluster == nil {
			return fmt.Errorf("sites[%d].shield: needs a cluster section (the peer secret signs shield requests)", i)
		}
	}
	return nil
}

// failoverRegions are the other regions, nearest first when every region
// has a point, else in config order: where a fill goes when this region's
// own path fails.
func (c Config) failoverRegions() []RegionConfig {
	var own *Point
	all := true
	for _, r := range c.Regions {
		if r.Point == nil {
			all = false
		}
		if r.Name == c.Region {
			own = r.Point
		}
	}
	others := make([]RegionConfig, 0, len(c.Regions))
	for _, r := range c.Regions {
		if r.Name != c.Region {
			others = append(others, r)
		}
	}
	if all && own != nil {
		sort.SliceStable(others, func(i, j int) bool {
			return own.distanceKm(*others[i].Point) < own.distanceKm(*others[j].Point)
		})
	}
	return others
}

// published is a region's edges as the cluster package takes them.
func (r RegionConfig) published() cluster.ShieldRegion {
	sr := cluster.ShieldRegion{Name: r.Name, Addrs: map[string]string{}}
	for _, e := range r.Edges {
		sr.Peers = append(sr.Peers, ring.Peer{Name: e.Name, Zone: e.Zone, Weight: e.Weight})
		sr.Addrs[e.Name] = e.Peer
	}
	return sr
}

// prefixed names a section's field in its error, unless it already does.
func prefixed(section string, err error) error {
	if strings.HasPrefix(err.Error(), section+".") {
		return err
	}
	return fmt.Errorf("%s.%w", section, err)
}

// Parse decodes a node config strictly (unknown fields are errors, named
// with their line and the nearest known field; sizes and durations take
// units: see origin/yamlconf), fills in defaults and validates.
func Parse(data []byte) (Config, error) {
	var c Config
	if err := yamlconf.Decode(data, &c); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// Load reads and parses a node config file. ${VAR} in the file is
// replaced by the environment variable VAR (empty if unset), so that one
// file can serve every pod of a StatefulSet (name: ${HOSTNAME}).
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	data = []byte(os.Expand(string(data), func(k string) string {
		if k == "$" {
			return "$" // $$ is a literal dollar
		}
		return os.Getenv(k)
	}))
	c, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// MemoryHeadroom is what a node's memory limit allows beyond its cache
// budgets: the Go runtime, connection buffers, the request path's
// garbage and memberlist. 64 MiB covers them with room to spare on the
// loads of deploy/bench (about 20 MiB at rest, 40 MiB under a miss flood).
const MemoryHeadroom = 64 << 20

// MemoryLimit is the soft memory limit (runtime/debug.SetMemoryLimit) the
// config calls for: the store, the hot copies and the in-flight bodies at
// their budgets, plus MemoryHeadroom. Near it the garbage collector works
// harder instead of letting the heap grow to twice what is live.
func (c Config) MemoryLimit() int64 {
	c = c.WithDefaults()
	return c.Cache.MaxBytes + c.Cache.HotBytes + c.Cache.MaxInflightBytes + MemoryHeadroom
}

// Options are what a node is started with besides its config.
type Options struct {
	// Logger receives the node's logs. Nil discards them.
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Status, when set, adds fields to the admin /status, over the
	// node's own (a key it returns replaces the node's).
	Status func() map[string]any
	// SpanExporter, when set, receives the node's spans instead of the
	// OTLP exporter of tracing.otlp_endpoint, and spans are recorded even
	// without one (tests use an in-memory exporter). Nil: as the config
	// says.
	SpanExporter sdktrace.SpanExporter
	// ManageMemoryLimit has the node set the process's soft memory
	// limit (runtime/debug.SetMemoryLimit) to its MemoryLimit and keep
	// it there as the disk index grows and reloads change the budgets.
	// The limit is the process's: only its one node may manage it
	// (meridian edge does, unless GOMEMLIMIT is set).
	ManageMemoryLimit bool
}

// Node is a running edge node.
type Node struct {
	log      *slog.Logger
	reg      *prometheus.Registry
	handler  *edge.Handler
	srv      *listen.Server
	certs    *certs.Source // nil without tls
	admin    *edge.Admin
	adminSrv *http.Server
	adminLn  net.Listener
	cluster  *cluster.Member // nil outside a cluster
	// accessLog is the access log; nil when off. A file one is reopened
	// by ReopenLogs and closed by Shutdown.
	accessLog *edge.AccessLog
	// tracer records spans; nil when tracing does not export.
	tracer *tracing.Tracer

	shieldFallbacks *prometheus.CounterVec
	shieldAnswers   *prometheus.CounterVec
	purgeUnacked    prometheus.Counter
	purger          *purger
	stopPurger      context.CancelFunc
	stopSampler     context.CancelFunc
	wg              sync.WaitGroup
	extraStatus     func() map[string]any
	shields         *shieldTracker // what the shields' answers told

	reloads        prometheus.Counter
	reloadFailures prometheus.Counter

	// reloadMu serializes Reload; applying is the plan being wired into
	// the handler's sites (read by the WrapUpstream hook, which the
	// handler calls while Start or Reload holds reloadMu).
	reloadMu sync.Mutex
	applying *Plan

	mu         sync.Mutex // guards cfg, cfgHash, plan, lastReload and the reload counts
	cfg        Config
	cfgHash    string // ConfigHash(cfg)
	plan       *Plan
	lastReload *ReloadStatus
	nReloads   uint64 // reloads applied
	nRefused   uint64 // reloads refused

	stopOnce sync.Once
	stopErr  error

	manageMemory bool         // Options.ManageMemoryLimit
	memLimit     atomic.Int64 // the limit last set (applyMemoryLimit)
}

// Start builds the node and binds every listener; it serves until Shutdown.
func Start(cfg Config, opt Options) (*Node, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("node", cfg.Name, "region", cfg.Region)
	token, readToken, err := cfg.Admin.readTokens()
	if err != nil {
		return nil, err
	}
	plan, err := BuildPlan(cfg, nil)
	if err != nil {
		return nil, err
	}
	plan.Generation = 1
	now := opt.Now
	if now == nil {
		now = time.Now
	}
	n := &Node{cfg: cfg, cfgHash: ConfigHash(cfg), plan: plan, applying: plan, log: log, reg: prometheus.NewRegistry(),
		extraStatus: opt.Status, shields: &shieldTracker{now: now, regions: map[string]*shieldSeen{}},
		manageMemory: opt.ManageMemoryLimit}
	n.shieldFallbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meridian_shield_fallbacks_total",
		Help: "Fills that passed over an unreachable origin shield region, by shield and where they went next.",
	}, []string{"shield", "to"})
	n.shieldAnswers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meridian_shield_requests_total",
		Help: "Fills answered by an origin shield region, by shield and whether the shield had the object (hit) or fetched it (miss).",
	}, []string{"shield", "result"})
	n.purgeUnacked = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "meridian_purge_unacked_total",
		Help: "Purge deliveries a peer or region did not acknowledge (they are retried).",
	})
	n.reloads = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "meridian_config_reloads_total",
		Help: "Reloads applied (each one makes a new config generation).",
	})
	n.reloadFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "meridian_config_reload_failures_total",
		Help: "Reloads refused; the running config kept serving.",
	})
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		n.shieldFallbacks, n.shieldAnswers, n.purgeUnacked, n.reloads, n.reloadFailures,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meridian_config_generation",
			Help: "The running config's generation: 1 at start, one more for each reload applied.",
		}, func() float64 { return float64(n.Plan().Generation) }),
		buildInfoGauge(Build()), newStatusCollector(n),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meridian_memory_limit_bytes",
			Help: "The Go runtime's soft memory limit (GOMEMLIMIT, or set from the cache budgets); 0 when none is set.",
		}, func() float64 { return float64(memoryLimit()) }))
	eopt := edge.Options{Now: opt.Now, Logger: log, Registerer: n.reg}
	// PURGE on the public listeners goes to the purge API (token
	// required); n.admin is set before any listener starts.
	eopt.PurgeMethod = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.admin.ServePurgeMethod(w, r) })
	if n.accessLog, err = edge.OpenAccessLog(cfg.AccessLog, os.Stdout, os.Stderr); err != nil {
		return nil, err
	}
	eopt.AccessLog = n.accessLog
	if exp := opt.SpanExporter; exp != nil || cfg.Tracing.Exporting() {
		if exp == nil {
			if exp, err = tracing.NewOTLP(context.Background(), cfg.Tracing.OTLPEndpoint); err != nil {
				n.accessLog.Close()
				return nil, fmt.Errorf("tracing.otlp_endpoint: %w", err)
			}
		}
		n.tracer = tracing.New(tracing.Options{Exporter: exp, SampleRatio: cfg.Tracing.SampleRatio,
			Service: cfg.Tracing.ServiceName, Node: cfg.Name, Region: cfg.Region, Sync: opt.SpanExporter != nil})
		eopt.Tracer = n.tracer
	}
	if cfg.Cluster != nil {
		cn, err := cluster.New(*cfg.Cluster, cluster.Options{Logger: log, Now: opt.Now})
		if err != nil {
			n.closeLogs(context.Background())
			return nil, err
		}
		n.cluster = cn
		n.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meridian_cluster_members", Help: "Members on this node's ring, itself included.",
		}, func() float64 { return float64(cn.Ring().Len()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "meridian_cluster_membership_changes_total",
				Help: "Joins, leaves, failures and updates of the region's members seen by this node.",
			}, func() float64 { return float64(cn.MembershipChanges()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "meridian_cluster_consulted_total",
				Help: "Fills this node, as a key's owner, took from a peer's copy (a replica or the key's previous holder) instead of upstream.",
			}, func() float64 { return float64(cn.Consulted()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "meridian_cluster_peer_replays_total",
				Help: "Signed peer requests refused because their signature had been used before (a replay).",
			}, func() float64 { return float64(cn.Replays()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "meridian_cluster_peer_suspected_total",
				Help: "Times this node passed over a peer as suspect (refused, silent for peer_timeout, reset, or an answer not its own).",
			}, func() float64 { return float64(cn.Suspicions()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "meridian_cluster_tls_refused_total",
				Help: "TLS handshakes on the links between members refused for the other end's certificate (none, expired, not the cluster CA's); 0 without cluster.tls.",
			}, func() float64 { return float64(cn.TLSRefused()) }),
			cn.PeerGate())
		eopt.WrapUpstream = func(sc edge.SiteConfig, up fill.Upstream) fill.Upstream {
			return n.wrapUpstream(cn, sc, up)
		}
	}
	n.reloadMu.Lock()
	h, err := edge.New(cfg.Config, eopt)
	n.applying = nil
	n.reloadMu.Unlock()
	if err != nil {
		n.closeCluster()
		n.closeLogs(context.Background())
		return nil, err
	}
	n.handler = h
	n.admin = &edge.Admin{
		Handler:   h,
		Token:     token,
		ReadToken: readToken,
		Gatherer:  n.reg,
		Status:    n.status,
	}
	// undo stops what was started, in reverse order, when a later step
	// fails: nothing a failed Start began keeps running or bound.
	undo := []func(){func() { n.closeLogs(context.Background()) }, func() { h.Close() }, n.closeCluster}
	fail := func(err error) (*Node, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return nil, err
	}
	lopt := listen.Options{Logger: log, Registerer: n.reg}
	if cfg.TLS != nil {
		// One certificate source for HTTPS and HTTP/3, chosen by SNI,
		// re-read on reload; it answers ACME's challenges.
		src, err := certs.New(CertsConfig(cfg.Config), certs.Options{Logger: log.With("component", "certs"), Now: opt.Now})
		if err != nil {
			return fail(err)
		}
		n.certs = src
		undo = append(undo, func() { src.Close() })
		lopt.GetCertificate = src.GetCertificate
		lopt.NextProtos = src.NextProtos()
		lopt.WrapPlain = src.HTTPChallenge
	}
	if n.certs != nil || n.cluster != nil && n.cluster.TLS() {
		var expiries []func() []certs.Expiry
		if n.certs != nil {
			expiries = append(expiries, n.certs.Expiries)
		}
		if n.cluster != nil {
			expiries = append(expiries, n.cluster.TLSExpiries)
		}
		n.reg.MustRegister(certs.ExpiryCollector(expiries...))
	}
	n.srv = listen.NewServer(cfg.Config, h, lopt)
	if err := n.srv.Start(); err != nil {
		return fail(err)
	}
	undo = append(undo, func() { n.srv.Shutdown(context.Background()) })
	if n.certs != nil {
		if err := n.certs.Start(n.srv.Addr(), n.srv.TLSAddr()); err != nil {
			return fail(err)
		}
	}
	if n.cluster != nil {
		n.purger = &purger{n: n, pending: map[string][]string{}}
		n.admin.Propagate = n.purger.propagate
		pctx, cancel := context.WithCancel(context.Background())
		n.stopPurger = cancel
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.purger.retryLoop(pctx, 250*time.Millisecond)
		}()
		undo = append(undo, func() {
			n.stopPurger()
			n.wg.Wait()
		})
		// What the peer endpoint verified: the members' internal
		// requests (purges, replication orders) are the node's, the
		// others are peer fills for the edge.
		peerNext := cluster.PeerServerFunc(func(w http.ResponseWriter, r *http.Request, peer fill.Peer) {
			if r.Host == cluster.InternalHost {
				n.serveInternal(w, r)
				return
			}
			h.ServePeer(w, r, peer)
		})
		if err := n.cluster.Start(peerNext); err != nil {
			return fail(err)
		}
		// A draining member owns no key, and steering sends its
		// clients elsewhere.
		h.SetDraining(cfg.Cluster.Draining)
	}
	ln, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return fail(fmt.Errorf("admin.listen: %w", err))
	}
	if n.applyMemoryLimit() {
		log.Info("memory limit set from the cache budgets and the disk index", "bytes", n.memLimit.Load())
	}
	sctx, stopSampler := context.WithCancel(context.Background())
	n.stopSampler = stopSampler
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.sampleLoop(sctx)
	}()
	n.adminLn = ln
	n.adminSrv = &http.Server{Handler: n.admin, ReadHeaderTimeout: 10 * time.Second}
	go n.adminSrv.Serve(ln)
	log.Info("edge node started", "http", n.srv.Addr(), "https", n.srv.TLSAddr(), "admin", ln.Addr().String())
	return n, nil
}

// wrapUpstream is the edge's WrapUpstream hook: it puts the site's chain
// of the plan being applied around its origin pool. The plan built every
// ring beforehand, so the chain cannot fail to build; if it ever did, the
// site's fills fail with the reason (logged) rather than silently
// skipping the shield.
func (n *Node) wrapUpstream(cn *cluster.Member, sc edge.SiteConfig, up fill.Upstream) fill.Upstream {
	hooks := cluster.ShieldOptions{OnFallback: n.shieldFallback, OnAnswer: n.shieldAnswer}
	sp, ok := n.applying.site(sc)
	var err error
	if ok {
		var path fill.Upstream
		if path, err = sp.wrap(cn, hooks, up); err == nil {
			return path
		}
	} else {
		err = fmt.Errorf("site %v: not in the upstream plan", sc.Hosts)
	}
	n.log.Error("upstream chain not built; the site's fills fail", "site", sc.Hosts, "err", err)
	return failingUpstream{err}
}

// failingUpstream fails every fill with err.
type failingUpstream struct{ err error }

func (f failingUpstream) Fill(*http.Request, fill.Info) (*http.Response, error) { return nil, f.err }

// The edge serves what the peer endpoint verified.
var _ cluster.PeerServer = (*edge.Handler)(nil)

// shieldAnswer counts a fill the shield answered, hit or miss.
func (n *Node) shieldAnswer(shield string, hit bool) {
	result := "miss"
	if hit {
		result = "hit"
	}
	n.shieldAnswers.WithLabelValues(shield, result).Inc()
	n.shields.answered(shield)
}

// shieldFallback counts a shield region passed over.
func (n *Node) shieldFallback(from, to string) {
	n.shieldFallbacks.WithLabelValues(from, to).Inc()
	n.shields.passedOver(from)
}

func (n *Node) closeCluster() {
	if n.cluster != nil {
		n.cluster.Close()
	}
}

// status adds to the admin /status what the node knows beyond its
// cache: its region and the regions table's health as it sees it, the
// ring's members, each site's shield, the purges peers have not
// acknowledged, the running config (generation, hash, reloads, plan),
// memory and build.
func (n *Node) status() map[string]any {
	n.mu.Lock()
	cfg, plan, last, hash, reloads, refused := n.cfg, n.plan, n.lastReload, n.cfgHash, n.nReloads, n.nRefused
	n.mu.Unlock()
	conf := map[string]any{"generation": plan.Generation, "hash": hash, "reloads": reloads, "reload_failures": refused, "plan": plan}
	if last != nil {
		conf["last_reload"] = last
	}
	regions := n.regionsStatus(cfg, plan)
	st := map[string]any{"region": cfg.Region, "memory": memoryStatus(), "config": conf, "build": Build(),
		"regions": regions, "shields": n.shieldsStatus(plan, regions), "purges_pending": map[string]int{}}
	if n.cluster == nil {
		st["members"] = []Member{{Name: cfg.Name, Share: 1, Self: true}}
	} else {
		r := n.cluster.Ring()
		var members []Member
		for _, p := range n.cluster.Members() {
			members = append(members, Member{Name: p.Name, Zone: p.Zone, Share: r.Share(p.Name), Self: p.Name == cfg.Name, Draining: p.Draining})
		}
		st["members"] = members
		if n.purger != nil {
			st["purges_pending"] = n.purger.pendingPeers()
		}
	}
	if n.extraStatus != nil {
		for k, v := range n.extraStatus() {
			st[k] = v
		}
	}
	return st
}

// Member is a ring member as the status shows it.
type Member struct {
	Name  string  `json:"name"`
	Zone  string  `json:"zone,omitempty"`
	Share float64 `json:"share"`
	Self  bool    `json:"self"`
	// Draining: the member owns no key (cluster.draining).
	Draining bool `json:"draining,omitempty"`
}

func (n *Node) config() Config {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cfg
}

// Cluster is the node's region membership, nil outside a cluster.
func (n *Node) Cluster() *cluster.Member { return n.cluster }

// Handler is the node's edge cache.
func (n *Node) Handler() *edge.Handler { return n.handler }

// Admin is the node's admin API.
func (n *Node) Admin() *edge.Admin { return n.admin }

// Registry is the node's metrics registry.
func (n *Node) Registry() *prometheus.Registry { return n.reg }

// HTTPAddr is the plain HTTP/1.1 listener's address.
func (n *Node) HTTPAddr() string { return n.srv.Addr() }

// TLSAddr is the HTTPS (and HTTP/3) address, "" without TLS.
func (n *Node) TLSAddr() string { return n.srv.TLSAddr() }

// AdminAddr is the admin API's address.
func (n *Node) AdminAddr() string { return n.adminLn.Addr().String() }

// Plan is the running config's upstream plan.
func (n *Node) Plan() *Plan {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.plan
}

// Reload applies a new config (see edge.Handler.Reload): sites, origins,
// cache budgets, the regions table and the upstream plan built from it.
// Settings that only a restart applies keep their running values and are
// listed in the report. A config that does not validate, or whose plan
// cannot be built, is refused with the reason, and the running config
// keeps serving.
func (n *Node) Reload(cfg Config) (ReloadReport, error) {
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	rep, err := n.reload(cfg)
	st := &ReloadStatus{Time: time.Now()}
	n.mu.Lock()
	if err != nil {
		n.reloadFailures.Inc()
		n.nRefused++
		st.Error = err.Error()
	} else {
		n.reloads.Inc()
		n.nReloads++
		st.Report = &rep
	}
	n.lastReload = st
	n.mu.Unlock()
	return rep, err
}

func (n *Node) reload(cfg Config) (ReloadReport, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return ReloadReport{}, fmt.Errorf("reload refused: %w", err)
	}
	old, running := n.config(), n.Plan()
	if cfg.Name != old.Name {
		return ReloadReport{}, fmt.Errorf("reload refused: name: %q cannot change to %q without a restart", old.Name, cfg.Name)
	}
	if n.cluster == nil && cfg.Cluster != nil || n.cluster != nil && cfg.Cluster == nil {
		return ReloadReport{}, errors.New("reload refused: cluster: joining or leaving a cluster needs a restart")
	}
	cfg, rep := reconcile(old, cfg)
	plan, err := BuildPlan(cfg, running)
	if err != nil {
		return ReloadReport{}, fmt.Errorf("reload refused: %w", err)
	}
	plan.Generation = running.Generation + 1
	// Every certificate file is read afresh before anything changes: one
	// that does not load refuses the reload, as nginx does, and the
	// running certificates keep serving.
	var certUpdate *certs.Update
	if n.certs != nil {
		if certUpdate, err = n.certs.Prepare(CertsConfig(cfg.Config)); err != nil {
			return ReloadReport{}, fmt.Errorf("reload refused: %w", err)
		}
	}
	if n.cluster != nil {
		// The links' certificate and CA files, read again as the
		// sites' are (a file that does not load keeps the running ones).
		if err := n.cluster.ReloadTLS(); err != nil {
			return ReloadReport{}, fmt.Errorf("reload refused: %w", err)
		}
	}
	n.applying = plan
	err = n.handler.Reload(cfg.Config)
	n.applying = nil
	if err != nil {
		return ReloadReport{}, err
	}
	if certUpdate != nil {
		certUpdate.Apply()
	}
	if n.cluster != nil && cfg.Cluster.Draining != old.Cluster.Draining {
		// Made here at once; a gossip slower than SetDraining's wait
		// still carries it to the others.
		if err := n.cluster.SetDraining(cfg.Cluster.Draining); err != nil {
			n.log.Warn("cluster.draining applied here, still spreading", "err", err)
		}
		n.handler.SetDraining(cfg.Cluster.Draining)
	}
	hash := ConfigHash(cfg)
	n.mu.Lock()
	n.cfg, n.plan, n.cfgHash = cfg, plan, hash
	n.mu.Unlock()
	n.applyMemoryLimit() // the budgets may have changed
	rep.Generation, rep.Rings = plan.Generation, plan.Rings
	n.log.Info("config reloaded", "generation", plan.Generation, "applied", rep.Applied, "needs_restart", rep.NeedsRestart)
	return rep, nil
}

// drainMargin is how long before its drain deadline a stopping node
// answers the requests still waiting on upstream: time to write those
// answers before the remaining connections are closed.
const drainMargin = time.Second

// ReopenLogs reopens the access log's file, for log rotation: the
// file was moved away (logrotate's rename), and lines go to a new one
// from now on. `meridian edge` calls it on SIGUSR1. It does nothing when
// the access log is not a file.
func (n *Node) ReopenLogs() error {
	if err := n.accessLog.Reopen(); err != nil {
		return fmt.Errorf("access_log: %w", err)
	}
	return nil
}

// closeLogs closes the access log file and flushes the spans not yet
// exported, within ctx.
func (n *Node) closeLogs(ctx context.Context) {
	n.accessLog.Close()
	if err := n.tracer.Shutdown(ctx); err != nil {
		n.log.Warn("tracing: spans not exported at shutdown", "err", err)
	}
}

// Shutdown drains the node: readiness goes false first, then after the
// drain delay the listeners stop accepting and in-flight requests finish
// (until ctx ends). Safe to call more than once.
func (n *Node) Shutdown(ctx context.Context) error {
	n.stopOnce.Do(func() {
		n.admin.SetDraining(true)
		n.handler.SetDraining(true)
		if d := n.config().Admin.DrainDelay; d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
		if n.cluster != nil {
			// Leave first: the region stops routing keys to us at once,
			// instead of finding out by failed probes.
			n.cluster.Leave(2 * time.Second)
		}
		// Shortly before the deadline, requests still waiting on
		// upstream get a clean answer (stale or 503, Connection: close)
		// instead of a connection closed without one.
		if dl, ok := ctx.Deadline(); ok {
			left := time.Until(dl)
			t := time.AfterFunc(left-min(drainMargin, left/4), n.handler.StopWaiting)
			defer t.Stop()
		}
		// Upgraded connections (WebSocket) are no listener's: they
		// drain alongside, each closed after its site's drain_grace
		// or at ctx's end.
		upgrades := make(chan struct{})
		go func() {
			defer close(upgrades)
			n.handler.DrainUpgraded(ctx)
		}()
		err := n.srv.Shutdown(ctx)
		<-upgrades
		if n.certs != nil {
			n.certs.Close()
		}
		if n.stopPurger != nil {
			n.stopPurger()
		}
		n.stopSampler()
		n.wg.Wait()
		n.closeCluster()
		n.handler.Close()
		n.adminSrv.Close()
		n.closeLogs(ctx)
		n.stopErr = err
		n.log.Info("edge node stopped")
	})
	return n.stopErr
}
