package limit

import "github.com/prometheus/client_golang/prometheus"

var (
	_ prometheus.Collector = (*Limiter)(nil)
	_ prometheus.Collector = (*Gate)(nil)
)

var (
	limiterRefused = prometheus.NewDesc("meridian_limit_refused_total",
		"Requests refused by a per-client limiter: for their rate (reason=rate), for their requests in flight "+
			"(reason=concurrency), or because the table of clients in flight was full (reason=table_full).",
		[]string{"limiter", "reason"}, nil)
	limiterClients = prometheus.NewDesc("meridian_limit_clients",
		"Clients a per-client limiter remembers, by table (rate, concurrency).",
		[]string{"limiter", "table"}, nil)
	gateInflight = prometheus.NewDesc("meridian_limit_gate_inflight",
		"Requests admitted by a gate and not yet ended.",
		[]string{"gate"}, nil)
	gateQueued = prometheus.NewDesc("meridian_limit_gate_queued",
		"Requests waiting at a gate for one in flight to end.",
		[]string{"gate"}, nil)
	gateRefused = prometheus.NewDesc("meridian_limit_gate_refused_total",
		"Requests a gate refused (503): its queue was full (reason=queue_full) or the wait ran out (reason=queue_timeout).",
		[]string{"gate", "reason"}, nil)
)

// Describe implements prometheus.Collector.
func (l *Limiter) Describe(ch chan<- *prometheus.Desc) {
	ch <- limiterRefused
	ch <- limiterClients
}

// Collect implements prometheus.Collector.
func (l *Limiter) Collect(ch chan<- prometheus.Metric) {
	st, name := l.Stats(), l.cfg.Name
	ch <- prometheus.MustNewConstMetric(limiterRefused, prometheus.CounterValue, float64(st.RefusedRate), name, "rate")
	ch <- prometheus.MustNewConstMetric(limiterRefused, prometheus.CounterValue, float64(st.RefusedConcurrent), name, "concurrency")
	ch <- prometheus.MustNewConstMetric(limiterRefused, prometheus.CounterValue, float64(st.RefusedFull), name, "table_full")
	ch <- prometheus.MustNewConstMetric(limiterClients, prometheus.GaugeValue, float64(st.RateClients), name, "rate")
	ch <- prometheus.MustNewConstMetric(limiterClients, prometheus.GaugeValue, float64(st.ConcurrentClients), name, "concurrency")
}

// Describe implements prometheus.Collector.
func (g *Gate) Describe(ch chan<- *prometheus.Desc) {
	ch <- gateInflight
	ch <- gateQueued
	ch <- gateRefused
}

// Collect implements prometheus.Collector.
func (g *Gate) Collect(ch chan<- prometheus.Metric) {
	st, name := g.Stats(), g.cfg.Name
	ch <- prometheus.MustNewConstMetric(gateInflight, prometheus.GaugeValue, float64(st.InFlight), name)
	ch <- prometheus.MustNewConstMetric(gateQueued, prometheus.GaugeValue, float64(st.Queued), name)
	ch <- prometheus.MustNewConstMetric(gateRefused, prometheus.CounterValue, float64(st.RefusedFull), name, "queue_full")
	ch <- prometheus.MustNewConstMetric(gateRefused, prometheus.CounterValue, float64(st.RefusedTimeout), name, "queue_timeout")
}
