package geo

import "math"

// EarthRadiusKm is the mean radius of the Earth (IUGG), used for all
// great-circle distances.
const EarthRadiusKm = 6371.0088

// Point is a position on the Earth in decimal degrees: Lat in [-90, 90]
// (north positive), Lon in [-180, 180] (east positive).
type Point struct {
	Lat float64 `yaml:"lat" json:"lat"`
	Lon float64 `yaml:"lon" json:"lon"`
}

// DistanceKm returns the great-circle (haversine) distance from p to q in
// kilometres. Longitudes wrap: points either side of the antimeridian (lon
// 179 and -179) are about 2° apart, not 358°.
func (p Point) DistanceKm(q Point) float64 {
	const rad = math.Pi / 180
	lat1, lat2 := p.Lat*rad, q.Lat*rad
	dLat := (q.Lat - p.Lat) * rad
	dLon := (q.Lon - p.Lon) * rad
	s1, s2 := math.Sin(dLat/2), math.Sin(dLon/2)
	h := s1*s1 + math.Cos(lat1)*math.Cos(lat2)*s2*s2
	h = min(max(h, 0), 1) // rounding can step just outside [0, 1]
	return 2 * EarthRadiusKm * math.Asin(math.Sqrt(h))
}

// Valid reports whether p's coordinates are finite and within range.
func (p Point) Valid() bool {
	return p.Lat >= -90 && p.Lat <= 90 && p.Lon >= -180 && p.Lon <= 180
}
