package geo

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	regionUpDesc = prometheus.NewDesc("meridian_geo_region_up",
		"1 while the region takes traffic (up or ramping back), 0 while it is down or held down.",
		[]string{"region"}, nil)
	regionTrafficDesc = prometheus.NewDesc("meridian_geo_region_traffic_percent",
		"Share of its clients the region takes: 100 up, the current step while ramping, else 0.",
		[]string{"region"}, nil)
	edgeUpDesc = prometheus.NewDesc("meridian_geo_edge_up",
		"1 while the edge answers its health probes.",
		[]string{"region", "edge"}, nil)
	failOpenDesc = prometheus.NewDesc("meridian_geo_fail_open",
		"1 while no edge of any region answers its probes and steering ignores health.",
		nil, nil)
	heldDesc = prometheus.NewDesc("meridian_geo_probe_rounds_held_total",
		"Probe rounds whose failures were ignored because the prober's self-check failed (a starved or broken prober).",
		nil, nil)
)

// Collector returns the service's Prometheus collector: region and edge
// health as the probes see them. It reads Status on every scrape.
func (s *Service) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Service }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- regionUpDesc
	ch <- regionTrafficDesc
	ch <- edgeUpDesc
	ch <- failOpenDesc
	ch <- heldDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Status()
	for _, r := range st.Regions {
		up := 0.0
		if r.State == StateUp || r.State == StateRamping {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(regionUpDesc, prometheus.GaugeValue, up, r.Name)
		ch <- prometheus.MustNewConstMetric(regionTrafficDesc, prometheus.GaugeValue, r.TrafficPercent, r.Name)
		for _, e := range r.Edges {
			v := 0.0
			if e.Up {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(edgeUpDesc, prometheus.GaugeValue, v, r.Name, e.Addr)
		}
	}
	fo := 0.0
	if st.FailOpen {
		fo = 1
	}
	ch <- prometheus.MustNewConstMetric(failOpenDesc, prometheus.GaugeValue, fo)
	ch <- prometheus.MustNewConstMetric(heldDesc, prometheus.CounterValue, float64(c.s.held.Load()))
}
