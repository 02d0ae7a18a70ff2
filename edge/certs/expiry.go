package certs

import (
	"crypto/tls"
	"crypto/x509"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Expiry is when a served certificate expires.
type Expiry struct {
	// Source is where the certificate comes from: its config field
	// ("tls", "tls.certificates[1]", "sites[2].tls", "cluster.tls"), or
	// "acme" for one obtained over ACME.
	Source string
	// Name is the certificate's first DNS name (its subject's common
	// name when it has none); for ACME, the name it was obtained for.
	Name string
	// NotAfter is the end of its validity.
	NotAfter time.Time
}

// ExpiryOf is the Expiry of cert, as source serves it; ok is false for
// a certificate without a leaf that parses.
func ExpiryOf(source string, cert *tls.Certificate) (e Expiry, ok bool) {
	if cert == nil {
		return Expiry{}, false
	}
	leaf := cert.Leaf
	if leaf == nil {
		if len(cert.Certificate) == 0 {
			return Expiry{}, false
		}
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return Expiry{}, false
		}
	}
	name := leaf.Subject.CommonName
	if len(leaf.DNSNames) > 0 {
		name = leaf.DNSNames[0]
	}
	return Expiry{Source: source, Name: name, NotAfter: leaf.NotAfter}, true
}

// Expiries are the expiries of every certificate s serves now: each from
// files, and each obtained over ACME (one per name, the latest when a
// renewal left two; a name not obtained yet has none).
func (s *Source) Expiries() []Expiry {
	s.mu.Lock()
	entries := s.entries
	s.mu.Unlock()
	var out []Expiry
	for _, e := range entries {
		if x, ok := ExpiryOf(e.field, e.cert); ok {
			out = append(out, x)
		}
	}
	if s.acme != nil {
		out = append(out, s.acme.expiries()...)
	}
	return out
}

// expiries are the managed certificates' expiries.
func (m *manager) expiries() []Expiry {
	r := m.live.Load()
	if r == nil {
		return nil
	}
	m.mu.Lock()
	names := make([]string, 0, len(m.names))
	for n := range m.names {
		names = append(names, n)
	}
	m.mu.Unlock()
	slices.Sort(names)
	var out []Expiry
	for _, n := range names {
		var latest time.Time
		for _, c := range r.cache.AllMatchingCertificates(n) {
			if !slices.Contains(c.Names, n) {
				continue // a wildcard's
			}
			if x, ok := ExpiryOf("acme", &c.Certificate); ok && x.NotAfter.After(latest) {
				latest = x.NotAfter
			}
		}
		if !latest.IsZero() {
			out = append(out, Expiry{Source: "acme", Name: n, NotAfter: latest})
		}
	}
	return out
}

// expiryDesc is the metric of ExpiryCollector.
var expiryDesc = prometheus.NewDesc("meridian_tls_certificate_expiry_timestamp_seconds",
	"When each served certificate expires (its NotAfter, Unix seconds), by source (its config field, acme, cluster.tls) and name (its first DNS name, or the ACME name): alert when it comes near, as renewals that fail are otherwise silent.",
	[]string{"source", "name"}, nil)

// ExpiryCollector is a Prometheus collector of
// meridian_tls_certificate_expiry_timestamp_seconds, one series per
// Expiry that the funcs report at each scrape (a Source's Expiries, the
// cluster's link certificate). Register one per process.
func ExpiryCollector(fns ...func() []Expiry) prometheus.Collector {
	return expiryCollector(fns)
}

type expiryCollector []func() []Expiry

func (c expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- expiryDesc }

func (c expiryCollector) Collect(ch chan<- prometheus.Metric) {
	seen := map[[2]string]bool{}
	for _, f := range c {
		for _, x := range f() {
			k := [2]string{x.Source, x.Name}
			if seen[k] {
				continue // one series per label set: the first wins
			}
			seen[k] = true
			ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, float64(x.NotAfter.Unix()), x.Source, x.Name)
		}
	}
}
