package geo

import (
	"math"

	"github.com/cespare/xxhash/v2"
)

// Candidate is one region as a [Picker] sees it for one client.
type Candidate struct {
	// Name is the region's name.
	Name string
	// DistanceKm is the great-circle distance from the client.
	DistanceKm float64
	// Capacity is the region's configured relative capacity.
	Capacity float64
	// Available reports whether the region may take this client now: it
	// is healthy, or recovering and this client is in its current step.
	Available bool
}

// Picker chooses a region for a client. Pick gets the candidates ordered
// by distance, nearest first, with at least one available, and returns the
// index of an available one. client is a hash of the client's subnet; a
// Picker must be a deterministic function of its arguments so that every
// steering instance gives the same answer.
type Picker interface {
	Pick(client uint64, c []Candidate) int
}

var (
	_ Picker = (*Nearest)(nil)
	_ Picker = (*Spread)(nil)
)

// Nearest picks the nearest available region.
type Nearest struct{}

// Pick implements [Picker].
func (*Nearest) Pick(_ uint64, c []Candidate) int {
	return firstAvailable(c)
}

// Spread picks the nearest region when it is available. When it is not,
// its clients are shared among the available regions no more than SlackKm
// farther than the nearest available one, in proportion to their capacity
// (weighted rendezvous hashing of the client), so a failed region's load
// spills over several neighbours instead of flooding one, and each client
// keeps its choice while the set does not change.
type Spread struct {
	// SlackKm is the extra distance, beyond the nearest available region,
	// within which regions share the load. 0: only ties share.
	SlackKm float64
}

// Pick implements [Picker].
func (s *Spread) Pick(client uint64, c []Candidate) int {
	first := firstAvailable(c)
	if first == 0 {
		return 0
	}
	limit := c[first].DistanceKm + s.SlackKm
	best, bestScore := first, math.Inf(-1)
	for i := first; i < len(c) && c[i].DistanceKm <= limit; i++ {
		if !c[i].Available || !(c[i].Capacity > 0) {
			continue
		}
		u := unitFloat(mix64(client ^ xxhash.Sum64String(c[i].Name)))
		if score := c[i].Capacity / -math.Log(u); score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

func firstAvailable(c []Candidate) int {
	for i := range c {
		if c[i].Available {
			return i
		}
	}
	return 0
}

// mix64 is the SplitMix64 finaliser: it spreads a key's bits so that
// nearby keys give unrelated results.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// unitFloat maps x to (0, 1), never 0 or 1.
func unitFloat(x uint64) float64 {
	return (float64(x>>12) + 0.5) / (1 << 52)
}
