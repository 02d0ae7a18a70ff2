// Package geoip places client addresses in a country and a continent with
// a MaxMind DB file (GeoIP2 or GeoLite2, City or Country), held in
// memory: the lookup behind a site's geo access rules (edge/rules). It is
// the edge's own small reader, so that the edge does not depend on the
// geo steering service (package geo).
package geoip

import (
	"fmt"
	"net/netip"
	"os"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"
)

// DB is an open database. It is safe for concurrent use.
type DB struct {
	db *maxminddb.Reader
}

// record is the part of a City or Country record read: decoding only
// these fields keeps a lookup cheap.
type record struct {
	Continent struct {
		Code string `maxminddb:"code"`
	} `maxminddb:"continent"`
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
}

// Open reads the database at path into memory.
func Open(path string) (*DB, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("geoip database: %w", err)
	}
	db, err := FromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("geoip database %s: %w", path, err)
	}
	return db, nil
}

// FromBytes uses the database in data (an .mmdb file's bytes), which it
// keeps: the caller must not change them. A database that has no country
// records (ASN, ISP, ...) is refused.
func FromBytes(data []byte) (*DB, error) {
	check, err := geoip2.OpenBytes(data)
	if err != nil {
		return nil, err
	}
	if _, err := check.Country(netip.IPv4Unspecified()); err != nil {
		return nil, fmt.Errorf("database type %q has no countries: %w", check.Metadata().DatabaseType, err)
	}
	r, err := maxminddb.OpenBytes(data)
	if err != nil {
		return nil, err
	}
	return &DB{db: r}, nil
}

// Locate returns addr's ISO 3166-1 country code and continent code, ""
// for what the database does not know (or an invalid address).
func (d *DB) Locate(addr netip.Addr) (country, continent string) {
	addr = addr.Unmap()
	if !addr.IsValid() {
		return "", ""
	}
	var rec record
	if err := d.db.Lookup(addr).Decode(&rec); err != nil {
		return "", ""
	}
	return rec.Country.ISOCode, rec.Continent.Code
}
