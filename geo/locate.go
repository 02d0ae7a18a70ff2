package geo

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"
)

// Source says how a [Location] was found.
type Source string

// The sources of a location, from most to least precise.
const (
	// SourceCoordinates: the GeoIP record's coordinates, whose accuracy
	// radius is within the limit.
	SourceCoordinates Source = "coordinates"
	// SourceCountry: the record's country's centroid (no coordinates, or
	// too vague ones).
	SourceCountry Source = "country"
	// SourceCoarse: the record's coordinates although their radius is over
	// the limit, because its country is not in the centroid table (such
	// coordinates usually are the country's centre anyway).
	SourceCoarse Source = "coarse_coordinates"
	// SourceContinent: the record's continent's centroid.
	SourceContinent Source = "continent"
	// SourcePin: a configured pin placed the client at a region.
	SourcePin Source = "pin"
	// SourceDefault: nothing is known (private, loopback or unlisted
	// address, or no database): the client is placed at the default region.
	SourceDefault Source = "default"
)

// Location is where a client is believed to be.
type Location struct {
	Point
	// Source says how Point was found.
	Source Source `json:"source"`
	// Country and Continent are the GeoIP record's codes ("DE", "EU"),
	// empty when unknown.
	Country   string `json:"country,omitempty"`
	Continent string `json:"continent,omitempty"`
	// AccuracyKm is the record's accuracy radius, 0 when it has none.
	AccuracyKm int `json:"accuracy_km,omitempty"`
	// Network is the database network (or pin) the address fell in;
	// invalid when none.
	Network netip.Prefix `json:"network,omitzero"`
}

// Locator turns addresses into locations with a GeoIP2 or GeoLite2 City or
// Country database, held in memory. It is safe for concurrent use.
type Locator struct {
	db            *maxminddb.Reader
	dbType        string
	maxAccuracyKm float64
}

// record is the part of a GeoIP2/GeoLite2 City or Country record that
// places a client; decoding only these fields keeps lookups cheap.
type record struct {
	Continent struct {
		Code string `maxminddb:"code"`
	} `maxminddb:"continent"`
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	Location struct {
		Latitude       *float64 `maxminddb:"latitude"`
		Longitude      *float64 `maxminddb:"longitude"`
		AccuracyRadius uint16   `maxminddb:"accuracy_radius"`
	} `maxminddb:"location"`
}

// OpenLocator reads the database at path into memory. Coordinates whose
// accuracy radius exceeds maxAccuracyKm are not used (0: no limit).
func OpenLocator(path string, maxAccuracyKm float64) (*Locator, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("geoip database: %w", err)
	}
	l, err := NewLocator(data, maxAccuracyKm)
	if err != nil {
		return nil, fmt.Errorf("geoip database %s: %w", path, err)
	}
	return l, nil
}

// NewLocator uses the database in data (the bytes of an .mmdb file, such as
// geo/geodb.Write makes). It keeps data; the caller must not modify it.
func NewLocator(data []byte, maxAccuracyKm float64) (*Locator, error) {
	check, err := geoip2.OpenBytes(data)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	// City lookups are allowed on City and Country databases alike; any
	// other kind (ASN, ISP…) is refused here rather than on every lookup.
	if _, err := check.City(netip.IPv4Unspecified()); err != nil {
		return nil, fmt.Errorf("database type %q: %w", check.Metadata().DatabaseType, err)
	}
	// Lookups go to the MaxMind DB reader itself: it can also list the
	// networks inside a client subnet ([Locator.LocateWithin]).
	db, err := maxminddb.OpenBytes(data)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	return &Locator{db: db, dbType: db.Metadata.DatabaseType, maxAccuracyKm: maxAccuracyKm}, nil
}

// DatabaseType returns the database's type, such as "GeoLite2-City".
func (l *Locator) DatabaseType() string { return l.dbType }

// Locate finds addr: the record's coordinates when they are precise
// enough, else its country's centroid, else (coarse coordinates or) its
// continent's centroid. An address the database does not place has Source
// [SourceDefault] and no point; so has any address when err is not nil.
func (l *Locator) Locate(addr netip.Addr) (Location, error) {
	addr = addr.Unmap()
	if !addr.IsValid() {
		return Location{Source: SourceDefault}, nil
	}
	res := l.db.Lookup(addr)
	var rec record
	if err := res.Decode(&rec); err != nil {
		return Location{Source: SourceDefault}, fmt.Errorf("geoip lookup %s: %w", addr, err)
	}
	return l.place(rec, res.Prefix()), nil
}

// ErrTooManyNetworks is returned by [Locator.LocateWithin] when a prefix
// holds more database networks than the caller's limit.
var ErrTooManyNetworks = errors.New("geoip: prefix holds too many networks")

// LocateWithin places every part of prefix p: the database networks inside
// it, in address order, each as a Location whose Network is that network, and the parts the database does not cover as Locations
// with Source [SourceDefault] and their own Network. When p lies inside
// one database network, the one Location's Network is that wider
// network. An IPv4-mapped prefix is taken as the IPv4 prefix. It stops
// with [ErrTooManyNetworks] beyond limit parts (limit <= 0: no limit), so
// that a short prefix cannot make it walk the whole database. Records
// shared by several networks are decoded once.
func (l *Locator) LocateWithin(p netip.Prefix, limit int) ([]Location, error) {
	p = normPrefix(p)
	if !p.IsValid() {
		return nil, fmt.Errorf("geoip: invalid prefix %s", p)
	}
	var (
		out     []Location
		decoded = map[uintptr]Location{}
	)
	for res := range l.db.NetworksWithin(p, maxminddb.IncludeNetworksWithoutData()) {
		if err := res.Err(); err != nil {
			return nil, fmt.Errorf("geoip networks within %s: %w", p, err)
		}
		if limit > 0 && len(out) >= limit {
			return nil, fmt.Errorf("%w: more than %d in %s", ErrTooManyNetworks, limit, p)
		}
		n := res.Prefix()
		if !res.Found() {
			out = append(out, Location{Source: SourceDefault, Network: n})
			continue
		}
		loc, ok := decoded[res.Offset()]
		if !ok {
			var rec record
			if err := res.Decode(&rec); err != nil {
				return nil, fmt.Errorf("geoip networks within %s: %s: %w", p, n, err)
			}
			loc = l.place(rec, netip.Prefix{})
			decoded[res.Offset()] = loc
		}
		loc.Network = n
		out = append(out, loc)
	}
	return out, nil
}

// place turns a record into a Location: its coordinates when precise
// enough, else its country's centroid, else (coarse coordinates or) its
// continent's centroid.
func (l *Locator) place(rec record, network netip.Prefix) Location {
	loc := Location{
		Source:     SourceDefault,
		Country:    rec.Country.ISOCode,
		Continent:  rec.Continent.Code,
		AccuracyKm: int(rec.Location.AccuracyRadius),
		Network:    network,
	}
	coords, hasCoords := Point{}, rec.Location.Latitude != nil && rec.Location.Longitude != nil
	if hasCoords {
		coords = Point{Lat: *rec.Location.Latitude, Lon: *rec.Location.Longitude}
		hasCoords = coords.Valid()
	}
	precise := l.maxAccuracyKm <= 0 || float64(loc.AccuracyKm) <= l.maxAccuracyKm
	if hasCoords && precise {
		loc.Point, loc.Source = coords, SourceCoordinates
		return loc
	}
	if p, ok := CountryCentroid(loc.Country); ok {
		loc.Point, loc.Source = p, SourceCountry
		return loc
	}
	if hasCoords {
		loc.Point, loc.Source = coords, SourceCoarse
		return loc
	}
	if p, ok := ContinentCentroid(loc.Continent); ok {
		loc.Point, loc.Source = p, SourceContinent
		return loc
	}
	return loc
}
