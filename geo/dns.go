package geo

import (
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// ednsSize is the UDP payload size advertised in replies: the DNS Flag Day
// 2020 value, which avoids IP fragmentation.
const ednsSize = 1232

// DNSHandler returns the authoritative DNS handler for DNS.Hostname, to be
// served on UDP and TCP with miekg/dns. The CDN host name gets A/AAAA
// records of the chosen region's healthy edges, located by the resolver's
// EDNS Client Subnet (RFC 7871, echoed with a scope) or else by the
// resolver's own address. Names below the host name get NXDOMAIN, names
// outside it REFUSED. It never answers SERVFAIL: with every region down
// it still names the least bad one.
func (s *Service) DNSHandler() dns.Handler { return dnsHandler{s} }

type dnsHandler struct{ s *Service }

var _ dns.Handler = dnsHandler{}

// ServeDNS implements dns.Handler.
func (h dnsHandler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	m := h.s.answerDNS(req, addrOf(w.RemoteAddr()), udp)
	if m == nil {
		return
	}
	if err := w.WriteMsg(m); err != nil {
		h.s.log.Debug("dns write failed", "remote", w.RemoteAddr(), "err", err)
	}
}

func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap()
}

// answerDNS builds the reply to req from a resolver at remote, or nil to
// send nothing (req is itself a response). It is the whole DNS logic,
// free of sockets.
func (s *Service) answerDNS(req *dns.Msg, remote netip.Addr, udp bool) *dns.Msg {
	if req.Response {
		return nil
	}
	m := new(dns.Msg)
	m.SetReply(req)
	if req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		return m
	}
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}

	// EDNS(0): at most one OPT, version 0, and a well-formed client subnet.
	var (
		reqOpt *dns.OPT
		ecs    *dns.EDNS0_SUBNET
	)
	for _, rr := range req.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if reqOpt != nil {
				m.Rcode = dns.RcodeFormatError
				return m
			}
			reqOpt = o
		}
	}
	if reqOpt != nil {
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(ednsSize)
		m.Extra = append(m.Extra, opt)
		if reqOpt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			return m
		}
		for _, o := range reqOpt.Option {
			if e, ok := o.(*dns.EDNS0_SUBNET); ok {
				if ecs != nil {
					m.Rcode = dns.RcodeFormatError
					return m
				}
				ecs = e
			}
		}
	}
	client := netip.PrefixFrom(remote, remote.BitLen())
	if ecs != nil {
		p, ok := ecsPrefix(ecs)
		if !ok || !ecsWireLenOK(reqOpt, ecs) {
			m.Rcode = dns.RcodeFormatError
			return m
		}
		if p.Bits() > 0 {
			client = p
		}
	}

	q := req.Question[0]
	zone := s.cfg.DNS.Hostname
	if !dns.IsSubDomain(zone, q.Name) || q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		m.Rcode = dns.RcodeRefused
		return s.finish(m, reqOpt, udp)
	}
	m.Authoritative = true
	ttl := uint32(s.cfg.DNS.TTL.Seconds())
	if !strings.EqualFold(q.Name, zone) {
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, s.soa(ttl))
		return s.finish(m, reqOpt, udp)
	}
	switch q.Qtype {
	case dns.TypeA, dns.TypeAAAA, dns.TypeANY:
		ans, scope := s.route(client)
		seen := map[netip.Addr]bool{}
		for _, e := range ans.Edges {
			ap, err := netip.ParseAddrPort(e)
			a := ap.Addr().Unmap()
			if err != nil || seen[a] {
				continue
			}
			seen[a] = true
			hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: ttl}
			switch {
			case a.Is4() && q.Qtype != dns.TypeAAAA:
				hdr.Rrtype = dns.TypeA
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
			case a.Is6() && q.Qtype != dns.TypeA:
				hdr.Rrtype = dns.TypeAAAA
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
			}
		}
		if ecs != nil {
			m.Extra[0].(*dns.OPT).Option = append(m.Extra[0].(*dns.OPT).Option, ecsReply(ecs, scope))
		}
	case dns.TypeSOA:
		m.Answer = append(m.Answer, s.soa(ttl))
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, s.soa(ttl)) // NODATA
	}
	return s.finish(m, reqOpt, udp)
}

// finish truncates a UDP reply to what the resolver can take.
func (s *Service) finish(m *dns.Msg, reqOpt *dns.OPT, udp bool) *dns.Msg {
	if udp {
		size := dns.MinMsgSize
		if reqOpt != nil {
			size = max(int(min(reqOpt.UDPSize(), ednsSize)), dns.MinMsgSize)
		}
		m.Truncate(size)
	}
	return m
}

// soa is the zone's SOA record; its minimum TTL is the negative-caching TTL.
func (s *Service) soa(ttl uint32) *dns.SOA {
	zone := s.cfg.DNS.Hostname
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      zone,
		Mbox:    "hostmaster." + zone,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  ttl,
	}
}

// ecsPrefix reads an EDNS Client Subnet option. A zero-length source
// prefix (any family) is valid and means "use the resolver's address".
// Address bits beyond the source prefix make it malformed (RFC 7871
// section 7.1.2).
func ecsPrefix(e *dns.EDNS0_SUBNET) (netip.Prefix, bool) {
	var (
		a  netip.Addr
		ok bool
	)
	switch e.Family {
	case 0:
		return netip.Prefix{}, e.SourceNetmask == 0
	case 1:
		a, ok = netip.AddrFromSlice(e.Address.To4())
	case 2:
		if len(e.Address) == net.IPv6len {
			a, ok = netip.AddrFromSlice(e.Address)
		}
	}
	if !ok || int(e.SourceNetmask) > a.BitLen() {
		return netip.Prefix{}, false
	}
	p := netip.PrefixFrom(a, int(e.SourceNetmask))
	if p.Masked() != p {
		return netip.Prefix{}, false
	}
	return p, true
}

// ecsWireLenOK reports whether the client subnet option had, on the
// wire, exactly the address bytes its source prefix needs: RFC 7871
// section 6 asks for FORMERR on too few or too many (miekg/dns pads or
// drops them silently). The OPT record's wire length, kept by the
// parser, less the length of its other options repacked, is the subnet
// option's. A message built in memory (length 0) is not checked.
func ecsWireLenOK(opt *dns.OPT, ecs *dns.EDNS0_SUBNET) bool {
	if opt.Hdr.Rdlength == 0 {
		return true
	}
	others := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	for _, o := range opt.Option {
		if o != dns.EDNS0(ecs) {
			others.Option = append(others.Option, o)
		}
	}
	buf := make([]byte, 64+2*int(opt.Hdr.Rdlength))
	if _, err := dns.PackRR(others, buf, 0, nil, false); err != nil {
		return true // cannot tell; the other options are not our business
	}
	// Option code and length (4 bytes), family and prefix lengths (4),
	// then the address bytes the source prefix covers.
	want := 4 + 4 + (int(ecs.SourceNetmask)+7)/8
	return int(opt.Hdr.Rdlength)-int(others.Hdr.Rdlength) == want
}

// ecsReply echoes the client subnet with the scope the answer holds for
// (RFC 7871 section 7.2.1): 0 when the resolver's own address was used.
func ecsReply(e *dns.EDNS0_SUBNET, scope int) *dns.EDNS0_SUBNET {
	if e.SourceNetmask == 0 {
		scope = 0
	}
	return &dns.EDNS0_SUBNET{
		Code:          dns.EDNS0SUBNET,
		Family:        e.Family,
		SourceNetmask: e.SourceNetmask,
		SourceScope:   uint8(scope),
		Address:       e.Address,
	}
}
