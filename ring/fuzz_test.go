package ring

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// fuzzPeers parses one peer per line, "name|zone|weight", at most 16.
// A missing or non-numeric weight is 0.
func fuzzPeers(spec string) []Peer {
	var peers []Peer
	for line := range strings.SplitSeq(spec, "\n") {
		if len(peers) == 16 {
			break
		}
		f := strings.SplitN(line, "|", 3)
		p := Peer{Name: f[0]}
		if len(f) > 1 {
			p.Zone = f[1]
		}
		if len(f) > 2 {
			p.Weight, _ = strconv.Atoi(f[2])
		}
		peers = append(peers, p)
	}
	return peers
}

// valid reports whether New must accept peers.
func valid(peers []Peer) bool {
	seen := make(map[string]bool)
	for _, p := range peers {
		if p.Name == "" || seen[p.Name] || p.Weight < 0 || p.Weight > MaxWeight {
			return false
		}
		seen[p.Name] = true
	}
	return true
}

// FuzzRing builds rings from arbitrary peer lists and checks that lookups
// never panic and keep their invariants.
func FuzzRing(f *testing.F) {
	f.Add("a|z1|1\nb|z2|2\nc|z1|0", "https://example.com/x", 2)
	f.Add("a\nb\nc\nd\ne", "", 9)
	f.Add("solo|only|5", "key", 1)
	f.Add("a|z|1\na|z|1", "dup", 1)
	f.Add("a||-3", "neg", 1)
	f.Add("|z|1", "empty name", 1)
	f.Add("a|x|1048577\nb", "heavy", 2)
	f.Add("a|x|1048576\nb|y|1", "skewed", 2)
	f.Add("", "nothing", 3)
	f.Add("p0|z0\np1|z1\np2|z2\np3|z0\np4|z1\np5|z2", "/img/cat.jpg", -1)
	f.Fuzz(func(t *testing.T, spec, key string, n int) {
		peers := fuzzPeers(spec)
		r, err := build(peers, 10)
		if !valid(peers) {
			if err == nil {
				t.Fatalf("build(%q) accepted invalid peers", spec)
			}
			return
		}
		if err != nil {
			t.Fatalf("build(%q): %v", spec, err)
		}
		if r.Len() != len(peers) {
			t.Fatalf("Len = %d; want %d", r.Len(), len(peers))
		}
		zones := make(map[string]bool)
		sum := 0.0
		for _, p := range peers {
			zones[p.Zone] = true
			sum += r.Share(p.Name)
		}
		if len(peers) > 0 && sum != 1 {
			t.Fatalf("shares sum to %v", sum)
		}

		owner, ok := r.Owner(key)
		if ok != (len(peers) > 0) {
			t.Fatalf("Owner ok = %v with %d peers", ok, len(peers))
		}
		if oh, okh := r.OwnerHash(xxhash.Sum64String(key)); oh != owner || okh != ok {
			t.Fatalf("OwnerHash = %v, %v; Owner = %v, %v", oh, okh, owner, ok)
		}
		if ok && !slices.ContainsFunc(peers, func(p Peer) bool { return p.Name == owner.Name }) {
			t.Fatalf("Owner = %v: not a peer", owner)
		}

		n = n % 20
		reps := r.Replicas(key, n)
		if want := min(max(n, 0), len(peers)); len(reps) != want {
			t.Fatalf("Replicas(%d) = %d peers; want %d", n, len(reps), want)
		}
		if len(reps) > 0 && reps[0] != owner {
			t.Fatalf("Replicas[0] = %v; Owner = %v", reps[0], owner)
		}
		seenName, seenZone := make(map[string]bool), make(map[string]bool)
		for i, p := range reps {
			if seenName[p.Name] {
				t.Fatalf("Replicas repeats %q: %v", p.Name, reps)
			}
			if i < len(zones) && seenZone[p.Zone] {
				t.Fatalf("Replicas[%d] repeats zone %q with %d zones: %v", i, p.Zone, len(zones), reps)
			}
			seenName[p.Name], seenZone[p.Zone] = true, true
		}

		// The same members in reverse order build the same ring.
		reversed := slices.Clone(peers)
		slices.Reverse(reversed)
		r2, err := build(reversed, 10)
		if err != nil {
			t.Fatalf("build(reversed): %v", err)
		}
		if o2, _ := r2.Owner(key); o2 != owner {
			t.Fatalf("Owner differs with peers reversed: %v, %v", owner, o2)
		}
		if reps2 := r2.Replicas(key, n); !slices.Equal(reps, reps2) {
			t.Fatalf("Replicas differ with peers reversed: %v, %v", reps, reps2)
		}
	})
}
