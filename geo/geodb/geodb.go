// Package geodb writes small GeoIP databases from a table: MaxMind DB files
// with the record layout of GeoLite2-City, readable by geoip2-golang
// exactly as the real file, for tests and for `meridian up`'s built-in
// GeoIP.
package geodb

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// DatabaseType is the type written into the database's metadata; geoip2
// readers accept City lookups on it.
const DatabaseType = "GeoLite2-City"

// Entry is one network's record.
type Entry struct {
	// Network is a CIDR ("192.0.2.0/24", "2001:db8::/32"). Required.
	Network string
	// Country is an ISO 3166-1 alpha-2 code; "" leaves the record without
	// country (as GeoLite2 does for some networks).
	Country string
	// Continent is a GeoIP2 continent code (AF, AN, AS, EU, NA, OC, SA).
	// Default: the country's continent, when the country is known here.
	Continent string
	// City is the English city name; "" for none.
	City string
	// Location holds coordinates; nil leaves the record without them.
	Location *Location
}

// Location is a record's coordinates and their precision.
type Location struct {
	Lat, Lon float64
	// AccuracyKm is the accuracy radius in km (GeoLite2 uses 1 to 1000).
	AccuracyKm uint16
	// TimeZone is an IANA zone name ("Europe/Berlin"); "" for none.
	TimeZone string
}

// country is what the writer knows of a country: its English name,
// GeoNames id and continent.
type country struct {
	name      string
	geonameID uint32
	continent string
}

// countries are the GeoNames ids GeoLite2 uses; read-only.
var countries = map[string]country{
	"AU": {"Australia", 2077456, "OC"},
	"BR": {"Brazil", 3469034, "SA"},
	"CA": {"Canada", 6251999, "NA"},
	"DE": {"Germany", 2921044, "EU"},
	"FR": {"France", 3017382, "EU"},
	"GB": {"United Kingdom", 2635167, "EU"},
	"IN": {"India", 1269750, "AS"},
	"JP": {"Japan", 1861060, "AS"},
	"NL": {"Netherlands", 2750405, "EU"},
	"SG": {"Singapore", 1880251, "AS"},
	"US": {"United States", 6252001, "NA"},
	"ZA": {"South Africa", 953987, "AF"},
}

// continents are GeoNames' continent ids, as in GeoLite2; read-only.
var continents = map[string]country{
	"AF": {"Africa", 6255146, ""},
	"AN": {"Antarctica", 6255152, ""},
	"AS": {"Asia", 6255147, ""},
	"EU": {"Europe", 6255148, ""},
	"NA": {"North America", 6255149, ""},
	"OC": {"Oceania", 6255151, ""},
	"SA": {"South America", 6255150, ""},
}

// Write writes a database holding entries to w. A later entry replaces an
// earlier one where their networks overlap. Documentation and other
// reserved ranges are allowed, so a table can use 192.0.2.0/24 and
// 2001:db8::/32. IPv4 networks are also reachable through IPv4-mapped
// IPv6 addresses, as in the real databases.
func Write(w io.Writer, entries []Entry) error {
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            DatabaseType,
		Description:             map[string]string{"en": "Meridian built-in GeoIP table (not real geolocation)"},
		Languages:               []string{"en"},
		IncludeReservedNetworks: true,
		IPVersion:               6,
		RecordSize:              28,
	})
	if err != nil {
		return fmt.Errorf("geodb: %w", err)
	}
	for i, e := range entries {
		p, err := netip.ParsePrefix(e.Network)
		if err != nil {
			return fmt.Errorf("geodb: entries[%d].network: %w", i, err)
		}
		rec, err := e.record()
		if err != nil {
			return fmt.Errorf("geodb: entries[%d]: %w", i, err)
		}
		p = p.Masked()
		n := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
		if err := tree.Insert(n, rec); err != nil {
			return fmt.Errorf("geodb: entries[%d] (%s): %w", i, p, err)
		}
	}
	if _, err := tree.WriteTo(w); err != nil {
		return fmt.Errorf("geodb: write: %w", err)
	}
	return nil
}

// Bytes returns the database holding entries, for geo.NewLocator.
func Bytes(entries []Entry) ([]byte, error) {
	var b bytes.Buffer
	if err := Write(&b, entries); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func names(en string) mmdbtype.Map {
	return mmdbtype.Map{"en": mmdbtype.String(en)}
}

// record builds the GeoLite2-City record: city, continent, country,
// registered_country and location, each only when known.
func (e Entry) record() (mmdbtype.Map, error) {
	rec := mmdbtype.Map{}
	cont := e.Continent
	if e.Country != "" {
		c, ok := countries[e.Country]
		if !ok {
			if len(e.Country) != 2 {
				return nil, fmt.Errorf("country: %q is not a two-letter code", e.Country)
			}
			c = country{name: e.Country}
		}
		if cont == "" {
			cont = c.continent
		}
		cm := mmdbtype.Map{"iso_code": mmdbtype.String(e.Country), "names": names(c.name)}
		if c.geonameID != 0 {
			cm["geoname_id"] = mmdbtype.Uint32(c.geonameID)
		}
		rec["country"] = cm
		rec["registered_country"] = cm.Copy()
	}
	if cont != "" {
		c, ok := continents[cont]
		if !ok {
			return nil, fmt.Errorf("continent: unknown code %q", cont)
		}
		rec["continent"] = mmdbtype.Map{
			"code":       mmdbtype.String(cont),
			"geoname_id": mmdbtype.Uint32(c.geonameID),
			"names":      names(c.name),
		}
	}
	if e.City != "" {
		rec["city"] = mmdbtype.Map{"names": names(e.City)}
	}
	if l := e.Location; l != nil {
		if !(l.Lat >= -90 && l.Lat <= 90 && l.Lon >= -180 && l.Lon <= 180) {
			return nil, fmt.Errorf("location: (%v, %v) out of range", l.Lat, l.Lon)
		}
		lm := mmdbtype.Map{
			"latitude":        mmdbtype.Float64(l.Lat),
			"longitude":       mmdbtype.Float64(l.Lon),
			"accuracy_radius": mmdbtype.Uint16(l.AccuracyKm),
		}
		if l.TimeZone != "" {
			lm["time_zone"] = mmdbtype.String(l.TimeZone)
		}
		rec["location"] = lm
	}
	return rec, nil
}

// Builtin is a small table for demos and tests: the documentation ranges
// (RFC 5737, RFC 3849) spread over Germany, the United States, Japan,
// Brazil and Australia, and one real, large range of each of those
// countries, placed at a big city with a 100 km radius. It says nothing
// about where real clients are; use a GeoLite2 database for that.
func Builtin() []Entry {
	at := func(lat, lon float64, tz string) *Location {
		return &Location{Lat: lat, Lon: lon, AccuracyKm: 100, TimeZone: tz}
	}
	var (
		frankfurt = at(50.11, 8.68, "Europe/Berlin")
		ashburn   = at(39.04, -77.49, "America/New_York")
		tokyo     = at(35.69, 139.69, "Asia/Tokyo")
		saoPaulo  = at(-23.55, -46.63, "America/Sao_Paulo")
		sydney    = at(-33.87, 151.21, "Australia/Sydney")
	)
	return []Entry{
		// Documentation ranges: what examples and `meridian up` use.
		{Network: "192.0.2.0/24", Country: "DE", City: "Frankfurt am Main", Location: frankfurt},
		{Network: "198.51.100.0/25", Country: "US", City: "Ashburn", Location: ashburn},
		{Network: "198.51.100.128/25", Country: "BR", City: "São Paulo", Location: saoPaulo},
		{Network: "203.0.113.0/25", Country: "JP", City: "Tokyo", Location: tokyo},
		{Network: "203.0.113.128/25", Country: "AU", City: "Sydney", Location: sydney},
		{Network: "2001:db8:de::/48", Country: "DE", City: "Frankfurt am Main", Location: frankfurt},
		{Network: "2001:db8:1::/48", Country: "US", City: "Ashburn", Location: ashburn},
		{Network: "2001:db8:b7::/48", Country: "BR", City: "São Paulo", Location: saoPaulo},
		{Network: "2001:db8:3::/48", Country: "JP", City: "Tokyo", Location: tokyo},
		{Network: "2001:db8:61::/48", Country: "AU", City: "Sydney", Location: sydney},
		// Realistic allocations, coarsely placed.
		{Network: "91.0.0.0/10", Country: "DE", City: "Frankfurt am Main", Location: frankfurt}, // Deutsche Telekom
		{Network: "2003::/19", Country: "DE", City: "Frankfurt am Main", Location: frankfurt},   // Deutsche Telekom
		{Network: "4.0.0.0/9", Country: "US", City: "Ashburn", Location: ashburn},               // Level 3
		{Network: "2600:1700::/28", Country: "US", City: "Ashburn", Location: ashburn},          // AT&T
		{Network: "126.0.0.0/8", Country: "JP", City: "Tokyo", Location: tokyo},                 // SoftBank
		{Network: "2400:4000::/22", Country: "JP", City: "Tokyo", Location: tokyo},              // NTT
		{Network: "177.0.0.0/12", Country: "BR", City: "São Paulo", Location: saoPaulo},         // LACNIC, Brazil
		{Network: "2804::/16", Country: "BR", City: "São Paulo", Location: saoPaulo},            // LACNIC, Brazil
		{Network: "1.120.0.0/13", Country: "AU", City: "Sydney", Location: sydney},              // Telstra
		{Network: "2001:8000::/20", Country: "AU", City: "Sydney", Location: sydney},            // Telstra
	}
}
