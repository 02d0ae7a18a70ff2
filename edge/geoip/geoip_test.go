package geoip

import (
	"net/netip"
	"testing"
)

// The MaxMind test databases (geo/testdata/geoip, MIT or Apache 2.0, see
// the README there) place 81.2.69.142 in GB, 2.125.160.216 in GB and
// 89.160.20.112 in SE.
func TestLocate(t *testing.T) {
	for _, file := range []string{"GeoIP2-Country-Test.mmdb", "GeoLite2-City-Test.mmdb"} {
		db, err := Open("../../geo/testdata/geoip/" + file)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ addr, country, continent string }{
			{"81.2.69.142", "GB", "EU"},
			{"::ffff:81.2.69.142", "GB", "EU"},
			{"89.160.20.112", "SE", "EU"},
			{"127.0.0.1", "", ""},
		} {
			c, k := db.Locate(netip.MustParseAddr(tc.addr))
			if c != tc.country || k != tc.continent {
				t.Errorf("%s: %s: got %q %q, want %q %q", file, tc.addr, c, k, tc.country, tc.continent)
			}
		}
		if c, k := db.Locate(netip.Addr{}); c != "" || k != "" {
			t.Errorf("invalid address placed in %q %q", c, k)
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	if _, err := Open("../../geo/testdata/geoip/GeoLite2-ASN-Test.mmdb"); err == nil {
		t.Error("an ASN database was accepted")
	}
	if _, err := Open("testdata/missing.mmdb"); err == nil {
		t.Error("a missing file was accepted")
	}
	if _, err := FromBytes([]byte("not a database")); err == nil {
		t.Error("garbage was accepted")
	}
}
