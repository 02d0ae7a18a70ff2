package geo

import (
	"math"
	"slices"
	"testing"
)

func TestDistanceKm(t *testing.T) {
	london := Point{51.5074, -0.1278}
	tests := []struct {
		name       string
		a, b       Point
		want, tolK float64
	}{
		{"same point", frankfurt, frankfurt, 0, 0.001},
		{"Frankfurt–London", frankfurt, london, 638, 5},
		{"Frankfurt–Ashburn", frankfurt, ashburn, 6560, 30},
		{"Ashburn–Tokyo", ashburn, tokyo, 10900, 60},
		{"Frankfurt–Tokyo", frankfurt, tokyo, 9350, 50},
		{"quarter meridian", Point{0, 0}, Point{90, 0}, math.Pi / 2 * EarthRadiusKm, 0.001},
		{"antipodes", Point{0, 0}, Point{0, 180}, math.Pi * EarthRadiusKm, 0.001},
		{"across the antimeridian", Point{0, 179}, Point{0, -179}, 2 * math.Pi / 180 * EarthRadiusKm, 0.001},
		{"antimeridian at Fiji", Point{-17.7, 178.1}, Point{-13.8, -171.8}, 1150, 30}, // Suva–Apia
		{"poles", Point{90, 0}, Point{-90, 0}, math.Pi * EarthRadiusKm, 0.001},
		{"longitude meaningless at the pole", Point{90, 10}, Point{90, -170}, 0, 0.001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.a.DistanceKm(tt.b)
			if math.Abs(d-tt.want) > tt.tolK {
				t.Errorf("DistanceKm = %.3f km, want %.3f ± %v", d, tt.want, tt.tolK)
			}
			if back := tt.b.DistanceKm(tt.a); math.Abs(back-d) > 1e-9 {
				t.Errorf("not symmetric: %v vs %v", d, back)
			}
		})
	}
}

func TestPointValid(t *testing.T) {
	for _, p := range []Point{{0, 0}, {90, 180}, {-90, -180}} {
		if !p.Valid() {
			t.Errorf("%v not valid", p)
		}
	}
	for _, p := range []Point{{91, 0}, {0, 181}, {math.NaN(), 0}, {0, math.Inf(1)}} {
		if p.Valid() {
			t.Errorf("%v valid", p)
		}
	}
}

func TestCentroidTables(t *testing.T) {
	if n := len(countryCentroids); n < 60 {
		t.Errorf("%d country centroids, want at least 60", n)
	}
	for cc, p := range countryCentroids {
		if !isCountryCode(cc) || !p.Valid() {
			t.Errorf("country %q: %v", cc, p)
		}
	}
	for _, code := range []string{"AF", "AN", "AS", "EU", "NA", "OC", "SA"} {
		p, ok := ContinentCentroid(code)
		if !ok || !p.Valid() {
			t.Errorf("continent %s: %v %v", code, p, ok)
		}
	}
	if len(continentCentroids) != 7 {
		t.Errorf("%d continents", len(continentCentroids))
	}
	// Each country centroid lies in the right part of the world: nearer
	// its own continent's centroid than most others would be is too
	// strict for Russia or Turkey, so spot-check a few.
	for cc, want := range map[string]Point{"DE": {51, 10}, "JP": {36, 138}, "BR": {-14, -52}, "AU": {-25, 134}, "US": {40, -99}} {
		if p, _ := CountryCentroid(cc); p.DistanceKm(want) > 200 {
			t.Errorf("%s centroid %v is far from %v", cc, p, want)
		}
	}
	if _, ok := CountryCentroid("XX"); ok {
		t.Error("XX has a centroid")
	}
}

func TestByDistance(t *testing.T) {
	rs := Regions(testRegions())
	names := func(rs []Region) []string {
		var n []string
		for _, r := range rs {
			n = append(n, r.Name)
		}
		return n
	}
	tests := []struct {
		from Point
		want []string
	}{
		{Point{48.85, 2.35}, []string{"eu", "us", "asia"}},    // Paris
		{Point{40.71, -74.0}, []string{"us", "eu", "asia"}},   // New York
		{Point{37.57, 126.98}, []string{"asia", "eu", "us"}},  // Seoul
		{Point{-33.87, 151.21}, []string{"asia", "us", "eu"}}, // Sydney
	}
	for _, tt := range tests {
		if got := names(rs.ByDistance(tt.from)); !slices.Equal(got, tt.want) {
			t.Errorf("ByDistance(%v) = %v, want %v", tt.from, got, tt.want)
		}
	}
	// Across the antimeridian, and ties broken by name.
	pacific := Regions{
		{Name: "west", Point: Point{0, 170}},
		{Name: "dateline-east", Point: Point{0, -179}},
		{Name: "b-tie", Point: Point{10, 179}},
		{Name: "a-tie", Point: Point{-10, 179}},
	}
	if got, want := names(pacific.ByDistance(Point{0, 179})), []string{"dateline-east", "west", "a-tie", "b-tie"}; !slices.Equal(got, want) {
		t.Errorf("pacific order %v, want %v", got, want)
	}
	if len(Regions(nil).ByDistance(Point{})) != 0 {
		t.Error("nil regions")
	}
}
