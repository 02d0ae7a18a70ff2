package certs_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridiancdn/meridian/edge/certs"
)

// Every certificate served from files has its expiry in
// meridian_tls_certificate_expiry_timestamp_seconds, by source and name,
// and a replaced file's new expiry shows after the poll; the cluster's
// certificate (another func) joins the same metric.
func TestExpiryMetric(t *testing.T) {
	ca, dir := newTestCA(t), t.TempDir()
	site := pair(t, ca, dir, "site", "www.site.test", "site.test")
	ticks := make(chan time.Time)
	src, err := certs.New(certs.Config{
		Default:        ptr(pair(t, ca, dir, "default", "default.test")),
		Sites:          []certs.Site{{Field: "sites[1].tls", Names: []string{"site.test", "www.site.test"}, Files: &site}},
		ReloadInterval: time.Hour,
	}, certs.Options{Ticks: func(time.Duration) (<-chan time.Time, func()) { return ticks, func() {} }})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := src.Start("127.0.0.1:1", "127.0.0.1:2"); err != nil {
		t.Fatal(err)
	}
	cluster := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(certs.ExpiryCollector(src.Expiries, func() []certs.Expiry {
		return []certs.Expiry{{Source: "cluster.tls", Name: "member", NotAfter: cluster}}
	}))
	gauge := func(source, name string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				l := m.GetLabel()
				if l[0].GetValue() == name && l[1].GetValue() == source {
					return m.GetGauge().GetValue()
				}
			}
		}
		return -1
	}
	exp := src.Expiries()
	if len(exp) != 2 {
		t.Fatalf("Expiries %v, want the default's and the site's", exp)
	}
	leafExpiry := exp[1].NotAfter
	if got := gauge("sites[1].tls", "www.site.test"); got != float64(leafExpiry.Unix()) || got <= float64(time.Now().Unix()) {
		t.Fatalf("site certificate expiry %v, want %v", got, leafExpiry.Unix())
	}
	if got := gauge("tls", "default.test"); got <= float64(time.Now().Unix()) {
		t.Fatalf("default certificate expiry %v", got)
	}
	if got := gauge("cluster.tls", "member"); got != float64(cluster.Unix()) {
		t.Fatalf("cluster certificate expiry %v, want %v", got, cluster.Unix())
	}

	// A renewed certificate on disk: its expiry is the new one's.
	later := ca.leafUntil(t, time.Now().Add(90*24*time.Hour), "www.site.test", "site.test")
	write(t, dir, "site.crt", later[0])
	write(t, dir, "site.key", later[1])
	for range 2 {
		ticks <- time.Now()
	}
	if got, want := gauge("sites[1].tls", "www.site.test"), float64(time.Now().Add(89*24*time.Hour).Unix()); got < want {
		t.Fatalf("after the renewal the expiry is %v, want after %v", time.Unix(int64(got), 0), time.Unix(int64(want), 0))
	}
}
