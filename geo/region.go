package geo

import (
	"cmp"
	"slices"
)

// Region is one place where edges run. Regions are data: they come from
// the config file.
type Region struct {
	// Name identifies the region in answers, pins and logs ("eu"). Required.
	Name string `yaml:"name" json:"name"`
	// Point is where the region is, in degrees. Required.
	Point Point `yaml:"point" json:"point"`
	// Edges are the region's edge nodes as IP:port of their client-facing
	// HTTP listener (or of a load balancer in front of them): each is
	// probed at http://IP:port/healthz (Host: geo-probe.invalid, which an
	// edge answers for itself), the healthy ones' IPs are the DNS answer,
	// and /route and /redirect name them. Required.
	Edges []string `yaml:"edges" json:"edges"`
	// Hostname is where /redirect sends this region's clients (host or
	// host:port), for instance a load balancer's name. Default "": each
	// client goes to its own healthy edge ([Answer.Edge]).
	Hostname string `yaml:"hostname" json:"hostname,omitempty"`
	// Capacity is the region's relative share when a failed region's
	// clients are spread over several neighbours (picker "spread"); 0
	// takes none of them. Default 1.
	Capacity float64 `yaml:"capacity" json:"capacity"`
	// MinHealthy is the fewest edges that must answer probes for the
	// region to be up. Default 1: a region keeps its clients while any
	// edge answers (a region of two stays up when one fails).
	MinHealthy int `yaml:"min_healthy" json:"min_healthy"`
	// MinHealthyShare is the least share of the region's capacity (its
	// edges, each counting alike) that must answer probes for the region
	// to be up, from 0 to 1. Default 0: no share required. The trade-off:
	// below it the region's clients go to a farther region, although the
	// edges that answer could still serve some of them; above it the
	// edges left take all of the region's clients, which they may not
	// carry. Set it (0.5, say) for a region of many edges that cannot
	// carry its load on a few.
	MinHealthyShare float64 `yaml:"min_healthy_share" json:"min_healthy_share"`
	// Quorum is the former name of MinHealthy, still read: when set and
	// MinHealthy is not, it is MinHealthy. Deprecated: use MinHealthy.
	Quorum int `yaml:"quorum" json:"quorum,omitempty"`
}

// Regions is a region table.
type Regions []Region

// ByDistance returns the regions ordered by great-circle distance from
// from, nearest first; ties are broken by name so that every caller gets
// the same order. An edge uses it to find the next-nearest region when its
// own fails.
func (rs Regions) ByDistance(from Point) []Region {
	type rd struct {
		r Region
		d float64
	}
	s := make([]rd, len(rs))
	for i, r := range rs {
		s[i] = rd{r, from.DistanceKm(r.Point)}
	}
	slices.SortStableFunc(s, func(a, b rd) int {
		return cmp.Or(cmp.Compare(a.d, b.d), cmp.Compare(a.r.Name, b.r.Name))
	})
	out := make([]Region, len(s))
	for i := range s {
		out[i] = s[i].r
	}
	return out
}
