package geo

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

var benchClients = []string{
	"192.0.2.10", "198.51.100.7", "203.0.113.5", "91.20.30.40", "4.2.2.2",
	"126.10.20.30", "2001:db8:de::5", "2804:14c::1", "8.8.8.8", "10.1.2.3",
}

// BenchmarkRoute measures the full "IP to answer" path: GeoIP lookup,
// location fallback, distance to every region, health and the picker.
func BenchmarkRoute(b *testing.B) {
	for _, db := range []string{"builtin", "GeoLite2-City-Test"} {
		b.Run(db, func(b *testing.B) {
			c := testConfig()
			opts := Options{}
			if db == "builtin" {
				opts.Locator = builtinLocator(b)
			} else {
				c.Database = "testdata/geoip/" + db + ".mmdb"
			}
			s, err := New(c, opts)
			if err != nil {
				b.Fatal(err)
			}
			addrs := make([]netip.Addr, len(benchClients))
			for i, a := range benchClients {
				addrs[i] = netip.MustParseAddr(a)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if s.Route(addrs[i%len(addrs)]).Region == "" {
					b.Fatal("no region")
				}
				i++
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
		})
	}
}

// BenchmarkDNSAnswer measures one DNS query with a client subnet, from
// the unpacked message to the packed reply.
func BenchmarkDNSAnswer(b *testing.B) {
	s, err := New(testConfig(), Options{Locator: builtinLocator(b)})
	if err != nil {
		b.Fatal(err)
	}
	q := new(dns.Msg)
	q.SetQuestion("cdn.meridian.test.", dns.TypeA)
	q.SetEdns0(1232, false)
	q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: netip.MustParseAddr("126.10.20.0").AsSlice()})
	resolver := netip.MustParseAddr("127.0.0.1")
	b.ReportAllocs()
	for b.Loop() {
		r := s.answerDNS(q, resolver, true)
		if _, err := r.Pack(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}
