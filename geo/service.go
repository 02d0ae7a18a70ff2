package geo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	lru "github.com/hashicorp/golang-lru/v2"
)

// Options are a [Service]'s collaborators; the zero value is ready to use.
type Options struct {
	// Logger receives state changes and serving errors. Nil: discard.
	Logger *slog.Logger
	// Now is the clock for probe evidence and hold-downs. Nil: time.Now.
	Now func() time.Time
	// Transport carries the health probes. Nil: a transport of the
	// Service's own, closed with it. Tests use it to kill and revive edges.
	// It must also answer the self-check probe, to geo-self-check.invalid,
	// as a healthy edge, and should report httptrace's WroteRequest so
	// that probe timeouts count from the write.
	Transport http.RoundTripper
	// Locator replaces the database named by Config.Database (for
	// instance one built in memory with geo/geodb). Nil: open
	// Config.Database when set.
	Locator *Locator
	// OnListening, when set, runs once in [Service.Run] after its
	// listeners are bound, with their addresses ("" for one not
	// configured).
	OnListening func(dnsAddr, httpAddr string)
}

// Service is the geo steering service: it probes every region, keeps
// their health, and answers "where should this client go" over DNS and
// HTTP. It runs in every region; instances that see the same probe results
// give the same answers.
type Service struct {
	cfg       Config
	regions   Regions
	loc       *Locator
	picker    Picker
	log       *slog.Logger
	now       func() time.Time
	transport http.RoundTripper
	own       *http.Transport // the default transport, closed by Close

	onListening func(dnsAddr, httpAddr string)

	defaultRegion int
	countryPins   map[string]int
	netPins       []netPin // longest prefix first
	trusted       []netip.Prefix
	subnets       *lru.Cache[netip.Prefix, placement] // client subnets placed by their networks

	view atomic.Pointer[view]

	selfAddr string        // the self-check target (set before the probe loop starts)
	held     atomic.Uint64 // probe rounds whose failures the self-check voided

	mu      sync.Mutex
	running bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}
}

type netPin struct {
	prefix netip.Prefix
	region int
}

// New makes a Service from cfg (defaults are filled in and it is
// validated) and opts. It opens Config.Database unless opts.Locator is
// set. Nothing runs until [Service.Run]; until the first probe round every
// region counts as up.
func New(cfg Config, opts Options) (*Service, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("geo config: %w", err)
	}
	s := &Service{
		cfg:         cfg,
		regions:     Regions(cfg.Regions),
		loc:         opts.Locator,
		log:         opts.Logger,
		now:         opts.Now,
		transport:   opts.Transport,
		onListening: opts.OnListening,
		countryPins: map[string]int{},
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.loc == nil && cfg.Database != "" {
		l, err := OpenLocator(cfg.Database, cfg.MaxAccuracyKm)
		if err != nil {
			return nil, err
		}
		s.loc = l
	}
	if s.transport == nil {
		s.own = &http.Transport{
			Proxy:                 nil, // probes go straight to the edge
			DialContext:           (&net.Dialer{Timeout: cfg.Probe.Timeout}).DialContext,
			MaxIdleConnsPerHost:   1,
			IdleConnTimeout:       3 * cfg.Probe.Interval,
			ResponseHeaderTimeout: cfg.Probe.Timeout,
		}
		s.transport = s.own
	}
	switch cfg.Picker.Policy {
	case "spread":
		s.picker = &Spread{SlackKm: cfg.Picker.SlackKm}
	default:
		s.picker = &Nearest{}
	}
	index := map[string]int{}
	for i, r := range cfg.Regions {
		index[r.Name] = i
	}
	s.defaultRegion = index[cfg.DefaultRegion]
	for cc, name := range cfg.Pins.Countries {
		s.countryPins[cc] = index[name]
	}
	for cidr, name := range cfg.Pins.Networks {
		p, _ := netip.ParsePrefix(cidr) // validated
		s.netPins = append(s.netPins, netPin{normPrefix(p), index[name]})
	}
	slices.SortFunc(s.netPins, func(a, b netPin) int {
		return cmp.Or(-cmp.Compare(a.prefix.Bits(), b.prefix.Bits()), a.prefix.Addr().Compare(b.prefix.Addr()))
	})
	for _, t := range cfg.HTTP.TrustedProxies {
		p, _ := parseNetwork(t) // validated
		s.trusted = append(s.trusted, p)
	}
	s.subnets, _ = lru.New[netip.Prefix, placement](subnetCacheSize) // size > 0: no error
	s.view.Store(newHealth(cfg.Probe, cfg.Regions, s.now()).view())
	return s, nil
}

// Config returns the configuration in use, defaults filled in.
func (s *Service) Config() Config { return s.cfg }

// Regions returns a copy of the region table, for [Regions.ByDistance].
func (s *Service) Regions() Regions { return slices.Clone(s.regions) }

// Run probes every region's edges each Probe.Interval and serves DNS (UDP
// and TCP on DNS.Listen) and HTTP (on HTTP.Listen) when those are set,
// until ctx is done or Close is called; then it stops serving and returns.
// It returns early with an error when a listener cannot be bound or a
// server fails. Run may be called once.
func (s *Service) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.closed || s.running {
		s.mu.Unlock()
		return errors.New("geo: service already running or closed")
	}
	s.running = true
	ctx, cancel := context.WithCancel(ctx)
	s.cancel, s.done = cancel, make(chan struct{})
	s.mu.Unlock()
	defer close(s.done)
	defer cancel()

	var srv servers
	if err := srv.listen(s); err != nil {
		srv.close()
		return err
	}
	var wg sync.WaitGroup
	s.selfAddr = selfCheckHost
	if s.own != nil {
		if err := s.listenSelfCheck(ctx, &wg); err != nil {
			srv.close()
			return err
		}
	}
	if f := s.onListening; f != nil {
		f(srv.dnsAddr(), srv.httpAddr())
	}
	s.log.Info("geo steering running", "regions", len(s.regions), "dns", srv.dnsAddr(), "http", srv.httpAddr(),
		"hostname", s.cfg.DNS.Hostname, "probe_interval", s.cfg.Probe.Interval.String())

	errc := make(chan error, 4)
	wg.Go(func() { s.probeLoop(ctx) })
	srv.serve(&wg, errc)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		s.log.Error("geo serving failed", "err", err)
	}
	cancel()
	srv.shutdown()
	wg.Wait()
	if s.own != nil {
		s.own.CloseIdleConnections()
	}
	s.log.Info("geo steering stopped")
	return err
}

// Close stops what Run started and waits for it. It is safe to call more
// than once, and before or without Run. Answers keep working after Close,
// with the last health state.
func (s *Service) Close() error {
	s.mu.Lock()
	s.closed = true
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	if s.own != nil {
		s.own.CloseIdleConnections()
	}
	return nil
}

// Answer is where a client should go and why.
type Answer struct {
	// Region is the chosen region's name.
	Region string `json:"region"`
	// DistanceKm is the great-circle distance from the client's location
	// to the region, rounded to 0.1 km.
	DistanceKm float64 `json:"distance_km"`
	// Edge is the one edge this client should use: one of Edges, chosen
	// by a hash of the client's subnet (rendezvous hashing), so a region's
	// clients are spread over its healthy edges, a client keeps its edge
	// while that edge is up, and an edge going down moves only its own
	// clients. /redirect sends the client there when the region has no
	// Hostname.
	Edge string `json:"edge"`
	// Edges are the region's edges that answer probes, as configured:
	// their client-facing IP:port. Only when no edge of any region answers
	// (fail open) are they all of the region's edges. DNS answers with
	// their IPs.
	Edges []string `json:"edges"`
	// Hostname is the region's redirect host name, if configured.
	Hostname string `json:"hostname,omitempty"`
	// Why explains the choice in a sentence, for operators.
	Why string `json:"why"`
	// Client is the address (or subnet address) that was located.
	Client netip.Addr `json:"client"`
	// Location is where the client was placed.
	Location Location `json:"location"`
}

// Route answers for one client address. Clients in the same /24 (IPv4) or
// /48 (IPv6) share hashing decisions (traffic steps, spreading).
func (s *Service) Route(client netip.Addr) Answer {
	client = client.Unmap()
	a, _ := s.route(netip.PrefixFrom(client, client.BitLen()))
	return a
}

// keyBits is the subnet size whose clients share hashing decisions: a
// resolver's EDNS Client Subnet is usually /24 or /56, so a client gets
// the same answer over DNS and HTTP.
func keyBits(a netip.Addr) int {
	if a.Is4() {
		return 24
	}
	return 48
}

// clientKey hashes the client's subnet (p masked to at most keyBits).
func clientKey(p netip.Prefix) uint64 {
	a := p.Addr()
	if !a.IsValid() {
		return 0
	}
	b, _ := a.Prefix(min(p.Bits(), keyBits(a)))
	buf := b.Addr().As16()
	return xxhash.Sum64(buf[:])
}

// route answers for a client known by a subnet (a full-length prefix for
// one address; an EDNS Client Subnet for DNS), placed by the GeoIP
// networks inside it (see [Service.place]), and returns the prefix length
// of the addresses the answer holds for (the ECS scope, in p's family:
// an IPv4-mapped p is placed as IPv4 and the scope counts its 96 bits).
func (s *Service) route(p netip.Prefix) (Answer, int) {
	mapped := p.Addr().Is4In6() && p.Bits() >= 96
	p = normPrefix(p)
	pl := s.place(p)
	addr, loc, why := p.Addr(), pl.loc, pl.why
	key := clientKey(p)
	v := s.view.Load()

	var buf [16]Candidate
	cands := buf[:0]
	if len(s.regions) > len(buf) {
		cands = make([]Candidate, 0, len(s.regions))
	}
	var (
		idx   [16]int
		dbuf  [16]float64
		order = idx[:0]
		dists = dbuf[:0]
	)
	if len(s.regions) > len(idx) {
		order, dists = make([]int, 0, len(s.regions)), make([]float64, 0, len(s.regions))
	}
	for i, r := range s.regions {
		order = append(order, i)
		dists = append(dists, loc.DistanceKm(r.Point))
	}
	dist := func(i int) float64 { return dists[i] }
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(dists[a], dists[b]), cmp.Compare(s.regions[a].Name, s.regions[b].Name))
	})

	// Available: up, or ramping with this client admitted. When no region
	// is, the least bad ones: first those with enough edges answering
	// (held down, or ramping without this client), then those with any
	// edge answering. Only when no edge of any region answers is health
	// ignored (fail open): a client is never sent to a region whose edges
	// are all down while another region has one that answers.
	mode := "health"
	avail := func(i int) bool {
		rv := &v.regions[i]
		return rv.state == StateUp || rv.state == StateRamping && rv.admits(key)
	}
	if v.failOpen {
		mode, avail = "fail-open", func(int) bool { return true }
	} else if !slices.ContainsFunc(order, avail) {
		mode, avail = "least-bad", func(i int) bool { return v.regions[i].healthy }
		if !slices.ContainsFunc(order, avail) {
			mode, avail = "partial", func(i int) bool { return len(v.regions[i].upEdges) > 0 }
		}
	}
	for _, i := range order {
		cands = append(cands, Candidate{
			Name:       s.regions[i].Name,
			DistanceKm: dist(i),
			Capacity:   s.regions[i].Capacity,
			Available:  avail(i),
		})
	}
	pick := s.picker.Pick(key, cands)
	if pick < 0 || pick >= len(cands) || !cands[pick].Available {
		pick = firstAvailable(cands) // a misbehaving Picker must not break answers
	}
	chosen := order[pick]
	r := &s.regions[chosen]
	rv := &v.regions[chosen]

	edges := rv.upEdges
	if len(edges) == 0 {
		edges = r.Edges // fail open: no edge answers, so name them all
	}
	edges = slices.Clone(edges) // the caller's to keep or change
	scope := pl.scope
	if mapped {
		scope += 96
	}
	return Answer{
		Region:     r.Name,
		DistanceKm: math.Round(cands[pick].DistanceKm*10) / 10,
		Edge:       edgeFor(key, edges),
		Edges:      edges,
		Hostname:   r.Hostname,
		Why:        why + "; " + s.explain(mode, v, order, cands, pick),
		Client:     addr,
		Location:   loc,
	}, scope
}

// edgeFor picks the edge of edges for the client with subnet hash key:
// the highest of hash(client, edge), so that removing an edge moves only
// the clients it had. "" when edges is empty.
func edgeFor(key uint64, edges []string) string {
	best, bestScore := "", uint64(0)
	for _, e := range edges {
		if score := mix64(key ^ xxhash.Sum64String(e)); best == "" || score > bestScore {
			best, bestScore = e, score
		}
	}
	return best
}

// explain says why cands[pick] was chosen.
func (s *Service) explain(mode string, v *view, order []int, cands []Candidate, pick int) string {
	switch mode {
	case "fail-open":
		return fmt.Sprintf("fail open: no edge of the %d regions answers, health ignored; nearest region", len(s.regions))
	case "least-bad":
		return "no region is fully up; nearest region whose edges answer"
	case "partial":
		return "no region has enough edges up; nearest region with an edge that answers"
	}
	if pick == 0 {
		if v.regions[order[0]].state == StateRamping {
			return fmt.Sprintf("nearest region (recovering, %v%% of clients back)", v.regions[order[0]].percent)
		}
		return "nearest region"
	}
	near := v.regions[order[0]]
	return fmt.Sprintf("nearest region %s is %s; %s by policy %s", cands[0].Name, near.state, cands[pick].Name, s.cfg.Picker.Policy)
}

// locate places addr: network pins, then the default region for private
// and unknown addresses, then GeoIP with country pins.
func (s *Service) locate(addr netip.Addr) (Location, string) {
	addr = addr.Unmap()
	for _, p := range s.netPins {
		if p.prefix.Contains(addr) {
			return s.placeAt(p.region, SourcePin, p.prefix), fmt.Sprintf("network %s pinned to %s", p.prefix, s.regions[p.region].Name)
		}
	}
	if reason := special(addr); reason != "" {
		return s.placeAt(s.defaultRegion, SourceDefault, netip.Prefix{}), reason + " address: default region"
	}
	if s.loc == nil {
		return s.placeAt(s.defaultRegion, SourceDefault, netip.Prefix{}), "no GeoIP database: default region"
	}
	loc, err := s.loc.Locate(addr)
	if err != nil {
		s.log.Warn("geoip lookup failed", "addr", addr, "err", err)
	}
	return s.settle(loc)
}

// settle applies the country pins to a GeoIP location and sends one the
// database does not place to the default region.
func (s *Service) settle(loc Location) (Location, string) {
	if i, ok := s.countryPins[loc.Country]; ok {
		pinned := s.placeAt(i, SourcePin, loc.Network)
		pinned.Country, pinned.Continent, pinned.AccuracyKm = loc.Country, loc.Continent, loc.AccuracyKm
		return pinned, fmt.Sprintf("country %s pinned to %s", loc.Country, s.regions[i].Name)
	}
	if loc.Source == SourceDefault {
		d := s.placeAt(s.defaultRegion, SourceDefault, loc.Network)
		d.Country, d.Continent = loc.Country, loc.Continent
		return d, "address not in GeoIP database: default region"
	}
	return loc, "located by " + string(loc.Source)
}

func (s *Service) placeAt(region int, src Source, network netip.Prefix) Location {
	return Location{Point: s.regions[region].Point, Source: src, Network: network}
}

// cgnat is the shared address space of carrier-grade NAT (RFC 6598).
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// special names the kind of an address that GeoIP cannot place, or "".
func special(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "unknown"
	case a.IsLoopback():
		return "loopback"
	case a.IsPrivate(), cgnat.Contains(a):
		return "private"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast():
		return "link-local"
	case a.IsMulticast():
		return "multicast"
	}
	return ""
}

// Status is the health of every region, for the status page.
type Status struct {
	// FailOpen is set when no edge of any region answers its probes, so
	// health is being ignored and every client gets its nearest region.
	FailOpen bool `json:"fail_open"`
	// Healthy counts the regions with enough edges answering.
	Healthy int `json:"healthy"`
	// Regions are in config order.
	Regions []RegionStatus `json:"regions"`
}

// RegionStatus is one region's health.
type RegionStatus struct {
	Name  string `json:"name"`
	Point Point  `json:"point"`
	// State is up, down, hold-down or ramping.
	State State `json:"state"`
	// TrafficPercent is the share of its clients the region takes: 100 up,
	// the current step while ramping, else 0.
	TrafficPercent float64 `json:"traffic_percent"`
	// Since is when the region entered State.
	Since time.Time `json:"since"`
	// HoldDownUntil is when the hold-down ends (hold-down state only).
	HoldDownUntil time.Time `json:"hold_down_until,omitzero"`
	// RecentFailures counts the region's failures within the failure
	// window; the hold-down grows with it.
	RecentFailures int `json:"recent_failures"`
	// Edges are the edges and whether each is up.
	Edges []EdgeStatus `json:"edges"`
}

// EdgeStatus is one edge's probe state.
type EdgeStatus struct {
	Addr string `json:"addr"`
	Up   bool   `json:"up"`
}

// Status returns the health of every region as of the last probe round.
func (s *Service) Status() Status {
	v := s.view.Load()
	st := Status{FailOpen: v.failOpen, Healthy: v.healthy}
	for i, rv := range v.regions {
		rs := RegionStatus{
			Name:           s.regions[i].Name,
			Point:          s.regions[i].Point,
			State:          rv.state,
			TrafficPercent: rv.percent,
			Since:          rv.since,
			RecentFailures: rv.failures,
			Edges:          slices.Clone(rv.edges),
		}
		if rv.state == StateHoldDown {
			rs.HoldDownUntil = rv.since.Add(rv.holdDown)
		}
		st.Regions = append(st.Regions, rs)
	}
	return st
}
