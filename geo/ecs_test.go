package geo

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/meridiancdn/meridian/geo/geodb"
)

// Seven regions, as a CDN spread over four continents has them; each has
// two edges on 127.0.N.1 and 127.0.N.2 (N = index + 1).
func sevenRegions() []Region {
	places := []struct {
		name string
		at   Point
	}{
		{"eu-central", Point{50.11, 8.68}}, // Frankfurt
		{"eu-west", Point{51.51, -0.13}},   // London
		{"us-east", Point{39.04, -77.49}},  // Ashburn
		{"us-west", Point{37.34, -121.89}}, // San Jose
		{"ap-ne", Point{35.69, 139.69}},    // Tokyo
		{"ap-se", Point{-33.87, 151.21}},   // Sydney
		{"sa-east", Point{-23.55, -46.63}}, // São Paulo
	}
	var rs []Region
	for i, p := range places {
		n := strconv.Itoa(i + 1)
		rs = append(rs, Region{Name: p.name, Point: p.at, Edges: []string{"127.0." + n + ".1:8080", "127.0." + n + ".2:8080"}})
	}
	return rs
}

// regionOfEdgeIP names the region of sevenRegions owning 127.0.N.x.
func regionOfEdgeIP(rs []Region, ip netip.Addr) string {
	if n := int(ip.As4()[2]); ip.Is4() && n >= 1 && n <= len(rs) {
		return rs[n-1].Name
	}
	return "?" + ip.String()
}

// subnetEntries is a GeoIP table in which several /24s and /56s hold
// narrower networks with different locations, some with no record at
// the subnet's first address, as real databases have them.
func subnetEntries() []geodb.Entry {
	at := func(lat, lon float64) *geodb.Location { return &geodb.Location{Lat: lat, Lon: lon, AccuracyKm: 20} }
	var (
		frankfurt = at(50.11, 8.68)
		chicago   = at(41.88, -87.63)
		melbourne = at(-37.81, 144.96)
		munich    = at(48.14, 11.58)
		berlin    = at(52.52, 13.40)
		edinburgh = at(55.95, -3.19)
		osaka     = at(34.69, 135.50)
		seattle   = at(47.61, -122.33)
		paris     = at(48.86, 2.35)
		dublin    = at(53.35, -6.26)
		zurich    = at(47.37, 8.54)
		rio       = at(-22.91, -43.17)
		saoPaulo  = at(-23.55, -46.63)
		tokyo     = at(35.69, 139.69)
		sydney    = at(-33.87, 151.21)
		losAng    = at(34.05, -118.24)
	)
	return []geodb.Entry{
		{Network: "192.0.2.0/24", Country: "DE", Location: frankfurt},
		{Network: "198.51.100.0/24", Country: "US", Location: chicago},
		{Network: "203.0.113.128/25", Country: "AU", Location: melbourne}, // .0/25: no record
		{Network: "45.10.20.64/26", Country: "DE", Location: munich},      // .0/26: no record
		{Network: "45.10.20.128/25", Country: "DE", Location: berlin},
		{Network: "45.10.30.0/28", Country: "GB", Location: edinburgh}, // a sliver at the start
		{Network: "45.10.30.64/26", Country: "JP", Location: osaka},    // .16/28, .32/27: no record
		{Network: "45.10.30.128/25", Country: "JP", Location: osaka},
		{Network: "45.10.40.0/22", Country: "US", Location: seattle},
		{Network: "62.1.2.0/25", Country: "FR", Location: paris},
		{Network: "62.1.2.128/25", Country: "IE", Location: dublin},
		{Network: "62.9.9.0/25", Country: "FR", Location: paris}, // half and half, two regions
		{Network: "62.9.9.128/25", Country: "CH", Location: zurich},
		{Network: "177.20.30.64/26", Country: "BR", Location: rio}, // .0/26: no record
		{Network: "177.20.30.128/25", Country: "BR", Location: saoPaulo},
		{Network: "126.0.0.0/8", Country: "JP", Location: tokyo},
		{Network: "1.120.0.0/13", Country: "AU", Location: sydney},
		{Network: "4.0.0.0/9", Country: "US", Location: losAng},
		{Network: "2001:db8:de::/48", Country: "DE", Location: frankfurt},
		{Network: "2001:db8:5:ab40::/58", Country: "JP", Location: osaka}, // ab00::/58: no record
		{Network: "2001:db8:5:ab80::/57", Country: "JP", Location: tokyo},
		{Network: "2001:db8:61::/48", Country: "AU", Location: sydney},
		{Network: "2001:db8:7:100::/57", Country: "CH", Location: zurich},
		{Network: "2001:db8:7:180::/57", Country: "DE", Location: munich},
	}
}

// subnetClients are fifteen clients with the region nearest to them by
// great-circle distance (computed apart from this code: Munich is 304 km
// from Frankfurt and 918 km from London, Osaka 397 km from Tokyo, Rio
// 361 km from São Paulo, Paris 343 km from London and 478 km from
// Frankfurt, Seattle 1143 km from San Jose and 3695 km from Ashburn…).
var subnetClients = []struct {
	ip, want, why string
}{
	{"192.0.2.10", "eu-central", "one /24 network, Frankfurt"},
	{"198.51.100.20", "us-east", "one /24 network, Chicago"},
	{"203.0.113.200", "ap-se", "first /25 has no record; Melbourne"},
	{"45.10.20.150", "eu-central", "first /26 has no record; Munich and Berlin"},
	{"45.10.30.200", "ap-ne", "a /28 in Edinburgh at the start, 3/4 Osaka"},
	{"45.10.40.9", "us-west", "inside a /22, Seattle"},
	{"62.1.2.130", "eu-west", "Paris and Dublin /25s"},
	{"177.20.30.200", "sa-east", "first /26 has no record; Rio and São Paulo"},
	{"126.50.60.70", "ap-ne", "inside a /8, Tokyo"},
	{"1.120.5.6", "ap-se", "inside a /13, Sydney"},
	{"4.2.2.2", "us-west", "inside a /9, Los Angeles"},
	{"2001:db8:de:1::5", "eu-central", "inside a /48, Frankfurt"},
	{"2001:db8:5:ab99::1", "ap-ne", "first /58 has no record; Osaka and Tokyo"},
	{"2001:db8:61:ff12::1", "ap-se", "inside a /48, Sydney"},
	{"2001:db8:7:1a0::1", "eu-central", "Zurich and Munich /57s"},
}

// runDNS serves s's DNS on UDP and TCP on 127.0.0.1 until the test ends.
func runDNS(t *testing.T, c Config, opts Options) (*Service, string) {
	t.Helper()
	c.DNS.Listen = "127.0.0.1:0"
	addrs := make(chan string, 1)
	opts.OnListening = func(d, _ string) { addrs <- d }
	if opts.Transport == nil {
		opts.Transport = newFakeEdges()
	}
	s := newTestService(t, c, opts)
	errc := make(chan error, 1)
	go func() { errc <- s.Run(context.Background()) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	})
	select {
	case a := <-addrs:
		return s, a
	case err := <-errc:
		t.Fatal(err)
	}
	return nil, ""
}

// exchangeDNS sends m over network ("udp" or "tcp"), asking again when a
// UDP datagram is lost, as a resolver does.
func exchangeDNS(t *testing.T, network, server string, m *dns.Msg) *dns.Msg {
	t.Helper()
	var err error
	for range 3 {
		var r *dns.Msg
		if r, _, err = (&dns.Client{Net: network, Timeout: 3 * time.Second}).Exchange(m, server); err == nil {
			return r
		}
	}
	t.Fatalf("%s exchange: %v", network, err)
	return nil
}

// ecsQuery asks A records of the CDN name with client subnet p; family
// 2 for IPv6 and IPv4-mapped prefixes.
func ecsQuery(p netip.Prefix) *dns.Msg {
	m := query("cdn.meridian.test.", dns.TypeA)
	m.SetEdns0(1232, false)
	e := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(p.Bits()), Address: p.Addr().AsSlice()}
	if p.Addr().Is6() {
		e.Family = 2
	}
	m.IsEdns0().Option = append(m.IsEdns0().Option, e)
	return m
}

func sevenRegionConfig() Config {
	return Config{Regions: sevenRegions(), DefaultRegion: "us-east"}
}

// TestSubnetTableOverRealDNS asks real DNS over UDP and TCP for fifteen
// clients, each by its full address and by the /24 or /56 that public
// resolvers send: every answer must be the client's nearest region, and
// TestSubnetScope checks the scopes.
func TestSubnetTableOverRealDNS(t *testing.T) {
	c := sevenRegionConfig()
	s, server := runDNS(t, c, Options{Locator: entriesLocator(t, subnetEntries())})
	for _, network := range []string{"udp", "tcp"} {
		right := map[string]int{}
		var wrong []string
		for _, cl := range subnetClients {
			ip := addr(cl.ip)
			bits := 24
			if ip.Is6() {
				bits = 56
			}
			sub, _ := ip.Prefix(bits)
			for _, p := range []netip.Prefix{netip.PrefixFrom(ip, ip.BitLen()), sub} {
				kind := "full"
				if p == sub {
					kind = "subnet"
				}
				r := exchangeDNS(t, network, server, ecsQuery(p))
				if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
					t.Fatalf("%s %s: %v", network, p, r)
				}
				a, _ := netip.AddrFromSlice(r.Answer[0].(*dns.A).A)
				got := regionOfEdgeIP(s.regions, a.Unmap())
				if got != cl.want {
					wrong = append(wrong, fmt.Sprintf("%s %s → %s, want %s (%s)", kind, p, got, cl.want, cl.why))
					continue
				}
				right[kind]++
			}
		}
		t.Logf("%s: right with the full address %d/%d, with the /24 or /56 %d/%d", network,
			right["full"], len(subnetClients), right["subnet"], len(subnetClients))
		if len(wrong) > 0 {
			t.Errorf("%s: %d wrong:\n%s", network, len(wrong), strings.Join(wrong, "\n"))
		}
	}
}

// TestSubnetScope: a /24 split between two regions gets the answer of one
// and a scope of /25, saying the answer holds only for a half; an
// IPv4-mapped subnet is placed as the IPv4 one, scope counted in IPv6
// bits; a subnet nothing in the database covers gets the default region
// for all of it.
func TestSubnetScope(t *testing.T) {
	s := newTestService(t, sevenRegionConfig(), Options{Locator: entriesLocator(t, subnetEntries())})
	for _, tt := range []struct {
		subnet, region string
		scope          uint8
	}{
		{"62.9.9.0/24", "eu-central", 25},   // Paris | Zurich: a tie, broken by name
		{"45.10.30.0/24", "ap-ne", 26},      // /28 Edinburgh, then Osaka from .64: they part at /26
		{"45.10.20.0/24", "eu-central", 24}, // every located part nearest Frankfurt
		{"::ffff:45.10.20.0/120", "eu-central", 120},
		{"::ffff:203.0.113.0/120", "ap-se", 120}, // was scope /48 and the default region
		{"::ffff:126.1.2.3/128", "ap-ne", 96 + 24},
		{"2001:db8:5:ab00::/56", "ap-ne", 56},
		{"45.200.0.0/24", "us-east", 24}, // no record at all: default region
		{"62.1.0.0/16", "eu-west", 16},   // Paris and Dublin, both nearest London
	} {
		r := s.answerDNS(ecsQuery(netip.MustParsePrefix(tt.subnet)), addr("127.0.0.1"), true)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
			t.Fatalf("%s: %v", tt.subnet, r)
		}
		a, _ := netip.AddrFromSlice(r.Answer[0].(*dns.A).A)
		e := replyECS(t, r)
		if got := regionOfEdgeIP(s.regions, a.Unmap()); got != tt.region || e.SourceScope != tt.scope {
			t.Errorf("%s → %s scope /%d, want %s scope /%d", tt.subnet, got, e.SourceScope, tt.region, tt.scope)
		}
	}
}

// TestECSAddressLength: RFC 7871 section 6: the ADDRESS carries exactly
// the octets SOURCE PREFIX-LENGTH needs; too many or too few is FORMERR,
// over real UDP and TCP.
func TestECSAddressLength(t *testing.T) {
	_, server := runDNS(t, sevenRegionConfig(), Options{Locator: entriesLocator(t, subnetEntries())})
	raw := func(family uint16, bits uint8, addr ...byte) *dns.Msg {
		m := query("cdn.meridian.test.", dns.TypeA)
		m.SetEdns0(1232, false)
		// EDNS0_LOCAL sends the bytes as they are; the server parses them
		// as a client subnet option.
		m.IsEdns0().Option = append(m.IsEdns0().Option,
			&dns.EDNS0_NSID{Code: dns.EDNS0NSID}, // another option before it
			&dns.EDNS0_LOCAL{Code: dns.EDNS0SUBNET, Data: append([]byte{byte(family >> 8), byte(family), bits, 0}, addr...)})
		return m
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tt := range []struct {
			name  string
			m     *dns.Msg
			rcode int
		}{
			{"/24 in 3 octets", raw(1, 24, 45, 10, 20), dns.RcodeSuccess},
			{"/24 in 4 octets", raw(1, 24, 45, 10, 20, 0), dns.RcodeFormatError},
			{"/24 in 2 octets", raw(1, 24, 45, 10), dns.RcodeFormatError},
			{"/20 in 3 octets", raw(1, 20, 45, 10, 16), dns.RcodeSuccess},
			{"/32 in 4 octets", raw(1, 32, 45, 10, 20, 150), dns.RcodeSuccess},
			{"/0 in 0 octets", raw(1, 0), dns.RcodeSuccess},
			{"/0 in 1 octet", raw(1, 0, 0), dns.RcodeFormatError},
			{"/56 in 7 octets", raw(2, 56, 0x20, 0x01, 0x0d, 0xb8, 0, 0x61, 0xff), dns.RcodeSuccess},
			{"/56 in 16 octets", raw(2, 56, 0x20, 0x01, 0x0d, 0xb8, 0, 0x61, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0), dns.RcodeFormatError},
		} {
			r := exchangeDNS(t, network, server, tt.m)
			if r.Rcode != tt.rcode {
				t.Errorf("%s %s: %s, want %s", network, tt.name, dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
			}
		}
	}
}
