package edge

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridiancdn/meridian/edge/store"
)

// Request classes, the cache_status label of meridian_edge_requests_total.
const (
	classHit = iota
	classMiss
	classStale
	classPass
	classError
	numClasses
)

var classNames = [numClasses]string{"hit", "miss", "stale", "pass", "error"}

// protocols are the protocol label values, indexed by ProtoMajor (0 = other).
var protocols = [4]string{"other", "http/1.1", "h2", "h3"}

// otherSite is the site label of requests for no configured site (a
// Host that is refused 421, a malformed Host, a health probe): the
// label's values are bounded by the configured sites, whatever Host
// clients send.
const otherSite = "_other"

// metrics are an edge's Prometheus collectors. The request counters are
// resolved once per site (siteCounters), so the hit path only
// increments.
type metrics struct {
	requests *prometheus.CounterVec // cache_status, protocol, site
	bytesVec *prometheus.CounterVec // site
	// mu guards sites, the counters of each site label resolved so far
	// (sites added by reloads join it; removed ones keep their series).
	mu    sync.Mutex
	sites map[string]*siteCounters
	other *siteCounters

	fills       prometheus.Counter
	fillErrors  prometheus.Counter
	fillSeconds prometheus.Histogram
	collapsed   prometheus.Counter
	staleServed *prometheus.CounterVec
	purged      prometheus.Counter
	// banned counts entries removed or marked stale by bans, by where
	// (lookup, sweep); bansAdded and bansRefused the bans made and
	// refused (purge.max_bans).
	banned      *prometheus.CounterVec
	bansAdded   prometheus.Counter
	bansRefused prometheus.Counter
	streamed    prometheus.Counter
	// spooled and spoolRefused count fills to disk (fill_disk.go).
	spooled, spoolRefused prometheus.Counter
	// abandoned counts fills called off because every client left;
	// inflightRejected fills refused for want of in-flight budget.
	abandoned        prometheus.Counter
	inflightRejected prometheus.Counter
	// upgraded counts connections upgraded through to the origin;
	// upgradeRejected upgrades refused past server.max_upgraded.
	upgraded        prometheus.Counter
	upgradeRejected prometheus.Counter
	// slices counts slice subrequests (slice.go), which are not client
	// requests, by class and site; sliceMismatches slices that another
	// version of their object answered.
	slices          *prometheus.CounterVec
	sliceMismatches prometheus.Counter
	// upgradeDrained counts upgraded connections closed by a drain.
	upgradeDrained prometheus.Counter
	// ruleMatches counts the matches of sites' rules, by site, kind and
	// rule (edge/rules Options.Count names them, from the config only).
	ruleMatches *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, h *Handler) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_edge_requests_total",
			Help: "Client requests answered, by cache status (hit, miss, stale, pass, error), protocol and site (its first host; _other for a host no site serves).",
		}, []string{"cache_status", "protocol", "site"}),
		bytesVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_edge_response_body_bytes_total",
			Help: "Body bytes sent to clients from the cache and from fills, by site (its first host; _other for a host no site serves).",
		}, []string{"site"}),
		sites: map[string]*siteCounters{},
		fills: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_edge_fills_total", Help: "Upstream fills started (one per coalesced group of misses).",
		}),
		fillErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_edge_fill_errors_total", Help: "Fills that failed: transport error, timeout or 5xx.",
		}),
		fillSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meridian_edge_fill_seconds", Help: "Time from a fill's start to upstream's response headers.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
		collapsed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_edge_collapsed_total", Help: "Requests that waited on another request's fill instead of going upstream.",
		}),
		staleServed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_edge_stale_served_total", Help: "Stale responses served, by reason.",
		}, []string{"reason"}),
		banned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_edge_banned_total", Help: "Stored entries removed or marked stale by bans (prefix, host, site and expression purges), by where the ban was applied: lookup or sweep.",
		}, []string{"where"}),
		bansAdded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_edge_bans_added_total", Help: "Bans made (prefix, host, site and expression purges).",
		}),
		bansRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_edge_bans_refused_total", Help: "Bans refused because purge.max_bans were active.",
		}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_edge_purged_total", Help: "Stored entries removed or marked stale by purges.",
		}),
		streamed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_edge_streamed_fills_total",
			Help: "Fills of a body of unknown length that outgrew max_object_bytes, or got no room in cache.max_inflight_bytes: streamed to their readers, not stored.",
		}),
		spooled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_edge_disk_spooled_fills_total",
			Help: "Fills of objects too large for memory written to the disk tier as they arrived and stored there.",
		}),
		spoolRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_edge_disk_spool_refused_total",
			Help: "Fills of objects too large for memory that the disk tier did not take (above its per-object limit, the disk full or failing, spools' share of the budget taken): streamed through, not stored.",
		}),
		abandoned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_edge_fills_abandoned_total",
			Help: "Fills called off because every client waiting on them left (work follows demand).",
		}),
		inflightRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_edge_inflight_rejected_total",
			Help: "Fills refused because cache.max_inflight_bytes stayed full for cache.inflight_wait (answered 503 or stale).",
		}),
		upgraded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_edge_upgraded_total",
			Help: "Connections upgraded (WebSocket) and spliced through to the origin.",
		}),
		upgradeRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_edge_upgrade_rejected_total",
			Help: "Upgrades refused (503) because server.max_upgraded connections were open.",
		}),
		upgradeDrained: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_edge_upgrade_drained_total",
			Help: "Upgraded connections (WebSocket) the edge closed because it was draining: after sites' upgrade.drain_grace, or at the drain's deadline.",
		}),
		ruleMatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_edge_rule_matches_total",
			Help: "Matches of sites' rules, by site, kind (redirect, rewrite, header, signed_url: by outcome valid/invalid/expired, geo: denials) and rule (its name, or its place in the config: headers.response[0], geo_access.rules[1]).",
		}, []string{"site", "kind", "rule"}),
	}
	m.slices = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meridian_edge_slice_requests_total",
		Help: "Slices of sliced objects (sites with slice_bytes) read to answer requests, by cache status and site; each is its own entry.",
	}, []string{"cache_status", "site"})
	m.sliceMismatches = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "meridian_edge_slice_mismatches_total",
		Help: "Slices whose ETag, Last-Modified or object length differed from their first slice's (the object changed at the origin): fetched again, revalidated.",
	})
	m.other = m.site(otherSite)
	m.banned.WithLabelValues("lookup")
	m.banned.WithLabelValues("sweep")
	if reg == nil {
		return m
	}
	storeGauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	reg.MustRegister(m.requests, m.bytesVec, m.fills, m.fillErrors, m.fillSeconds, m.collapsed, m.staleServed, m.purged, m.streamed, m.spooled, m.spoolRefused,
		m.abandoned, m.inflightRejected, m.upgraded, m.upgradeRejected, m.upgradeDrained, m.ruleMatches, m.banned, m.bansAdded, m.bansRefused,
		m.slices, m.sliceMismatches,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "meridian_edge_upgraded_connections",
			Help: "Upgraded connections open now (server.max_upgraded caps them)."}, func() float64 { return float64(h.upgraded.Load()) }),
		storeGauge("meridian_edge_bans", "Active bans: made and not yet retired by the sweeper (purge.max_bans bounds them).", func() float64 {
			return float64(len(h.bans.active()))
		}),
		storeGauge("meridian_edge_inflight_bytes", "Bytes held by the bodies of fills in progress (cache.max_inflight_bytes bounds them).", func() float64 {
			used, _ := h.inflight.stats()
			return float64(used)
		}),
		storeGauge("meridian_edge_store_bytes", "Bytes charged to the store (headers and bodies).", func() float64 {
			_, b, _ := h.StoreStats()
			return float64(b)
		}),
		storeGauge("meridian_edge_store_entries", "Entries in the store.", func() float64 {
			n, _, _ := h.StoreStats()
			return float64(n)
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "meridian_edge_evictions_total", Help: "Entries evicted to keep the store within its budget.",
		}, func() float64 {
			_, _, ev := h.StoreStats()
			return float64(ev)
		}),
	)
	if h.disk != nil {
		disk := func(f func(store.DiskStats) float64) func() float64 {
			return func() float64 { return f(h.disk.Stats()) }
		}
		counter := func(name, help string, f func(store.DiskStats) float64) prometheus.Collector {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, disk(f))
		}
		reg.MustRegister(
			storeGauge("meridian_edge_disk_bytes", "Bytes of the disk tier's files (cache.disk.max_bytes bounds them).",
				disk(func(st store.DiskStats) float64 { return float64(st.Bytes) })),
			storeGauge("meridian_edge_disk_spooling_bytes", "Bytes of the disk tier's budget held by objects too large for memory being written to it as they arrive.",
				disk(func(st store.DiskStats) float64 { return float64(st.Spooling) })),
			storeGauge("meridian_edge_disk_entries", "Entries in the disk tier.",
				disk(func(st store.DiskStats) float64 { return float64(st.Objects) })),
			storeGauge("meridian_edge_disk_full", "1 while the disk tier admits nothing after a failed write (a full or failing disk); hits are served as ever.",
				disk(func(st store.DiskStats) float64 {
					if st.Full {
						return 1
					}
					return 0
				})),
			storeGauge("meridian_edge_disk_index_load_seconds", "How long the disk tier took at start to load its index.",
				disk(func(st store.DiskStats) float64 { return st.LoadTime.Seconds() })),
			storeGauge("meridian_edge_disk_index_loaded_entries", "Entries the disk tier's index held when loaded at start.",
				disk(func(st store.DiskStats) float64 { return float64(st.Loaded) })),
			counter("meridian_edge_disk_hits_total", "Lookups answered by the disk tier (memory had no entry).",
				func(st store.DiskStats) float64 { return float64(st.Hits) }),
			counter("meridian_edge_disk_writes_total", "Entries written to the disk tier.",
				func(st store.DiskStats) float64 { return float64(st.Writes) }),
			counter("meridian_edge_disk_write_errors_total", "Failed writes to the disk tier.",
				func(st store.DiskStats) float64 { return float64(st.WriteErrors) }),
			counter("meridian_edge_disk_dropped_total", "Entries evicted from memory that the disk tier did not admit (its queue full, or the disk failing).",
				func(st store.DiskStats) float64 { return float64(st.Dropped) }),
			counter("meridian_edge_disk_evicted_segments_total", "Disk segments evicted to keep cache.disk.max_bytes.",
				func(st store.DiskStats) float64 { return float64(st.EvictedSegments) }),
			counter("meridian_edge_disk_reinserted_total", "Entries rewritten at the head of the disk tier when their segment was evicted, for having been asked for.",
				func(st store.DiskStats) float64 { return float64(st.Reinserted) }),
		)
	}
	return m
}

// classOf maps a response's Cache-Status to its request class.
func classOf(cs cacheStatus) int {
	switch {
	case strings.HasPrefix(cs.detail, "stale-"):
		return classStale
	case cs.detail == "error-backoff":
		return classError
	case cs.hit:
		return classHit
	case cs.fwd == "uri-miss" || cs.fwd == "vary-miss" || cs.fwd == "stale" || cs.fwd == "miss":
		return classMiss
	}
	return classPass
}

// siteCounters are one site's request counters, resolved.
type siteCounters struct {
	requests [numClasses][len(protocols)]prometheus.Counter
	// answered counts requests by class over protocols, as requests
	// does, for /status and the status page to read without reading
	// Prometheus's counters back.
	answered [numClasses]atomic.Uint64
	bytes    prometheus.Counter
	slices   [numClasses]prometheus.Counter // slice subrequests (slice.go)
}

// site returns the counters of a site label, resolving them the first
// time.
func (m *metrics) site(label string) *siteCounters {
	m.mu.Lock()
	defer m.mu.Unlock()
	if sc := m.sites[label]; sc != nil {
		return sc
	}
	sc := &siteCounters{bytes: m.bytesVec.WithLabelValues(label)}
	for c := range classNames {
		for p := range protocols {
			sc.requests[c][p] = m.requests.WithLabelValues(classNames[c], protocols[p], label)
		}
		sc.slices[c] = m.slices.WithLabelValues(classNames[c], label)
	}
	m.sites[label] = sc
	return sc
}

// classTotals sums the requests answered so far by class, over sites
// and protocols.
func (m *metrics) classTotals() [numClasses]float64 {
	m.mu.Lock()
	sites := make([]*siteCounters, 0, len(m.sites))
	for _, sc := range m.sites {
		sites = append(sites, sc)
	}
	m.mu.Unlock()
	var out [numClasses]float64
	for _, sc := range sites {
		for c := range out {
			out[c] += float64(sc.answered[c].Load())
		}
	}
	return out
}

// siteLabel is a site's label value: its first host, lower case, as the
// origin pool is named by default.
func siteLabel(sc SiteConfig) string {
	if len(sc.Hosts) == 0 {
		return otherSite
	}
	h, _ := normalizeHost(sc.Hosts[0])
	if h == "" {
		return otherSite
	}
	return h
}

// countersOf returns the counters of the site r is for; those of
// otherSite when no site serves its Host.
func (h *Handler) countersOf(r *http.Request) *siteCounters {
	if host, ok := normalizeHost(r.Host); ok {
		if st := h.route(host); st != nil {
			return st.counters
		}
	}
	return h.metrics.other
}

// request counts one answered request of a class over a protocol
// (protoMajor as http.Request has it) and its body bytes. Fronts book
// through Handler.delivered (hit.go).
func (sc *siteCounters) request(protoMajor, class int, bodyBytes int) {
	if protoMajor == protoSlice { // a slice: its client's answer is booked on its own
		sc.slices[class].Inc()
		return
	}
	p := protoMajor
	if p < 0 || p >= len(protocols) {
		p = 0
	}
	sc.requests[class][p].Inc()
	sc.answered[class].Add(1)
	if bodyBytes > 0 {
		sc.bytes.Add(float64(bodyBytes))
	}
}

func (m *metrics) fill(start time.Time, now time.Time, failed bool) {
	m.fills.Inc()
	m.fillSeconds.Observe(now.Sub(start).Seconds())
	if failed {
		m.fillErrors.Inc()
	}
}
