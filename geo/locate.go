package geo

import (
	"fmt"
	"net/netip"
	"os"

	"github.com/oschwald/geoip2-golang/v2"
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
	db            *geoip2.Reader
	maxAccuracyKm float64
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
	db, err := geoip2.OpenBytes(data)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	// City lookups are allowed on City and Country databases alike; any
	// other kind (ASN, ISP…) is refused here rather than on every lookup.
	if _, err := db.City(netip.IPv4Unspecified()); err != nil {
		return nil, fmt.Errorf("database type %q: %w", db.Metadata().DatabaseType, err)
	}
	return &Locator{db: db, maxAccuracyKm: maxAccuracyKm}, nil
}

// DatabaseType returns the database's type, such as "GeoLite2-City".
func (l *Locator) DatabaseType() string { return l.db.Metadata().DatabaseType }

// Locate finds addr: the record's coordinates when they are precise
// enough, else its country's centroid, else (coarse coordinates or) its
// continent's centroid. An address the database does not place has Source
// [SourceDefault] and no point; so has any address when err is not nil.
func (l *Locator) Locate(addr netip.Addr) (Location, error) {
	addr = addr.Unmap()
	if !addr.IsValid() {
		return Location{Source: SourceDefault}, nil
	}
	rec, err := l.db.City(addr)
	if err != nil {
		return Location{Source: SourceDefault}, fmt.Errorf("geoip lookup %s: %w", addr, err)
	}
	loc := Location{
		Source:     SourceDefault,
		Country:    rec.Country.ISOCode,
		Continent:  rec.Continent.Code,
		AccuracyKm: int(rec.Location.AccuracyRadius),
		Network:    rec.Traits.Network,
	}
	coords, hasCoords := Point{}, rec.Location.HasCoordinates()
	if hasCoords {
		coords = Point{Lat: *rec.Location.Latitude, Lon: *rec.Location.Longitude}
		hasCoords = coords.Valid()
	}
	precise := l.maxAccuracyKm <= 0 || float64(loc.AccuracyKm) <= l.maxAccuracyKm
	if hasCoords && precise {
		loc.Point, loc.Source = coords, SourceCoordinates
		return loc, nil
	}
	if p, ok := CountryCentroid(loc.Country); ok {
		loc.Point, loc.Source = p, SourceCountry
		return loc, nil
	}
	if hasCoords {
		loc.Point, loc.Source = coords, SourceCoarse
		return loc, nil
	}
	if p, ok := ContinentCentroid(loc.Continent); ok {
		loc.Point, loc.Source = p, SourceContinent
		return loc, nil
	}
	return loc, nil
}
