package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/meridiancdn/meridian/edge"
)

// What the admin /status and /metrics say of the node beyond its cache:
// the regions as this node sees them, each site's origin shield, pending
// purges and the running config. All of it comes from what the node
// knows already (its regions table, the gossip, the peers it found
// unreachable, the shields' answers), with no probing of its own.

// RegionStatus is a region on /status, as this node sees it.
type RegionStatus struct {
	Name string `json:"name"`
	// Self reports this node's own region.
	Self bool `json:"self,omitempty"`
	// Roles are what the region is to this node's fills: "shield" (a
	// site's origin shield, or this region being one), "failover".
	Roles []string `json:"roles,omitempty"`
	// State is "up" (every edge up), "degraded" (some) or "down" (none).
	State string `json:"state"`
	// Edges and EdgesUp count the region's published edges and those up;
	// Down names the others.
	Edges   int      `json:"edges"`
	EdgesUp int      `json:"edges_up"`
	Down    []string `json:"down,omitempty"`
	// Source says how the node knows: "gossip" for its own region (the
	// live members), "fills" for the others (an edge is down while this
	// node passes it over, after it failed to answer a shield or
	// failover fill; one never asked counts as up).
	Source string `json:"source"`
}

// regionsStatus is every region of the regions table (this node's own
// first), or this node's region alone without a table.
func (n *Node) regionsStatus(cfg Config, plan *Plan) []RegionStatus {
	roles := map[string][]string{}
	addRole := func(region, role string) {
		if !slices.Contains(roles[region], role) {
			roles[region] = append(roles[region], role)
		}
	}
	for _, sp := range plan.Sites {
		for _, r := range sp.Shield {
			addRole(r, "shield")
		}
		if sp.IsShield {
			addRole(cfg.Region, "shield")
		}
		for _, r := range sp.Failover {
			addRole(r, "failover")
		}
	}
	live := map[string]bool{cfg.Name: true}
	if n.cluster != nil {
		for _, p := range n.cluster.Members() {
			live[p.Name] = true
		}
	}
	suspect := map[string]bool{}
	if n.cluster != nil {
		for _, name := range n.cluster.Suspects() {
			suspect[name] = true
		}
	}
	var out []RegionStatus
	own := false
	for _, r := range cfg.Regions {
		rs := RegionStatus{Name: r.Name, Self: r.Name == cfg.Region, Roles: roles[r.Name], Edges: len(r.Edges), Source: "fills"}
		if rs.Self {
			rs.Source, own = "gossip", true
		}
		for _, e := range r.Edges {
			up := !suspect[e.Name]
			if rs.Self {
				up = live[e.Name] && !suspect[e.Name]
			}
			if up {
				rs.EdgesUp++
			} else {
				rs.Down = append(rs.Down, e.Name)
			}
		}
		rs.State = regionState(rs.EdgesUp, rs.Edges)
		out = append(out, rs)
	}
	if !own {
		// Not in the table (or no table): the live members are the region.
		rs := RegionStatus{Name: cfg.Region, Self: true, Roles: roles[cfg.Region], Edges: len(live), Source: "gossip"}
		for name := range live {
			if suspect[name] {
				rs.Down = append(rs.Down, name)
			} else {
				rs.EdgesUp++
			}
		}
		slices.Sort(rs.Down)
		rs.State = regionState(rs.EdgesUp, rs.Edges)
		out = append(out, rs)
	}
	slices.SortStableFunc(out, func(a, b RegionStatus) int {
		switch {
		case a.Self == b.Self:
			return 0
		case a.Self:
			return -1
		}
		return 1
	})
	return out
}

func regionState(up, all int) string {
	switch {
	case up >= all:
		return "up"
	case up > 0:
		return "degraded"
	}
	return "down"
}

// shieldTracker remembers, for each shield region, its last answer and
// the last time a fill passed it over: whether it is reachable now, as
// far as this node's fills tell. Its lock is a leaf.
type shieldTracker struct {
	now func() time.Time

	mu      sync.Mutex
	regions map[string]*shieldSeen
}

type shieldSeen struct {
	lastAnswer, lastFallback time.Time
	answers, fallbacks       uint64
}

func (t *shieldTracker) seen(region string) *shieldSeen {
	s := t.regions[region]
	if s == nil {
		s = &shieldSeen{}
		t.regions[region] = s
	}
	return s
}

func (t *shieldTracker) answered(region string) {
	now := t.now()
	t.mu.Lock()
	s := t.seen(region)
	s.lastAnswer = now
	s.answers++
	t.mu.Unlock()
}

func (t *shieldTracker) passedOver(region string) {
	now := t.now()
	t.mu.Lock()
	s := t.seen(region)
	s.lastFallback = now
	s.fallbacks++
	t.mu.Unlock()
}

func (t *shieldTracker) get(region string) shieldSeen {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.regions[region]; s != nil {
		return *s
	}
	return shieldSeen{}
}

// ShieldStatus is one site's origin shield on /status.
type ShieldStatus struct {
	// Site is the site's label (its first host, as metrics name it).
	Site string `json:"site"`
	// IsShield reports that this node's region is the site's shield: it
	// fills from the origin for the regions behind it.
	IsShield bool `json:"is_shield,omitempty"`
	// Direct reports whether the origin is asked when no shield answers.
	Direct bool `json:"direct"`
	// Active is where this node's next fill of the site goes: the first
	// shield region not found unreachable, else "origin" (or "none" when
	// direct fills are not allowed); "origin" without shields.
	Active string `json:"active"`
	// Regions are the shield regions asked, in order.
	Regions []ShieldRegionStatus `json:"regions"`
}

// ShieldRegionStatus is a shield region as this node's fills found it.
type ShieldRegionStatus struct {
	Name string `json:"name"`
	// State is "reachable" (its last fill was answered), "unreachable"
	// (passed over, or every edge of it is), or "unknown" (not asked yet).
	State        string     `json:"state"`
	EdgesUp      int        `json:"edges_up"`
	Edges        int        `json:"edges"`
	Answers      uint64     `json:"answers"`
	Fallbacks    uint64     `json:"fallbacks"`
	LastAnswer   *time.Time `json:"last_answer,omitempty"`
	LastFallback *time.Time `json:"last_fallback,omitempty"`
}

// shieldsStatus is each site's shield, in config order.
func (n *Node) shieldsStatus(plan *Plan, regions []RegionStatus) []ShieldStatus {
	byName := map[string]RegionStatus{}
	for _, r := range regions {
		byName[r.Name] = r
	}
	out := make([]ShieldStatus, 0, len(plan.Sites))
	for _, sp := range plan.Sites {
		ss := ShieldStatus{IsShield: sp.IsShield, Direct: sp.Direct, Regions: []ShieldRegionStatus{}}
		if len(sp.Hosts) > 0 {
			ss.Site = strings.ToLower(strings.TrimSuffix(sp.Hosts[0], "."))
		}
		for _, name := range sp.Shield {
			seen, r := n.shields.get(name), byName[name]
			rs := ShieldRegionStatus{Name: name, State: "unknown", EdgesUp: r.EdgesUp, Edges: r.Edges,
				Answers: seen.answers, Fallbacks: seen.fallbacks,
				LastAnswer: timePtr(seen.lastAnswer), LastFallback: timePtr(seen.lastFallback)}
			switch {
			case r.Edges > 0 && r.EdgesUp == 0:
				rs.State = "unreachable"
			case !seen.lastAnswer.IsZero() && !seen.lastAnswer.Before(seen.lastFallback):
				rs.State = "reachable"
			case !seen.lastFallback.IsZero():
				rs.State = "unreachable"
			}
			if ss.Active == "" && rs.State != "unreachable" {
				ss.Active = name
			}
			ss.Regions = append(ss.Regions, rs)
		}
		if ss.Active == "" {
			ss.Active = "origin"
			if !sp.Direct {
				ss.Active = "none"
			}
		}
		out = append(out, ss)
	}
	return out
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// secretKey reports whether a config key names a secret, which the config
// hash leaves out.
func secretKey(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "token") || strings.Contains(k, "secret") || strings.Contains(k, "password")
}

// ConfigHash is a short fingerprint of a config (with defaults filled
// in), for telling at a glance whether two nodes, or a node before and
// after a reload, run the same one. Secrets (tokens, the cluster secret)
// are left out of it. It is "" for a config that does not marshal.
func ConfigHash(cfg Config) (hash string) {
	defer func() {
		if recover() != nil { // a field yaml cannot marshal: no hash rather than no node
			hash = ""
		}
	}()
	b, err := yaml.Marshal(cfg.WithDefaults())
	if err != nil {
		return ""
	}
	var tree any
	if err := yaml.Unmarshal(b, &tree); err != nil {
		return ""
	}
	canon, err := json.Marshal(redact(tree)) // JSON sorts the keys
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:6])
}

// redact drops the secrets of a decoded YAML tree.
func redact(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			if !secretKey(k) {
				out[k] = redact(x)
			}
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = redact(x)
		}
		return out
	}
	return v
}

// sampleLoop samples the request counters for the recent hit ratios
// every edge.StatusSampleInterval until ctx ends.
func (n *Node) sampleLoop(ctx context.Context) {
	t := time.NewTicker(edge.StatusSampleInterval)
	defer t.Stop()
	for {
		n.admin.Sample()
		n.applyMemoryLimit() // the disk index grows and shrinks
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// statusCollector exports what the status shows and no other metric
// does: each region's edges up as this node sees them, the purges peers
// have not acknowledged yet, and the running config's hash.
type statusCollector struct {
	n                     *Node
	regionUp, regionEdges *prometheus.Desc
	pending, config       *prometheus.Desc
}

func newStatusCollector(n *Node) *statusCollector {
	return &statusCollector{
		n: n,
		regionUp: prometheus.NewDesc("meridian_region_edges_up",
			"Edges of each region this node counts as up: its own region's live members, and the other regions' edges it does not pass over for having failed a fill.",
			[]string{"region"}, nil),
		regionEdges: prometheus.NewDesc("meridian_region_edges",
			"Edges each region publishes in the regions table.",
			[]string{"region"}, nil),
		pending: prometheus.NewDesc("meridian_purges_pending",
			"Purge deliveries waiting for a peer's or region's acknowledgement (they are retried).",
			nil, nil),
		config: prometheus.NewDesc("meridian_config_info",
			"Always 1; hash is the running config's fingerprint (secrets left out), the same on nodes of the same config.",
			[]string{"hash"}, nil),
	}
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.regionUp
	ch <- c.regionEdges
	ch <- c.pending
	ch <- c.config
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	n.mu.Lock()
	cfg, plan, hash := n.cfg, n.plan, n.cfgHash
	n.mu.Unlock()
	for _, r := range n.regionsStatus(cfg, plan) {
		ch <- prometheus.MustNewConstMetric(c.regionUp, prometheus.GaugeValue, float64(r.EdgesUp), r.Name)
		ch <- prometheus.MustNewConstMetric(c.regionEdges, prometheus.GaugeValue, float64(r.Edges), r.Name)
	}
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(n.pendingPurges()))
	ch <- prometheus.MustNewConstMetric(c.config, prometheus.GaugeValue, 1, hash)
}

// pendingPurges counts the purge deliveries not yet acknowledged.
func (n *Node) pendingPurges() int {
	if n.purger == nil {
		return 0
	}
	total := 0
	for _, q := range n.purger.pendingPeers() {
		total += q
	}
	return total
}
