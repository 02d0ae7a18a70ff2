package edge

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

// metrics are an edge's Prometheus collectors. The request counters are
// resolved once, so the hit path only increments.
type metrics struct {
	requests    [numClasses][len(protocols)]prometheus.Counter
	bytes       prometheus.Counter
	fills       prometheus.Counter
	fillErrors  prometheus.Counter
	fillSeconds prometheus.Histogram
	collapsed   prometheus.Counter
	staleServed *prometheus.CounterVec
	purged      prometheus.Counter
	streamed    prometheus.Counter
	// abandoned counts fills called off because every client left;
	// inflightRejected fills refused for want of in-flight budget.
	abandoned        prometheus.Counter
	inflightRejected prometheus.Counter
	// slices counts slice subrequests by class (slice.go), which are not
	// client requests; sliceMismatches slices that another version of
	// their object answered.
	slices          [numClasses]prometheus.Counter
	sliceMismatches prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, h *Handler) *metrics {
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meridian_edge_requests_total",
		Help: "Client requests answered, by cache status (hit, miss, stale, pass, error) and protocol.",
	}, []string{"cache_status", "protocol"})
	m := &metrics{
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_edge_response_body_bytes_total", Help: "Body bytes sent to clients from the cache and from fills.",
		}),
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
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_edge_purged_total", Help: "Stored entries removed or marked stale by purges.",
		}),
		streamed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_edge_streamed_fills_total",
			Help: "Fills of a body of unknown length that outgrew max_object_bytes: streamed to their readers, not stored.",
		}),
		abandoned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_edge_fills_abandoned_total",
			Help: "Fills called off because every client waiting on them left (work follows demand).",
		}),
		inflightRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_edge_inflight_rejected_total",
			Help: "Fills refused because cache.max_inflight_bytes stayed full for cache.inflight_wait (answered 503 or stale).",
		}),
	}
	slices := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meridian_edge_slice_requests_total",
		Help: "Slices of sliced objects (sites with slice_bytes) read to answer requests, by cache status; each is its own entry.",
	}, []string{"cache_status"})
	m.sliceMismatches = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "meridian_edge_slice_mismatches_total",
		Help: "Slices whose ETag, Last-Modified or object length differed from their first slice's (the object changed at the origin): fetched again, revalidated.",
	})
	for c := range classNames {
		for p := range protocols {
			m.requests[c][p] = reqs.WithLabelValues(classNames[c], protocols[p])
		}
		m.slices[c] = slices.WithLabelValues(classNames[c])
	}
	if reg == nil {
		return m
	}
	storeGauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	reg.MustRegister(reqs, slices, m.sliceMismatches, m.bytes, m.fills, m.fillErrors, m.fillSeconds, m.collapsed, m.staleServed, m.purged, m.streamed,
		m.abandoned, m.inflightRejected,
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

// request counts one answered request of a class over a protocol
// (protoMajor as http.Request has it) and its body bytes. Fronts book
// through Handler.delivered (hit.go).
func (m *metrics) request(protoMajor, class int, bodyBytes int) {
	if protoMajor == protoSlice { // a slice: its client's answer is booked on its own
		m.slices[class].Inc()
		return
	}
	p := protoMajor
	if p < 0 || p >= len(protocols) {
		p = 0
	}
	m.requests[class][p].Inc()
	if bodyBytes > 0 {
		m.bytes.Add(float64(bodyBytes))
	}
}

func (m *metrics) fill(start time.Time, now time.Time, failed bool) {
	m.fills.Inc()
	m.fillSeconds.Observe(now.Sub(start).Seconds())
	if failed {
		m.fillErrors.Inc()
	}
}
