package geo

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
)

// A client subnet (an EDNS Client Subnet, usually /24 or /56) can hold
// several GeoIP networks with different locations, and its first address
// may be in none of them. It is placed by the networks inside it: the
// region nearest to most of its located addresses, and the answer's scope
// says what the answer covers (RFC 7871 section 7.2.1): the whole subnet
// when every located network in it has that nearest region, else the
// longer prefix at which its networks' regions stop varying.

// subnetLimit bounds the parts of one client subnet examined: a /24 has
// at most 256. A subnet with more (a short prefix over a busy part of the
// database) is placed by its first address alone, scoped to that
// address's network, so that a query cannot make the service walk the
// whole database.
const subnetLimit = 1024

// subnetCacheSize is how many subnets' placements are remembered. A
// placement depends only on the database and the region table, both
// fixed for the Service's life.
const subnetCacheSize = 8192

// placement is where a client subnet is placed and for how much of it
// that holds.
type placement struct {
	loc Location
	why string
	// scope is the prefix length (in the subnet's own family) of the
	// addresses the placement, and so the answer, holds for.
	scope int
}

// place locates a client known by subnet p (a full-length prefix for a
// single address). p must be normalized (normPrefix).
func (s *Service) place(p netip.Prefix) placement {
	a := p.Addr()
	if p.Bits() == a.BitLen() || s.loc == nil || special(a) != "" || s.pinCovers(p) {
		loc, why := s.locate(a)
		return placement{loc: loc, why: why, scope: subnetScope(p, loc.Network)}
	}
	if pl, ok := s.subnets.Get(p); ok {
		return pl
	}
	pl := s.placeSubnet(p)
	s.subnets.Add(p, pl)
	return pl
}

// pinCovers reports whether a network pin holds all of p.
func (s *Service) pinCovers(p netip.Prefix) bool {
	for _, pin := range s.netPins {
		if pin.prefix.Bits() <= p.Bits() && pin.prefix.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// subnetScope is the scope of an answer for subnet p located in network
// n (invalid: none): the bits that decided it, the hashing subnet or a
// longer network, never more than p has.
func subnetScope(p, n netip.Prefix) int {
	bits := keyBits(p.Addr())
	if n.IsValid() && n.Addr().Is4() == p.Addr().Is4() {
		bits = max(bits, n.Bits())
	}
	return min(p.Bits(), bits)
}

// placeSubnet places a subnet shorter than an address by the GeoIP
// networks inside it.
func (s *Service) placeSubnet(p netip.Prefix) placement {
	parts, err := s.loc.LocateWithin(p, subnetLimit)
	if err != nil {
		loc, why := s.locate(p.Addr())
		scope := p.Addr().BitLen()
		if n := loc.Network; n.IsValid() && n.Addr().Is4() == p.Addr().Is4() {
			scope = max(p.Bits(), n.Bits())
		}
		s.log.Debug("client subnet placed by its first address", "subnet", p, "err", err)
		return placement{loc: loc, why: why + fmt.Sprintf(" (first address of %s: %v)", p, err), scope: scope}
	}
	if len(parts) == 1 && parts[0].Network.Bits() <= p.Bits() {
		// One network holds the whole subnet.
		loc, why := s.settle(parts[0])
		return placement{loc: loc, why: why, scope: subnetScope(p, parts[0].Network)}
	}

	type known struct {
		loc    Location
		why    string
		region int
		share  float64 // of the subnet's addresses
	}
	var located []known
	shares := make([]float64, len(s.regions))
	for _, part := range parts {
		if part.Source == SourceDefault {
			continue // the database does not place these addresses
		}
		loc, why := s.settle(part)
		if loc.Source == SourceDefault {
			continue
		}
		k := known{loc: loc, why: why, region: s.nearestRegion(loc.Point),
			share: math.Ldexp(1, p.Bits()-part.Network.Bits())}
		located = append(located, k)
		shares[k.region] += k.share
	}
	if len(located) == 0 {
		return placement{
			loc:   s.placeAt(s.defaultRegion, SourceDefault, netip.Prefix{}),
			why:   fmt.Sprintf("no network in subnet %s is in the GeoIP database: default region", p),
			scope: p.Bits(),
		}
	}
	win := 0
	for i := range shares {
		if cmp.Or(cmp.Compare(shares[i], shares[win]), cmp.Compare(s.regions[win].Name, s.regions[i].Name)) > 0 {
			win = i
		}
	}
	var best known
	for _, k := range located {
		if k.region == win && k.share > best.share {
			best = k
		}
	}
	total := 0.0
	for _, sh := range shares {
		total += sh
	}
	// The answer holds for the whole subnet when every located network
	// has the same nearest region; else for the prefix length at which
	// neighbouring networks of different regions separate.
	scope := p.Bits()
	for i := 1; i < len(located); i++ {
		if located[i].region != located[i-1].region {
			scope = max(scope, commonBits(located[i-1].loc.Network, located[i].loc.Network)+1)
		}
	}
	why := fmt.Sprintf("subnet %s holds %d networks, %.0f%% of its located addresses nearest %s; %s",
		p, len(parts), 100*shares[win]/total, s.regions[win].Name, best.why)
	return placement{loc: best.loc, why: why, scope: min(scope, p.Addr().BitLen())}
}

// nearestRegion is the index of the region nearest to pt (ties by name).
func (s *Service) nearestRegion(pt Point) int {
	best, bestD := 0, math.Inf(1)
	for i, r := range s.regions {
		d := pt.DistanceKm(r.Point)
		if d < bestD || d == bestD && r.Name < s.regions[best].Name {
			best, bestD = i, d
		}
	}
	return best
}

// commonBits is the length of the longest prefix that a and b share.
func commonBits(a, b netip.Prefix) int {
	n := min(a.Bits(), b.Bits())
	x, y := a.Addr().As16(), b.Addr().As16()
	off := 0
	if a.Addr().Is4() {
		off = 96
	}
	for i := range n {
		bit := off + i
		if x[bit/8]>>(7-bit%8)&1 != y[bit/8]>>(7-bit%8)&1 {
			return i
		}
	}
	return n
}
