package geo

import (
	"math"
	"net/netip"
	"testing"

	"github.com/meridiancdn/meridian/geo/geodb"
)

func openTestDB(t *testing.T, name string) *Locator {
	t.Helper()
	l, err := OpenLocator("testdata/geoip/"+name, defaultMaxAccuracyKm)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func near(a, b Point) bool { return a.DistanceKm(b) < 1 }

// TestLocateMaxMindTestDatabases checks the record shapes that
// source-data/*.json describe: city records with coordinates, records
// with only a country or only a continent, accuracy radii of 534 and
// 1000 km, IPv4 in IPv6 trees, and networks with no data at all.
func TestLocateMaxMindTestDatabases(t *testing.T) {
	bt, _ := CountryCentroid("BT")
	us, _ := CountryCentroid("US")
	jp, _ := CountryCentroid("JP")
	kr, _ := CountryCentroid("KR")
	eu, _ := ContinentCentroid("EU")
	tests := []struct {
		db, ip    string
		src       Source
		point     Point
		country   string
		continent string
	}{
		// GeoLite2-City: a London city record, radius 10 km.
		{"GeoLite2-City-Test.mmdb", "81.2.69.142", SourceCoordinates, Point{51.5142, -0.0931}, "GB", "EU"},
		{"GeoLite2-City-Test.mmdb", "::ffff:81.2.69.142", SourceCoordinates, Point{51.5142, -0.0931}, "GB", "EU"},
		{"GeoLite2-City-Test.mmdb", "216.160.83.56", SourceCoordinates, Point{47.2513, -122.3149}, "US", "NA"},
		{"GeoLite2-City-Test.mmdb", "2001:218::1", SourceCoordinates, Point{35.68536, 139.75309}, "JP", "AS"},
		// Bhutan with a 534 km radius: over the 500 km limit → country centroid.
		{"GeoLite2-City-Test.mmdb", "67.43.156.1", SourceCountry, bt, "BT", "AS"},
		// Continent and coordinates, no country (radius 100): coordinates.
		{"GeoLite2-City-Test.mmdb", "2a02:d500::1", SourceCoordinates, Point{48.69096, 9.14062}, "", "EU"},
		// GeoIP2-City: a 1000 km radius → the country's centroid.
		{"GeoIP2-City-Test.mmdb", "149.101.100.1", SourceCountry, us, "US", "NA"},
		{"GeoIP2-City-Test.mmdb", "216.160.83.65", SourceCountry, us, "US", "NA"},
		// Only a continent.
		{"GeoIP2-City-Test.mmdb", "2.3.3.1", SourceContinent, eu, "", "EU"},
		// Only traits (an anycast network): nothing to place.
		{"GeoIP2-City-Test.mmdb", "214.1.1.1", SourceDefault, Point{}, "", ""},
		// Not in the database.
		{"GeoIP2-City-Test.mmdb", "192.0.2.1", SourceDefault, Point{}, "", ""},
		// Country databases have no coordinates: country centroid.
		{"GeoIP2-Country-Test.mmdb", "2001:218::1", SourceCountry, jp, "JP", "AS"},
		{"GeoIP2-Country-Test.mmdb", "2001:220::1", SourceCountry, kr, "KR", "AS"},
		{"GeoLite2-Country-Test.mmdb", "81.2.69.142", SourceCountry, Point{54.8, -2.7}, "GB", "EU"},
		// A Country database record with only a continent.
		{"GeoIP2-Country-Test.mmdb", "2a02:d500::1", SourceContinent, eu, "", "EU"},
	}
	dbs := map[string]*Locator{}
	for _, tt := range tests {
		t.Run(tt.db+"/"+tt.ip, func(t *testing.T) {
			l := dbs[tt.db]
			if l == nil {
				l = openTestDB(t, tt.db)
				dbs[tt.db] = l
			}
			loc, err := l.Locate(addr(tt.ip))
			if err != nil {
				t.Fatal(err)
			}
			if loc.Source != tt.src || loc.Country != tt.country || loc.Continent != tt.continent {
				t.Errorf("Locate = %+v, want source %s country %q continent %q", loc, tt.src, tt.country, tt.continent)
			}
			if tt.src != SourceDefault && !near(loc.Point, tt.point) {
				t.Errorf("point %v, want %v", loc.Point, tt.point)
			}
			if tt.src != SourceDefault && !loc.Network.Contains(addr(tt.ip).Unmap()) {
				t.Errorf("network %v does not contain %s", loc.Network, tt.ip)
			}
		})
	}
}

func TestLocateAccuracyLimit(t *testing.T) {
	entries := []geodb.Entry{
		{Network: "192.0.2.0/25", Country: "US", Location: &geodb.Location{Lat: 47.6, Lon: -122.3, AccuracyKm: 1000}},
		{Network: "192.0.2.128/25", Country: "ZZ", Continent: "OC", Location: &geodb.Location{Lat: -9.4, Lon: 147.2, AccuracyKm: 800}},
	}
	data, err := geodb.Bytes(entries)
	if err != nil {
		t.Fatal(err)
	}
	strict, _ := NewLocator(data, 500)
	loose, _ := NewLocator(data, 0) // no limit
	us, _ := CountryCentroid("US")

	if loc, _ := strict.Locate(addr("192.0.2.1")); loc.Source != SourceCountry || !near(loc.Point, us) || loc.AccuracyKm != 1000 {
		t.Errorf("vague US record with limit: %+v", loc)
	}
	if loc, _ := loose.Locate(addr("192.0.2.1")); loc.Source != SourceCoordinates || !near(loc.Point, Point{47.6, -122.3}) {
		t.Errorf("vague US record without limit: %+v", loc)
	}
	// A country the centroid table lacks: the coarse coordinates beat the
	// continent's centre.
	if loc, _ := strict.Locate(addr("192.0.2.200")); loc.Source != SourceCoarse || !near(loc.Point, Point{-9.4, 147.2}) {
		t.Errorf("unknown country with vague coordinates: %+v", loc)
	}
}

func TestLocateInvalid(t *testing.T) {
	l := builtinLocator(t)
	if loc, err := l.Locate(netip.Addr{}); err != nil || loc.Source != SourceDefault {
		t.Errorf("invalid address: %+v %v", loc, err)
	}
	if _, err := NewLocator([]byte("not a database"), 0); err == nil {
		t.Error("garbage accepted as a database")
	}
	if l.DatabaseType() != "GeoLite2-City" {
		t.Errorf("type %q", l.DatabaseType())
	}
	loc, _ := l.Locate(addr("192.0.2.1"))
	if math.Abs(loc.Lat-50.11) > 1e-9 || loc.AccuracyKm != 100 || loc.Network != netip.MustParsePrefix("192.0.2.0/24") {
		t.Errorf("builtin 192.0.2.1: %+v", loc)
	}
}
