package origin

import (
	"math"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var _ prometheus.Collector = (*Pool)(nil)

// poolMetrics are a pool's metrics, each labelled with the pool's name so
// that several pools can share a registry.
type poolMetrics struct {
	requests   *prometheus.CounterVec   // server, code
	errors     *prometheus.CounterVec   // server, kind
	latency    *prometheus.HistogramVec // server
	retries    prometheus.Counter
	rejected   prometheus.Counter
	overloaded *prometheus.CounterVec // server, reason
	up         *prometheus.Desc       // server
	ejected    *prometheus.Desc       // server
	circuit    *prometheus.Desc
	inflight   *prometheus.Desc // server
	queued     *prometheus.Desc // server
	limit      *prometheus.Desc // server
	conns      *prometheus.Desc // server
}

func newPoolMetrics(pool string) *poolMetrics {
	constLabels := prometheus.Labels{"pool": pool}
	return &poolMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "meridian_origin_requests_total",
			Help:        "Tries sent to origin servers, by response status code (\"error\" when none came).",
			ConstLabels: constLabels,
		}, []string{"server", "code"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "meridian_origin_errors_total",
			Help:        "Failed tries and response bodies, by kind (timeout, refused, reset, truncated, protocol, canceled).",
			ConstLabels: constLabels,
		}, []string{"server", "kind"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        "meridian_origin_response_seconds",
			Help:        "Time from sending a request to an origin server to its response headers (or failure).",
			ConstLabels: constLabels,
			Buckets:     prometheus.DefBuckets,
		}, []string{"server"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "meridian_origin_retries_total",
			Help:        "Requests retried on another origin server.",
			ConstLabels: constLabels,
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "meridian_origin_rejected_total",
			Help:        "Requests failed at once because the circuit breaker was open.",
			ConstLabels: constLabels,
		}),
		overloaded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_origin_overloaded_total",
			Help: "Tries not sent because the server was at its max_inflight cap: its queue was full " +
				"(reason=queue_full) or no slot came free in time (reason=queue_timeout).",
			ConstLabels: constLabels,
		}, []string{"server", "reason"}),
		inflight: prometheus.NewDesc("meridian_origin_server_inflight",
			"Requests in flight to the origin server, response bodies not yet closed included.",
			[]string{"server"}, constLabels),
		queued: prometheus.NewDesc("meridian_origin_server_queued",
			"Requests waiting for a slot of the origin server (max_inflight reached).",
			[]string{"server"}, constLabels),
		limit: prometheus.NewDesc("meridian_origin_server_inflight_limit",
			"The origin server's cap on requests in flight now (max_inflight, or max_conns over HTTP/1.1); +Inf for none.",
			[]string{"server"}, constLabels),
		conns: prometheus.NewDesc("meridian_origin_server_connections",
			"Connections open to the origin server's address now, idle ones included (health checks' apart).",
			[]string{"server"}, constLabels),
		up: prometheus.NewDesc("meridian_origin_server_up",
			"1 if active health checks (when enabled) find the origin server healthy.",
			[]string{"server"}, constLabels),
		ejected: prometheus.NewDesc("meridian_origin_server_ejected",
			"1 while passive outlier detection has the origin server ejected.",
			[]string{"server"}, constLabels),
		circuit: prometheus.NewDesc("meridian_origin_circuit_open",
			"1 while the pool's circuit breaker is open.",
			nil, constLabels),
	}
}

// observe records one try to s that ended after elapsed with status code
// (0: no response, counted as "error").
//
// A 200, by far the most common, goes to the server's own counter and
// histogram, looked up once (serverMetrics) rather than by label values
// each time: hashing two labels and looking them up was about 1.4 % of a
// miss's CPU, and formatting the code an allocation.
func (m *poolMetrics) observe(s *server, code int, elapsed time.Duration) {
	if code == 200 {
		sm := s.metrics.Load()
		if sm == nil {
			sm = &serverMetrics{ok: m.requests.WithLabelValues(s.name, "200"), latency: m.latency.WithLabelValues(s.name)}
			s.metrics.Store(sm) // a race stores the same children twice
		}
		sm.ok.Inc()
		sm.latency.Observe(elapsed.Seconds())
		return
	}
	label := "error"
	if code > 0 {
		label = strconv.Itoa(code)
	}
	m.requests.WithLabelValues(s.name, label).Inc()
	m.latency.WithLabelValues(s.name).Observe(elapsed.Seconds())
}

// serverMetrics are one server's children of the pool's vectors that
// every successful try updates, resolved on its first 200.
type serverMetrics struct {
	ok      prometheus.Counter  // requests{code="200"}
	latency prometheus.Observer // latency
}

// Describe implements prometheus.Collector.
func (p *Pool) Describe(ch chan<- *prometheus.Desc) {
	m := p.metrics
	m.requests.Describe(ch)
	m.errors.Describe(ch)
	m.latency.Describe(ch)
	m.retries.Describe(ch)
	m.rejected.Describe(ch)
	m.overloaded.Describe(ch)
	ch <- m.up
	ch <- m.ejected
	ch <- m.circuit
	ch <- m.inflight
	ch <- m.queued
	ch <- m.limit
	ch <- m.conns
}

// Collect implements prometheus.Collector.
func (p *Pool) Collect(ch chan<- prometheus.Metric) {
	m := p.metrics
	m.requests.Collect(ch)
	m.errors.Collect(ch)
	m.latency.Collect(ch)
	m.retries.Collect(ch)
	m.rejected.Collect(ch)
	m.overloaded.Collect(ch)
	for _, s := range p.Servers() {
		ch <- prometheus.MustNewConstMetric(m.up, prometheus.GaugeValue, b2f(s.Healthy), s.URL)
		ch <- prometheus.MustNewConstMetric(m.ejected, prometheus.GaugeValue, b2f(!s.EjectedUntil.IsZero()), s.URL)
		ch <- prometheus.MustNewConstMetric(m.inflight, prometheus.GaugeValue, float64(s.InFlight), s.URL)
		ch <- prometheus.MustNewConstMetric(m.queued, prometheus.GaugeValue, float64(s.Queued), s.URL)
		ch <- prometheus.MustNewConstMetric(m.conns, prometheus.GaugeValue, float64(s.Conns), s.URL)
		limit := math.Inf(1)
		if s.MaxInflight >= 0 {
			limit = float64(s.MaxInflight)
		}
		ch <- prometheus.MustNewConstMetric(m.limit, prometheus.GaugeValue, limit, s.URL)
	}
	p.mu.Lock()
	open := !p.breaker.openUntil.IsZero()
	p.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(m.circuit, prometheus.GaugeValue, b2f(open))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
