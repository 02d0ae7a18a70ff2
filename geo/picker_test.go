package geo

import (
	"math"
	"testing"
)

func TestNearest(t *testing.T) {
	c := []Candidate{
		{Name: "a", DistanceKm: 10, Capacity: 1},
		{Name: "b", DistanceKm: 20, Capacity: 1, Available: true},
		{Name: "c", DistanceKm: 30, Capacity: 9, Available: true},
	}
	if got := (&Nearest{}).Pick(42, c); got != 1 {
		t.Errorf("Pick = %d, want 1 (nearest available)", got)
	}
	c[0].Available = true
	if got := (&Nearest{}).Pick(42, c); got != 0 {
		t.Errorf("Pick = %d, want 0", got)
	}
}

func TestSpread(t *testing.T) {
	c := []Candidate{
		{Name: "fra", DistanceKm: 100, Capacity: 1},                   // down
		{Name: "ams", DistanceKm: 400, Capacity: 1, Available: true},  // shares 1/4
		{Name: "lon", DistanceKm: 700, Capacity: 3, Available: true},  // shares 3/4
		{Name: "nyc", DistanceKm: 6000, Capacity: 9, Available: true}, // beyond slack
	}
	p := &Spread{SlackKm: 1000}
	counts := map[string]int{}
	const n = 20000
	for k := range uint64(n) {
		key := mix64(k)
		i := p.Pick(key, c)
		if !c[i].Available {
			t.Fatalf("picked unavailable %s", c[i].Name)
		}
		if again := p.Pick(key, c); again != i {
			t.Fatalf("not deterministic: %d then %d", i, again)
		}
		counts[c[i].Name]++
	}
	if counts["nyc"] != 0 || counts["fra"] != 0 {
		t.Errorf("counts %v: nothing beyond the slack or down", counts)
	}
	if share := float64(counts["lon"]) / n; math.Abs(share-0.75) > 0.02 {
		t.Errorf("lon share %.3f, want 0.75 (capacity 3 of 4); counts %v", share, counts)
	}

	// The nearest region, when available, takes all its clients.
	c[0].Available = true
	for k := range uint64(100) {
		if i := p.Pick(mix64(k), c); i != 0 {
			t.Fatalf("client %d sent to %s while the nearest is up", k, c[i].Name)
		}
	}

	// Removing one sharer moves only its clients (rendezvous hashing).
	c[0].Available = false
	before := make([]int, 2000)
	for k := range before {
		before[k] = p.Pick(mix64(uint64(k)), c)
	}
	c2 := append([]Candidate(nil), c...)
	c2[1].Available = false // ams goes down too
	for k, b := range before {
		after := p.Pick(mix64(uint64(k)), c2)
		if b == 2 && after != 2 {
			t.Fatalf("client %d moved off lon when ams failed", k)
		}
	}

	// Zero capacity takes no spill; with no capacity at all, the nearest.
	c3 := []Candidate{{Name: "x", DistanceKm: 1}, {Name: "y", DistanceKm: 2, Available: true}, {Name: "z", DistanceKm: 3, Available: true, Capacity: 1}}
	for k := range uint64(100) {
		if i := p.Pick(k, c3); i != 2 {
			t.Fatalf("picked %s, want z (y has no capacity)", c3[i].Name)
		}
	}
	c3[2].Capacity = 0
	if i := p.Pick(7, c3); i != 1 {
		t.Errorf("all zero capacity: picked %d, want the nearest available", i)
	}
}

func TestUnitFloat(t *testing.T) {
	for _, x := range []uint64{0, 1, math.MaxUint64, 1 << 63} {
		if u := unitFloat(x); !(u > 0 && u < 1) {
			t.Errorf("unitFloat(%d) = %v", x, u)
		}
	}
}
