package geo_test

import (
	"fmt"
	"net/netip"

	"github.com/meridiancdn/meridian/geo"
	"github.com/meridiancdn/meridian/geo/geodb"
)

// A steering service over a GeoIP table built in memory, as `meridian up`
// does: no database file, no listeners, no probes yet (every region counts
// as up until Run probes them).
func ExampleService_Route() {
	data, err := geodb.Bytes(geodb.Builtin())
	if err != nil {
		fmt.Println(err)
		return
	}
	loc, err := geo.NewLocator(data, 500)
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg := geo.Config{
		DefaultRegion: "us",
		Regions: []geo.Region{
			{Name: "eu", Point: geo.Point{Lat: 50.11, Lon: 8.68}, Edges: []string{"127.0.1.1:8080"}},
			{Name: "us", Point: geo.Point{Lat: 39.04, Lon: -77.49}, Edges: []string{"127.0.2.1:8080"}},
			{Name: "asia", Point: geo.Point{Lat: 35.69, Lon: 139.69}, Edges: []string{"127.0.3.1:8080"}},
		},
	}
	s, err := geo.New(cfg, geo.Options{Locator: loc})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	for _, ip := range []string{"192.0.2.1", "203.0.113.200", "10.0.0.1"} {
		a := s.Route(netip.MustParseAddr(ip))
		fmt.Printf("%-13s → %-4s %6.0f km  %s\n", ip, a.Region, a.DistanceKm, a.Why)
	}
	// Output:
	// 192.0.2.1     → eu        0 km  located by coordinates; nearest region
	// 203.0.113.200 → asia   7827 km  located by coordinates; nearest region
	// 10.0.0.1      → us        0 km  private address: default region; nearest region
}

// An edge whose own region fails looks for the next nearest one.
func ExampleRegions_ByDistance() {
	regions := geo.Regions{
		{Name: "eu", Point: geo.Point{Lat: 50.11, Lon: 8.68}},
		{Name: "us", Point: geo.Point{Lat: 39.04, Lon: -77.49}},
		{Name: "asia", Point: geo.Point{Lat: 35.69, Lon: 139.69}},
	}
	paris := geo.Point{Lat: 48.85, Lon: 2.35}
	for _, r := range regions.ByDistance(paris) {
		fmt.Printf("%s %.0f km\n", r.Name, paris.DistanceKm(r.Point))
	}
	// Output:
	// eu 478 km
	// us 6187 km
	// asia 9713 km
}
