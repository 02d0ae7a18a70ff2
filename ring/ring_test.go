package ring

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// testBits is the partition count of tests that check invariants rather
// than the production figures; building with it is 64 times faster.
const testBits = 14

func mustBuild(tb testing.TB, peers []Peer, bits uint) *Ring {
	tb.Helper()
	r, err := build(peers, bits)
	if err != nil {
		tb.Fatalf("build: %v", err)
	}
	return r
}

// ownerAt returns the name of the owner of partition p.
func (r *Ring) ownerAt(p int) string {
	return r.peers[r.ownerIndex(uint64(p)<<r.shift)].Name
}

func (r *Ring) partitions() int { return 1 << (64 - r.shift) }

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name  string
		peers []Peer
		want  string
	}{
		{"empty name", []Peer{{Name: "a"}, {Name: ""}}, "peers[1].name: empty"},
		{"duplicate", []Peer{{Name: "a"}, {Name: "b"}, {Name: "a", Zone: "z"}}, `peers[2].name: duplicate "a" (also peers[0])`},
		{"negative weight", []Peer{{Name: "a", Weight: -1}}, "peers[0].weight: negative (-1)"},
		{"weight too large", []Peer{{Name: "a"}, {Name: "b", Weight: MaxWeight + 1}}, "peers[1].weight: 1048577 above MaxWeight"},
		{"too many peers", make([]Peer, MaxPeers+1), "more than MaxPeers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.peers)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New() = %v, %v; want error containing %q", r, err, tt.want)
			}
			if cerr := Check(tt.peers); cerr == nil || cerr.Error() != err.Error() {
				t.Fatalf("Check() = %v; want New's error %v", cerr, err)
			}
		})
	}
}

func TestEmpty(t *testing.T) {
	var holder Holder
	empty := mustNew(t, nil)
	for name, r := range map[string]*Ring{"New(nil)": empty, "nil *Ring": nil, "zero Holder": holder.Load()} {
		t.Run(name, func(t *testing.T) {
			if p, ok := r.Owner("k"); ok || p != (Peer{}) {
				t.Errorf("Owner = %+v, %v; want zero Peer, false", p, ok)
			}
			if p, ok := r.OwnerHash(1); ok || p != (Peer{}) {
				t.Errorf("OwnerHash = %+v, %v; want zero Peer, false", p, ok)
			}
			if got := r.Replicas("k", 3); got != nil {
				t.Errorf("Replicas = %v; want nil", got)
			}
			if r.Len() != 0 || len(r.Peers()) != 0 || r.Share("a") != 0 {
				t.Errorf("Len, Peers, Share = %d, %v, %v; want 0, [], 0", r.Len(), r.Peers(), r.Share("a"))
			}
		})
	}
}

func TestLookups(t *testing.T) {
	peers := []Peer{
		{Name: "c", Zone: "z1"},
		{Name: "a", Zone: "z1", Weight: 2},
		{Name: "b", Zone: "z2"},
	}
	r := mustBuild(t, peers, testBits)
	t.Run("Peers sorted, weights normalized, a copy", func(t *testing.T) {
		want := []Peer{{Name: "a", Zone: "z1", Weight: 2}, {Name: "b", Zone: "z2", Weight: 1}, {Name: "c", Zone: "z1", Weight: 1}}
		got := r.Peers()
		if !slices.Equal(got, want) {
			t.Fatalf("Peers = %v; want %v", got, want)
		}
		got[0].Name = "changed"
		if r.Peers()[0].Name != "a" {
			t.Fatal("changing the slice from Peers changed the ring")
		}
		if r.Len() != 3 {
			t.Fatalf("Len = %d; want 3", r.Len())
		}
	})
	t.Run("Share", func(t *testing.T) {
		tests := []struct {
			name string
			want float64
		}{{"a", 0.5}, {"b", 0.25}, {"c", 0.25}, {"unknown", 0}}
		sum := 0.0
		for _, tt := range tests {
			got := r.Share(tt.name)
			sum += got
			if math.Abs(got-tt.want) > tt.want*slackPPM/1e6+1e-9 {
				t.Errorf("Share(%q) = %v; want %v ± %v%%", tt.name, got, tt.want, slackPPM/1e4)
			}
		}
		if sum != 1 {
			t.Errorf("shares sum to %v; want 1", sum)
		}
	})
	t.Run("Owner agrees with OwnerHash and Replicas", func(t *testing.T) {
		for i := range 1000 {
			key := fmt.Sprintf("/obj/%d", i)
			p, ok := r.Owner(key)
			ph, okh := r.OwnerHash(xxhash.Sum64String(key))
			reps := r.Replicas(key, 1)
			if !ok || !okh || p != ph || len(reps) != 1 || reps[0] != p {
				t.Fatalf("key %q: Owner %v,%v OwnerHash %v,%v Replicas %v", key, p, ok, ph, okh, reps)
			}
		}
	})
	t.Run("Replicas count", func(t *testing.T) {
		tests := []struct{ n, want int }{{-1, 0}, {0, 0}, {1, 1}, {2, 2}, {3, 3}, {4, 3}, {100, 3}}
		for _, tt := range tests {
			if got := r.Replicas("k", tt.n); len(got) != tt.want {
				t.Errorf("Replicas(k, %d) = %v; want %d peers", tt.n, got, tt.want)
			}
		}
	})
}

func TestSinglePeer(t *testing.T) {
	only := Peer{Name: "solo", Zone: "z", Weight: 1}
	r := mustBuild(t, []Peer{{Name: "solo", Zone: "z"}}, testBits)
	for i := range 100 {
		key := fmt.Sprint(i)
		if p, ok := r.Owner(key); !ok || p != only {
			t.Fatalf("Owner(%q) = %v, %v; want %v", key, p, ok, only)
		}
		if got := r.Replicas(key, 3); !slices.Equal(got, []Peer{only}) {
			t.Fatalf("Replicas(%q, 3) = %v; want [%v]", key, got, only)
		}
	}
	if r.Share("solo") != 1 {
		t.Fatalf("Share = %v; want 1", r.Share("solo"))
	}
}

// TestDeterminism: the ring is a function of the member set alone, so two
// edges that list the same peers in different orders agree on every owner.
// Zones change preference lists, not ownership.
func TestDeterminism(t *testing.T) {
	peers := namedPeers(12)
	peers[3].Weight = 3
	peers[7].Weight = 2
	a := mustBuild(t, peers, testBits)
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 3 {
		shuffled := slices.Clone(peers)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if trial == 2 {
			for i := range shuffled {
				shuffled[i].Zone = "elsewhere"
			}
		}
		b := mustBuild(t, shuffled, testBits)
		for p := range a.partitions() {
			if a.ownerAt(p) != b.ownerAt(p) {
				t.Fatalf("trial %d: partition %d owned by %s and %s", trial, p, a.ownerAt(p), b.ownerAt(p))
			}
		}
		if trial < 2 {
			for i := range 200 {
				key := fmt.Sprint(i)
				if ra, rb := a.Replicas(key, 4), b.Replicas(key, 4); !slices.Equal(ra, rb) {
					t.Fatalf("trial %d: Replicas(%q) = %v and %v", trial, key, ra, rb)
				}
			}
		}
	}
}

// TestBand checks partition shares exactly: every peer owns its weighted
// quota of partitions to within the ±slack band.
func TestBand(t *testing.T) {
	for _, n := range []int{2, 3, 10, 50} {
		for _, weighted := range []bool{false, true} {
			t.Run(fmt.Sprintf("n=%d/weighted=%v", n, weighted), func(t *testing.T) {
				peers := namedPeers(n)
				total := 0
				for i := range peers {
					if weighted {
						peers[i].Weight = 1 + i%4
					}
					total += max(peers[i].Weight, 1)
				}
				r := mustBuild(t, peers, testBits)
				for _, p := range peers {
					quota := float64(max(p.Weight, 1)) / float64(total)
					band := quota*slackPPM/1e6 + 1/float64(r.partitions())
					if got := r.Share(p.Name); math.Abs(got-quota) > band {
						t.Errorf("Share(%s) = %.5f; want %.5f ± %.5f", p.Name, got, quota, band)
					}
				}
			})
		}
	}
}

// TestBalance checks keys, not partitions, at the production partition
// count: 100,000 keys, so the bounds allow for sampling noise (the 1M-key
// figures are in TestQualityReport).
func TestBalance(t *testing.T) {
	hs := keyHashes(100_000, 2)
	for _, tt := range []struct {
		n     int
		bound float64
	}{{10, 1.04}, {50, 1.08}} {
		r := mustNew(t, namedPeers(tt.n))
		if got := maxOverMean(r, hs); got > tt.bound {
			t.Errorf("n=%d: most-loaded peer has %.4fx the mean; want <= %v", tt.n, got, tt.bound)
		} else {
			t.Logf("n=%d: max/mean %.4f", tt.n, got)
		}
	}
}

func TestWeights(t *testing.T) {
	hs := keyHashes(100_000, 3)
	got := weightRatio(t, 10, hs)
	if math.Abs(got-2) > 2*0.02 {
		t.Errorf("weight-2 peers get %.4fx the keys of weight-1 peers; want 2 ± 2%%", got)
	}
	t.Logf("weight ratio %.4f", got)
}

// TestMinimalMovement: removing or adding a peer moves about 1/n of the keys,
// every key of a removed peer moves, and keys that move between two
// unchanged peers are at most 0.1% (the price of balance; see the package
// doc). Checked on partitions, so exactly, at the production partition count.
func TestMinimalMovement(t *testing.T) {
	for _, n := range []int{10, 50} {
		peers := namedPeers(n)
		base := mustNew(t, peers)
		removed := peers[n/2].Name
		added := Peer{Name: "newcomer", Zone: "zone-b"}
		reweighted := slices.Clone(peers)
		reweighted[1].Weight = 2
		for _, tc := range []struct {
			name    string
			peers   []Peer
			changed string  // the peer added, removed or reweighted
			ideal   float64 // fraction of the keyspace that must move
		}{
			{"remove", slices.Delete(slices.Clone(peers), n/2, n/2+1), removed, 1 / float64(n)},
			{"add", append(slices.Clone(peers), added), added.Name, 1 / float64(n+1)},
			{"reweight", reweighted, peers[1].Name, 2/float64(n+1) - 1/float64(n)},
		} {
			t.Run(fmt.Sprintf("n=%d/%s", n, tc.name), func(t *testing.T) {
				next := mustNew(t, tc.peers)
				moved, stray := 0, 0
				for p := range base.partitions() {
					from, to := base.ownerAt(p), next.ownerAt(p)
					if from == removed && tc.name == "remove" && from == to {
						t.Fatalf("partition %d still owned by removed peer %s", p, from)
					}
					if from == to {
						continue
					}
					moved++
					if from != tc.changed && to != tc.changed {
						stray++
					}
				}
				q := float64(base.partitions())
				ratio := float64(moved) / q / tc.ideal
				t.Logf("moved %.4f of ideal, %.4f%% of keys between unchanged peers", ratio, 100*float64(stray)/q)
				if ratio < 0.98 || ratio > 1.03 {
					t.Errorf("moved %.4f of the keyspace, %.4fx the ideal %.4f; want within [0.98, 1.03]", float64(moved)/q, ratio, tc.ideal)
				}
				if float64(stray)/q > 0.001 {
					t.Errorf("%.4f%% of keys moved between unchanged peers; want <= 0.1%%", 100*float64(stray)/q)
				}
			})
		}
	}
}

// TestReplicas checks preference lists: distinct peers, the owner first,
// distinct zones while zones last, and a longer list extends a shorter one.
func TestReplicas(t *testing.T) {
	for _, tc := range []struct {
		name  string
		zones int
		peers int
	}{{"one zone", 1, 6}, {"two zones", 2, 7}, {"three zones", 3, 9}, {"every peer its zone", 5, 5}, {"many peers", 3, 70}} {
		t.Run(tc.name, func(t *testing.T) {
			peers := namedPeers(tc.peers)
			for i := range peers {
				peers[i].Zone = fmt.Sprint("z", i%tc.zones)
				peers[i].Weight = 1 + i%3
			}
			r := mustBuild(t, peers, testBits)
			for k := range 300 {
				key := fmt.Sprint("key-", k)
				owner, _ := r.Owner(key)
				all := r.Replicas(key, len(peers))
				if len(all) != len(peers) || all[0] != owner {
					t.Fatalf("Replicas(%q, all) = %v; want %d peers led by owner %v", key, all, len(peers), owner)
				}
				names := make(map[string]bool)
				for _, p := range all {
					names[p.Name] = true
				}
				if len(names) != len(peers) {
					t.Fatalf("Replicas(%q, all) repeats a peer: %v", key, all)
				}
				zones := make(map[string]bool)
				for i, p := range all {
					if i < tc.zones && zones[p.Zone] {
						t.Fatalf("Replicas(%q)[%d] repeats zone %s with %d zones: %v", key, i, p.Zone, tc.zones, all)
					}
					zones[p.Zone] = true
				}
				for n := 1; n <= 4; n++ {
					if got := r.Replicas(key, n); !slices.Equal(got, all[:min(n, len(all))]) {
						t.Fatalf("Replicas(%q, %d) = %v; want prefix of %v", key, n, got, all)
					}
				}
			}
		})
	}
}

// TestReplicasStable: removing a peer that is not among a key's replicas
// leaves them unchanged, unless the key's owner moved (a rebalanced stray).
func TestReplicasStable(t *testing.T) {
	peers := namedPeers(12)
	a := mustBuild(t, peers, testBits)
	b := mustBuild(t, slices.Delete(slices.Clone(peers), 5, 6), testBits)
	gone := peers[5].Name
	checked := 0
	for k := range 2000 {
		key := fmt.Sprint("k", k)
		ra, rb := a.Replicas(key, 3), b.Replicas(key, 3)
		if slices.ContainsFunc(ra, func(p Peer) bool { return p.Name == gone }) || ra[0] != rb[0] {
			continue
		}
		checked++
		if !slices.Equal(ra, rb) {
			t.Fatalf("Replicas(%q) changed from %v to %v though %s was not among them", key, ra, rb, gone)
		}
	}
	if checked < 1000 {
		t.Fatalf("only %d keys checked", checked)
	}
}

// TestHolder swaps rings under concurrent readers; run with -race.
func TestHolder(t *testing.T) {
	var h Holder
	rings := []*Ring{mustBuild(t, namedPeers(3), 10), mustBuild(t, namedPeers(4), 10)}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				r := h.Load()
				p, ok := r.Owner(fmt.Sprint(g, "/", i))
				if r != nil && (!ok || p.Name == "") {
					t.Errorf("Owner on a loaded ring = %v, %v", p, ok)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 2000 {
			h.Store(rings[i%2])
		}
	})
	wg.Wait()
	if r := h.Load(); r != rings[1] {
		t.Fatalf("Load after the last Store = %p; want %p", r, rings[1])
	}
}

func TestExpo(t *testing.T) {
	prev := expo(0)
	rng := rand.New(rand.NewPCG(3, 4))
	us := []uint64{0, 1, 2, 3, 1 << 31, 1<<32 - 1, 1 << 32, 1 << 62, 1<<63 - 1, 1 << 63, math.MaxUint64}
	for range 10000 {
		us = append(us, rng.Uint64()>>rng.IntN(64))
	}
	slices.Sort(us)
	for _, u := range us {
		got := expo(u)
		if got > prev {
			t.Fatalf("expo(%#x) = %d > expo of a smaller u %d: not monotone", u, got, prev)
		}
		prev = got
		want := -math.Log((float64(u|1))/math.Exp2(64)) * (1 << 30)
		if math.Abs(float64(got)-want) > 3e-5*(1<<30) {
			t.Fatalf("expo(%#x) = %v; want %v", u, float64(got)/(1<<30), want/(1<<30))
		}
	}
}

// TestGapBound: the cheap bound on the key gap between two draws never
// exceeds the gap, or rebalancing would skip a cheaper move.
func TestGapBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 200000 {
		u1 := rng.Uint64() >> rng.IntN(40)
		u2 := u1 - u1>>(rng.IntN(64)) // close to u1 and far from it
		if i%2 == 0 {
			u2 = rng.Uint64N(u1 + 1)
		}
		gap := (weighted(u2, 1) - weighted(u1, 1)) >> kShift
		if b := gapBound(u1, u2); uint64(b) > gap {
			t.Fatalf("gapBound(%#x, %#x) = %d > gap %d", u1, u2, b, gap)
		}
	}
}

func TestSelectSmallest(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for trial := range 300 {
		ms := make([]move, rng.IntN(200))
		for i := range ms {
			// Few distinct costs, so ties fall back to the partition.
			ms[i] = move{cost: rng.Int64N(10) - 5, part: int32(i), to: int32(rng.IntN(4))}
		}
		rng.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
		want := slices.SortedFunc(slices.Values(ms), compareMoves)
		k := rng.IntN(len(ms) + 1)
		selectSmallest(ms, k)
		got := slices.SortedFunc(slices.Values(ms[:k]), compareMoves)
		if !slices.Equal(got, want[:k]) {
			t.Fatalf("trial %d: selectSmallest(%d) kept %v; want %v", trial, k, got, want[:k])
		}
	}
}

func TestQuotas(t *testing.T) {
	tests := []struct {
		weights []uint64
		total   int
		want    []int
	}{
		{[]uint64{1}, 8, []int{8}},
		{[]uint64{1, 1, 1}, 8, []int{3, 3, 2}},
		{[]uint64{1, 2, 1}, 8, []int{2, 4, 2}},
		{[]uint64{1, 1, 5}, 10, []int{2, 1, 7}}, // a tie goes to the lower index
		{[]uint64{MaxWeight, 1}, 16, []int{16, 0}},
	}
	for _, tt := range tests {
		if got := quotas(tt.weights, tt.total); !slices.Equal(got, tt.want) {
			t.Errorf("quotas(%v, %d) = %v; want %v", tt.weights, tt.total, got, tt.want)
		}
	}
}
