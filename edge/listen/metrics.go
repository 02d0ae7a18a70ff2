package listen

import "github.com/prometheus/client_golang/prometheus"

// connMetrics are a Server's connection collectors.
type connMetrics struct {
	open          prometheus.Gauge
	rejected      *prometheus.CounterVec
	rejectedTotal prometheus.Counter // reason max_connections
	rejectedPerIP prometheus.Counter // reason max_connections_per_ip
	abusive       *prometheus.CounterVec
	ambiguous     prometheus.Counter
}

// Reasons of meridian_edge_connections_rejected_total.
const (
	rejectMaxConns      = "max_connections"
	rejectMaxConnsPerIP = "max_connections_per_ip"
)

func newConnMetrics() *connMetrics {
	m := &connMetrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meridian_edge_connections",
			Help: "Client connections open on the plain, HTTPS and QUIC listeners (server.max_connections caps them).",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_edge_connections_rejected_total",
			Help: "Client connections closed as they were accepted, by the cap they met (max_connections, max_connections_per_ip).",
		}, []string{"reason"}),
		abusive: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_edge_abusive_connections_closed_total",
			Help: "HTTP/2 and HTTP/3 connections closed because most of their recent requests were cancelled by the client before an answer (rapid reset), by protocol.",
		}, []string{"protocol"}),
		ambiguous: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_edge_ambiguous_framing_total",
			Help: "HTTP/1.1 requests refused with 400 and their connection closed because they carried both Content-Length and Transfer-Encoding (RFC 9112 §6.1).",
		}),
	}
	m.rejectedTotal = m.rejected.WithLabelValues(rejectMaxConns)
	m.rejectedPerIP = m.rejected.WithLabelValues(rejectMaxConnsPerIP)
	return m
}

func (m *connMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.open, m.rejected, m.abusive, m.ambiguous}
}

// protocols are the protocol label values of the abusive connections
// counter, indexed by ProtoMajor (0 = other), as edge labels requests.
var protocols = [4]string{"other", "http/1.1", "h2", "h3"}
