package geodb_test

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/meridiancdn/meridian/geo/geodb"
)

func openBuiltin(t *testing.T) (*geoip2.Reader, []byte) {
	t.Helper()
	data, err := geodb.Bytes(geodb.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	db, err := geoip2.OpenBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	return db, data
}

func TestBuiltinReadsAsGeoLite2City(t *testing.T) {
	db, _ := openBuiltin(t)
	if got := db.Metadata().DatabaseType; got != "GeoLite2-City" {
		t.Fatalf("database type %q", got)
	}
	tests := []struct {
		ip, country, continent, city string
		lat, lon                     float64
	}{
		{"192.0.2.77", "DE", "EU", "Frankfurt am Main", 50.11, 8.68},
		{"::ffff:192.0.2.77", "DE", "EU", "Frankfurt am Main", 50.11, 8.68}, // IPv4-mapped
		{"198.51.100.1", "US", "NA", "Ashburn", 39.04, -77.49},
		{"198.51.100.200", "BR", "SA", "São Paulo", -23.55, -46.63},
		{"203.0.113.9", "JP", "AS", "Tokyo", 35.69, 139.69},
		{"203.0.113.250", "AU", "OC", "Sydney", -33.87, 151.21},
		{"2001:db8:de::1", "DE", "EU", "Frankfurt am Main", 50.11, 8.68},
		{"2001:db8:3:ffff::1", "JP", "AS", "Tokyo", 35.69, 139.69},
		{"91.12.34.56", "DE", "EU", "Frankfurt am Main", 50.11, 8.68},
		{"126.1.2.3", "JP", "AS", "Tokyo", 35.69, 139.69},
		{"2804:14c::1", "BR", "SA", "São Paulo", -23.55, -46.63},
		{"1.121.0.1", "AU", "OC", "Sydney", -33.87, 151.21},
		{"4.2.2.2", "US", "NA", "Ashburn", 39.04, -77.49},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			rec, err := db.City(netip.MustParseAddr(tt.ip))
			if err != nil {
				t.Fatal(err)
			}
			if rec.Country.ISOCode != tt.country || rec.RegisteredCountry.ISOCode != tt.country {
				t.Errorf("country %q, registered %q; want %q", rec.Country.ISOCode, rec.RegisteredCountry.ISOCode, tt.country)
			}
			if rec.Continent.Code != tt.continent || rec.Continent.GeoNameID == 0 || rec.Continent.Names.English == "" {
				t.Errorf("continent %+v; want code %q with id and name", rec.Continent, tt.continent)
			}
			if rec.Country.GeoNameID == 0 || rec.Country.Names.English == "" {
				t.Errorf("country record %+v lacks id or name", rec.Country)
			}
			if rec.City.Names.English != tt.city {
				t.Errorf("city %q, want %q", rec.City.Names.English, tt.city)
			}
			l := rec.Location
			if !l.HasCoordinates() || *l.Latitude != tt.lat || *l.Longitude != tt.lon || l.AccuracyRadius != 100 || l.TimeZone == "" {
				t.Errorf("location %+v", l)
			}
		})
	}
	for _, ip := range []string{"8.8.8.8", "2001:db8:ffff::1", "10.0.0.1"} {
		rec, err := db.City(netip.MustParseAddr(ip))
		if err != nil {
			t.Fatal(err)
		}
		if rec.HasData() {
			t.Errorf("%s: unexpected record %+v", ip, rec)
		}
	}
}

// TestLayoutMatchesRealDatabase decodes a record of MaxMind's
// GeoLite2-City test database and one of ours as generic maps: every key
// and value type we write must exist, with the same type, in the real one.
func TestLayoutMatchesRealDatabase(t *testing.T) {
	real, err := maxminddb.Open("../testdata/geoip/GeoLite2-City-Test.mmdb")
	if err != nil {
		t.Fatal(err)
	}
	defer real.Close()
	var want map[string]any
	if err := real.Lookup(netip.MustParseAddr("81.2.69.142")).Decode(&want); err != nil {
		t.Fatal(err)
	}
	_, data := openBuiltin(t)
	ours, err := maxminddb.OpenBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := ours.Lookup(netip.MustParseAddr("192.0.2.1")).Decode(&got); err != nil {
		t.Fatal(err)
	}
	var walk func(path string, got, want any)
	walk = func(path string, got, want any) {
		if reflect.TypeOf(got) != reflect.TypeOf(want) {
			t.Errorf("%s: type %T, real database has %T", path, got, want)
			return
		}
		gm, ok := got.(map[string]any)
		if !ok {
			return
		}
		wm := want.(map[string]any)
		for _, k := range slices.Sorted(maps.Keys(gm)) {
			if path == "city.names" || path == "country.names" || path == "registered_country.names" || path == "continent.names" {
				if k != "en" {
					t.Errorf("%s.%s: only en names are written", path, k)
				}
			}
			w, ok := wm[k]
			if !ok {
				t.Errorf("%s.%s: not in the real database's record", path, k)
				continue
			}
			walk(strings.TrimPrefix(path+"."+k, "."), gm[k], w)
		}
	}
	walk("", got, want)
	for _, k := range []string{"city", "continent", "country", "registered_country", "location"} {
		if _, ok := got[k]; !ok {
			t.Errorf("record lacks %q", k)
		}
	}
	if ours.Metadata.Languages[0] != "en" || ours.Metadata.IPVersion != 6 || ours.Metadata.RecordSize != 28 {
		t.Errorf("metadata %+v", ours.Metadata)
	}
}

func TestPartialRecords(t *testing.T) {
	data, err := geodb.Bytes([]geodb.Entry{
		{Network: "192.0.2.0/26", Country: "DE"},    // country only
		{Network: "192.0.2.64/26", Continent: "EU"}, // continent only
		{Network: "192.0.2.128/26", Country: "US", Location: &geodb.Location{Lat: 37.751, Lon: -97.822, AccuracyKm: 1000}}, // vague
		{Network: "192.0.2.192/26", Country: "ZZ"}, // unknown to the writer
		{Network: "192.0.2.0/28", Country: "JP"},   // later entry wins
	})
	if err != nil {
		t.Fatal(err)
	}
	db, err := geoip2.OpenBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	city := func(ip string) *geoip2.City {
		rec, err := db.City(netip.MustParseAddr(ip))
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	if r := city("192.0.2.20"); r.Country.ISOCode != "DE" || r.Continent.Code != "EU" || r.Location.HasCoordinates() || r.City.HasData() {
		t.Errorf("country-only record: %+v", r)
	}
	if r := city("192.0.2.1"); r.Country.ISOCode != "JP" {
		t.Errorf("overlap: got %q, want the later JP", r.Country.ISOCode)
	}
	if r := city("192.0.2.70"); r.Country.HasData() || r.Continent.Code != "EU" {
		t.Errorf("continent-only record: %+v", r)
	}
	if r := city("192.0.2.130"); r.Location.AccuracyRadius != 1000 || r.Continent.Code != "NA" {
		t.Errorf("vague record: %+v", r)
	}
	if r := city("192.0.2.200"); r.Country.ISOCode != "ZZ" || r.Continent.HasData() {
		t.Errorf("unknown country: %+v", r)
	}
	// The Country method works on it too, as on a real City database.
	if c, err := db.Country(netip.MustParseAddr("192.0.2.20")); err != nil || c.Country.ISOCode != "DE" {
		t.Errorf("Country lookup: %+v, %v", c, err)
	}
}

func TestWriteErrors(t *testing.T) {
	tests := []struct {
		e    geodb.Entry
		want string
	}{
		{geodb.Entry{Network: "192.0.2.0/33"}, "entries[0].network"},
		{geodb.Entry{Network: "nonsense"}, "entries[0].network"},
		{geodb.Entry{Network: "192.0.2.0/24", Country: "DEU"}, "country"},
		{geodb.Entry{Network: "192.0.2.0/24", Continent: "XX"}, "continent"},
		{geodb.Entry{Network: "192.0.2.0/24", Location: &geodb.Location{Lat: 91}}, "location"},
	}
	for _, tt := range tests {
		err := geodb.Write(discard{}, []geodb.Entry{tt.e})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Write(%+v) = %v, want error naming %q", tt.e, err, tt.want)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// ExampleWrite builds a one-network database file for a test or a demo.
func ExampleWrite() {
	f, err := os.CreateTemp("", "example-*.mmdb")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.Remove(f.Name())
	err = geodb.Write(f, []geodb.Entry{{
		Network:  "192.0.2.0/24",
		Country:  "DE",
		City:     "Frankfurt am Main",
		Location: &geodb.Location{Lat: 50.11, Lon: 8.68, AccuracyKm: 20},
	}})
	if err := f.Close(); err != nil {
		fmt.Println(err)
		return
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	db, err := geoip2.Open(f.Name())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	rec, _ := db.City(netip.MustParseAddr("192.0.2.1"))
	fmt.Println(db.Metadata().DatabaseType, rec.Country.ISOCode, rec.City.Names.English, *rec.Location.Latitude)
	// Output: GeoLite2-City DE Frankfurt am Main 50.11
}
