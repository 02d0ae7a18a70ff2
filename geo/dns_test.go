package geo

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

func withECS(m *dns.Msg, p netip.Prefix) *dns.Msg {
	if m.IsEdns0() == nil {
		m.SetEdns0(1232, false)
	}
	e := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(p.Bits()), Address: p.Addr().AsSlice()}
	if p.Addr().Is6() {
		e.Family = 2
	}
	m.IsEdns0().Option = append(m.IsEdns0().Option, e)
	return m
}

func replyECS(t *testing.T, r *dns.Msg) *dns.EDNS0_SUBNET {
	t.Helper()
	opt := r.IsEdns0()
	if opt == nil {
		t.Fatal("reply has no OPT")
	}
	for _, o := range opt.Option {
		if e, ok := o.(*dns.EDNS0_SUBNET); ok {
			return e
		}
	}
	t.Fatal("reply has no client subnet")
	return nil
}

func answerIPs(r *dns.Msg) []string {
	var ips []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			ips = append(ips, rr.A.String())
		case *dns.AAAA:
			ips = append(ips, rr.AAAA.String())
		}
	}
	slices.Sort(ips)
	return ips
}

var (
	euIPs   = []string{"127.0.1.1", "127.0.1.2", "127.0.1.3"}
	usIPs   = []string{"127.0.2.1", "127.0.2.2", "127.0.2.3"}
	asiaIPs = []string{"127.0.3.1", "127.0.3.2", "127.0.3.3"}
)

// TestDNSServer serves DNS on real UDP and TCP sockets on 127.0.0.1.
func TestDNSServer(t *testing.T) {
	c := testConfig()
	c.DNS.Listen = "127.0.0.1:0"
	addrs := make(chan string, 1)
	s := newTestService(t, c, Options{Transport: newFakeEdges(), OnListening: func(d, _ string) { addrs <- d }})
	errc := make(chan error, 1)
	go func() { errc <- s.Run(context.Background()) }()
	defer func() {
		s.Close()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}()
	var server string
	select {
	case server = <-addrs:
	case err := <-errc:
		t.Fatal(err)
	}

	exchange := func(network string, m *dns.Msg) *dns.Msg {
		t.Helper()
		var err error
		for try := 0; try < 3; try++ { // UDP may drop a datagram: ask again, as a resolver does
			var r *dns.Msg
			r, _, err = (&dns.Client{Net: network, Timeout: 3 * time.Second}).Exchange(m, server)
			if err == nil {
				return r
			}
		}
		t.Fatalf("%s exchange: %v", network, err)
		return nil
	}
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			// A Japanese client subnet gets the Asian region.
			r := exchange(network, withECS(query("cdn.meridian.test.", dns.TypeA), netip.MustParsePrefix("126.10.20.0/24")))
			if r.Rcode != dns.RcodeSuccess || !r.Authoritative || !slices.Equal(answerIPs(r), asiaIPs) {
				t.Fatalf("JP subnet: %v", r)
			}
			if ttl := r.Answer[0].Header().Ttl; ttl != 20 {
				t.Errorf("TTL %d, want 20", ttl)
			}
			if e := replyECS(t, r); e.Family != 1 || e.SourceNetmask != 24 || e.SourceScope != 24 || !e.Address.Equal(net.IPv4(126, 10, 20, 0)) {
				t.Errorf("ECS echo %v", e)
			}
			// IPv6 client subnet.
			r = exchange(network, withECS(query("cdn.meridian.test.", dns.TypeA), netip.MustParsePrefix("2001:db8:3::/48")))
			if !slices.Equal(answerIPs(r), asiaIPs) || replyECS(t, r).SourceScope != 48 {
				t.Errorf("JP IPv6 subnet: %v", r)
			}
			// No ECS: the resolver (127.0.0.1, loopback) is located: default.
			r = exchange(network, query("cdn.meridian.test.", dns.TypeA))
			if !slices.Equal(answerIPs(r), usIPs) || r.IsEdns0() != nil {
				t.Errorf("no ECS: %v", r)
			}
			r = exchange(network, query("www.example.org.", dns.TypeA))
			if r.Rcode != dns.RcodeRefused {
				t.Errorf("outside the zone: %v", r)
			}
		})
	}

	// Garbage over UDP: dropped or FORMERR, and the server keeps answering.
	conn, err := net.Dial("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		junk := make([]byte, rng.IntN(600))
		for j := range junk {
			junk[j] = byte(rng.Uint32())
		}
		if i == 0 {
			junk = []byte("garbage")
		}
		if _, err := conn.Write(junk); err != nil {
			t.Fatal(err)
		}
	}
	// A header that claims one question followed by junk: FORMERR. UDP
	// may drop a datagram under load (the flood above can fill the
	// socket's buffer), so the query is sent again, as a resolver would.
	bad := []byte{0xbe, 0xef, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff}
	buf := make([]byte, 2048)
	gotFormErr := false
	for try := 0; try < 5 && !gotFormErr; try++ {
		if _, err := conn.Write(bad); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		for !gotFormErr {
			n, err := conn.Read(buf)
			if err != nil {
				break // timed out: send again
			}
			var r dns.Msg
			if r.Unpack(buf[:n]) == nil && r.Id == 0xbeef {
				if r.Rcode != dns.RcodeFormatError {
					t.Fatalf("malformed query: rcode %s", dns.RcodeToString[r.Rcode])
				}
				gotFormErr = true
			}
		}
	}
	if !gotFormErr {
		t.Fatal("no FORMERR for a malformed query in 5 tries")
	}
	r := exchange("udp", withECS(query("cdn.meridian.test.", dns.TypeA), netip.MustParsePrefix("192.0.2.0/24")))
	if !slices.Equal(answerIPs(r), euIPs) {
		t.Fatalf("after garbage: %v", r)
	}
}

func TestDNSAnswers(t *testing.T) {
	c := testConfig()
	c.Regions = append(c.Regions, Region{Name: "v6", Point: Point{-33.87, 151.21}, Edges: []string{"[::1]:8080", "[::1]:8081"}})
	s := newTestService(t, c, Options{})
	jp := netip.MustParsePrefix("126.10.20.0/24")
	au := netip.MustParsePrefix("203.0.113.128/25") // Sydney: the v6 region
	lo := addr("127.0.0.1")
	tests := []struct {
		name  string
		req   *dns.Msg
		rcode int
		aa    bool
		ips   []string
		soa   bool // SOA in the authority section
	}{
		{"A", withECS(query("cdn.meridian.test.", dns.TypeA), jp), dns.RcodeSuccess, true, asiaIPs, false},
		{"case-insensitive", withECS(query("CDN.Meridian.Test.", dns.TypeA), jp), dns.RcodeSuccess, true, asiaIPs, false},
		{"ANY", withECS(query("cdn.meridian.test.", dns.TypeANY), jp), dns.RcodeSuccess, true, asiaIPs, false},
		{"AAAA of IPv4 edges: NODATA", withECS(query("cdn.meridian.test.", dns.TypeAAAA), jp), dns.RcodeSuccess, true, nil, true},
		{"AAAA", withECS(query("cdn.meridian.test.", dns.TypeAAAA), au), dns.RcodeSuccess, true, []string{"::1"}, false},
		{"A of IPv6 edges: NODATA", withECS(query("cdn.meridian.test.", dns.TypeA), au), dns.RcodeSuccess, true, nil, true},
		{"MX: NODATA", query("cdn.meridian.test.", dns.TypeMX), dns.RcodeSuccess, true, nil, true},
		{"below the name", query("x.cdn.meridian.test.", dns.TypeA), dns.RcodeNameError, true, nil, true},
		{"outside", query("meridian.test.", dns.TypeA), dns.RcodeRefused, false, nil, false},
		{"root", query(".", dns.TypeNS), dns.RcodeRefused, false, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.answerDNS(tt.req, lo, true)
			if r.Rcode != tt.rcode || r.Authoritative != tt.aa || !slices.Equal(answerIPs(r), tt.ips) {
				t.Fatalf("reply %v", r)
			}
			if hasSOA := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA; hasSOA != tt.soa {
				t.Errorf("SOA in authority: %v, want %v", hasSOA, tt.soa)
			}
			if r.Id != tt.req.Id || !r.Response || r.RecursionAvailable {
				t.Errorf("header %+v", r.MsgHdr)
			}
			if len(r.Answer) > 0 && r.Answer[0].Header().Name != tt.req.Question[0].Name {
				t.Errorf("answer name %q, want the question's %q", r.Answer[0].Header().Name, tt.req.Question[0].Name)
			}
			if _, err := r.Pack(); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("SOA", func(t *testing.T) {
		r := s.answerDNS(query("cdn.meridian.test.", dns.TypeSOA), lo, false)
		if len(r.Answer) != 1 || r.Answer[0].(*dns.SOA).Minttl != 20 {
			t.Errorf("SOA: %v", r)
		}
	})
	t.Run("class", func(t *testing.T) {
		q := query("cdn.meridian.test.", dns.TypeA)
		q.Question[0].Qclass = dns.ClassCHAOS
		if r := s.answerDNS(q, lo, true); r.Rcode != dns.RcodeRefused {
			t.Errorf("CHAOS: %v", r)
		}
	})
	t.Run("opcode", func(t *testing.T) {
		q := query("cdn.meridian.test.", dns.TypeSOA)
		q.Opcode = dns.OpcodeNotify
		if r := s.answerDNS(q, lo, true); r.Rcode != dns.RcodeNotImplemented {
			t.Errorf("NOTIFY: %v", r)
		}
	})
	t.Run("two questions", func(t *testing.T) {
		q := query("cdn.meridian.test.", dns.TypeA)
		q.Question = append(q.Question, q.Question[0])
		if r := s.answerDNS(q, lo, true); r.Rcode != dns.RcodeFormatError {
			t.Errorf("two questions: %v", r)
		}
	})
	t.Run("response", func(t *testing.T) {
		q := query("cdn.meridian.test.", dns.TypeA)
		q.Response = true
		if r := s.answerDNS(q, lo, true); r != nil {
			t.Errorf("answered a response: %v", r)
		}
	})
	t.Run("EDNS version", func(t *testing.T) {
		q := query("cdn.meridian.test.", dns.TypeA)
		q.SetEdns0(1232, false)
		q.IsEdns0().SetVersion(1)
		r := s.answerDNS(q, lo, true)
		if r.Rcode != dns.RcodeBadVers || r.IsEdns0() == nil {
			t.Fatalf("EDNS version 1: %v", r)
		}
		wire, err := r.Pack()
		if err != nil {
			t.Fatal(err)
		}
		var back dns.Msg
		if err := back.Unpack(wire); err != nil || back.Rcode != dns.RcodeBadVers {
			t.Errorf("BADVERS on the wire: %v %v", back.Rcode, err)
		}
	})
	t.Run("ECS host bits", func(t *testing.T) {
		q := query("cdn.meridian.test.", dns.TypeA)
		q.SetEdns0(1232, false)
		q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 16, Address: net.IPv4(126, 10, 20, 0)})
		if r := s.answerDNS(q, lo, true); r.Rcode != dns.RcodeFormatError {
			t.Errorf("ECS with bits past its prefix: %v", r)
		}
	})
	t.Run("ECS zero prefix", func(t *testing.T) {
		q := query("cdn.meridian.test.", dns.TypeA)
		q.SetEdns0(1232, false)
		q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 0, Address: net.IPv4(0, 0, 0, 0)})
		r := s.answerDNS(q, addr("126.1.2.3"), true) // a resolver in Japan
		if !slices.Equal(answerIPs(r), asiaIPs) || replyECS(t, r).SourceScope != 0 {
			t.Errorf("ECS /0: the resolver's address should be used, scope 0: %v", r)
		}
	})
	t.Run("ECS scope", func(t *testing.T) {
		for _, tt := range []struct {
			p     string
			scope uint8
		}{{"126.10.20.0/24", 24}, {"126.10.0.0/16", 16}, {"126.10.20.30/32", 24}, {"2001:db8:3::/56", 48},
			// The /32 holds /48s of several regions: the answer holds for
			// the /47s that separate 2001:db8:1::/48 (us) from :3:: (asia).
			{"2001:db8::/32", 47}} {
			r := s.answerDNS(withECS(query("cdn.meridian.test.", dns.TypeA), netip.MustParsePrefix(tt.p)), lo, true)
			if e := replyECS(t, r); e.SourceScope != tt.scope || int(e.SourceNetmask) != netip.MustParsePrefix(tt.p).Bits() {
				t.Errorf("%s: scope %d, want %d", tt.p, e.SourceScope, tt.scope)
			}
		}
	})
	t.Run("truncation", func(t *testing.T) {
		big := testConfig()
		big.Regions[0].Edges = nil
		for i := range 60 {
			big.Regions[0].Edges = append(big.Regions[0].Edges, "127.0.1."+strconv.Itoa(i+1)+":8080")
		}
		bs := newTestService(t, big, Options{})
		q := query("cdn.meridian.test.", dns.TypeA)
		r := bs.answerDNS(withECS(q, netip.MustParsePrefix("192.0.2.0/24")), lo, true)
		wire, _ := r.Pack()
		if len(wire) > 1232 {
			t.Errorf("UDP reply of %d bytes, truncated %v", len(wire), r.Truncated)
		}
		r = bs.answerDNS(query("cdn.meridian.test.", dns.TypeA), addr("192.0.2.1"), true)
		if wire, _ := r.Pack(); len(wire) > 512 || !r.Truncated {
			t.Errorf("no EDNS: %d bytes, TC %v", len(wire), r.Truncated)
		}
		r = bs.answerDNS(query("cdn.meridian.test.", dns.TypeA), addr("192.0.2.1"), false)
		if len(r.Answer) != 60 || r.Truncated {
			t.Errorf("TCP: %d answers, TC %v", len(r.Answer), r.Truncated)
		}
	})
	t.Run("all regions down", func(t *testing.T) {
		setStates(t, s, map[string]State{"eu": StateDown, "us": StateDown, "asia": StateDown, "v6": StateDown}, 0)
		r := s.answerDNS(withECS(query("cdn.meridian.test.", dns.TypeA), jp), lo, true)
		if r.Rcode != dns.RcodeSuccess || !slices.Equal(answerIPs(r), asiaIPs) {
			t.Errorf("all down: %v (want the nearest region, never SERVFAIL)", r)
		}
	})
}

// FuzzDNSAnswer feeds arbitrary packets through the server's path: unpack
// (the server answers FORMERR itself when that fails), then answerDNS.
// Every reply must pack, fit a UDP packet, match the query ID and never
// be SERVFAIL.
func FuzzDNSAnswer(f *testing.F) {
	for _, m := range []*dns.Msg{
		query("cdn.meridian.test.", dns.TypeA),
		query("cdn.meridian.test.", dns.TypeAAAA),
		query("x.cdn.meridian.test.", dns.TypeA),
		query("example.org.", dns.TypeMX),
		withECS(query("cdn.meridian.test.", dns.TypeA), netip.MustParsePrefix("126.10.20.0/24")),
		withECS(query("cdn.meridian.test.", dns.TypeANY), netip.MustParsePrefix("2001:db8:3::/48")),
		withECS(query("cdn.meridian.test.", dns.TypeA), netip.MustParsePrefix("::ffff:198.51.100.0/120")),
		withECS(query("cdn.meridian.test.", dns.TypeA), netip.MustParsePrefix("2001:db8::/32")),
	} {
		wire, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire)
	}
	s, err := New(testConfig(), Options{Locator: builtinLocator(f)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req dns.Msg
		if err := req.Unpack(data); err != nil {
			return
		}
		for _, udp := range []bool{true, false} {
			r := s.answerDNS(&req, addr("192.0.2.1"), udp)
			if r == nil {
				if !req.Response {
					t.Fatal("no reply to a query")
				}
				return
			}
			if r.Rcode == dns.RcodeServerFailure || r.Id != req.Id {
				t.Fatalf("reply %v", r)
			}
			wire, err := r.Pack()
			if err != nil {
				t.Fatalf("reply does not pack: %v\n%v", err, r)
			}
			if udp && len(wire) > ednsSize {
				t.Fatalf("UDP reply of %d bytes", len(wire))
			}
		}
	})
}
