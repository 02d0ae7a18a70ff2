package ring

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cespare/xxhash/v2"
)

var quality = flag.Bool("quality", false, "run TestQualityReport over 1,000,000 keys and print the figures")

// keyHashes returns the xxhash of n random ~45-byte URL-like keys, the same
// for every run.
func keyHashes(n int, seed uint64) []uint64 {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	hs := make([]uint64, n)
	for i := range hs {
		hs[i] = xxhash.Sum64String(fmt.Sprintf("https://cdn.example.com/a/%016x.jpg", rng.Uint64()))
	}
	return hs
}

// namedPeers returns n peers "peer-000".. in three zones, weight 1.
func namedPeers(n int) []Peer {
	ps := make([]Peer, n)
	for i := range ps {
		ps[i] = Peer{Name: fmt.Sprintf("peer-%03d", i), Zone: fmt.Sprintf("zone-%c", 'a'+i%3)}
	}
	return ps
}

func mustNew(tb testing.TB, peers []Peer) *Ring {
	tb.Helper()
	r, err := New(peers)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return r
}

// keyCounts returns how many of hs each peer owns, by name.
func keyCounts(r *Ring, hs []uint64) map[string]int {
	c := make(map[string]int, r.Len())
	for _, h := range hs {
		p, _ := r.OwnerHash(h)
		c[p.Name]++
	}
	return c
}

// maxOverMean is the most-loaded peer's key count over the mean.
func maxOverMean(r *Ring, hs []uint64) float64 {
	most := 0
	for _, c := range keyCounts(r, hs) {
		most = max(most, c)
	}
	return float64(most) * float64(r.Len()) / float64(len(hs))
}

// movement compares owners of hs in two rings: moved is the fraction of
// keys whose owner differs; stray is the fraction that moved between two
// peers both in both rings (neither added nor removed).
func movement(a, b *Ring, hs []uint64) (moved, stray float64) {
	inA := make(map[string]bool)
	for _, p := range a.Peers() {
		inA[p.Name] = true
	}
	inB := make(map[string]bool)
	for _, p := range b.Peers() {
		inB[p.Name] = true
	}
	m, s := 0, 0
	for _, h := range hs {
		pa, _ := a.OwnerHash(h)
		pb, _ := b.OwnerHash(h)
		if pa.Name == pb.Name {
			continue
		}
		m++
		if inB[pa.Name] && inA[pb.Name] {
			s++
		}
	}
	return float64(m) / float64(len(hs)), float64(s) / float64(len(hs))
}

// churn measures removing, then adding, each of k peers of an n-peer ring:
// the mean moved fraction over the ideal (1/n for a removal, 1/(n+1) for an
// addition), and the mean and worst stray fractions.
type churn struct {
	removeRatio, addRatio float64 // mean moved / ideal
	strayMean, strayMax   float64 // keys moved between unchanged peers
}

func measureChurn(tb testing.TB, n, k int, hs []uint64) churn {
	tb.Helper()
	peers := namedPeers(n)
	base := mustNew(tb, peers)
	var c churn
	for i := range k {
		// Remove peer i*n/k; add a fresh peer.
		rest := append(append([]Peer{}, peers[:i*n/k]...), peers[i*n/k+1:]...)
		moved, stray := movement(base, mustNew(tb, rest), hs)
		c.removeRatio += moved * float64(n) / float64(k)
		c.strayMean += stray / float64(2*k)
		c.strayMax = max(c.strayMax, stray)

		more := append(append([]Peer{}, peers...), Peer{Name: fmt.Sprintf("new-%d", i), Zone: "zone-a"})
		moved, stray = movement(base, mustNew(tb, more), hs)
		c.addRatio += moved * float64(n+1) / float64(k)
		c.strayMean += stray / float64(2*k)
		c.strayMax = max(c.strayMax, stray)
	}
	return c
}

// weightRatio builds n peers where every other one has weight 2 and returns
// mean keys per weight-2 peer over mean keys per weight-1 peer.
func weightRatio(tb testing.TB, n int, hs []uint64) float64 {
	tb.Helper()
	peers := namedPeers(n)
	for i := range peers {
		if i%2 == 0 {
			peers[i].Weight = 2
		}
	}
	r := mustNew(tb, peers)
	counts := keyCounts(r, hs)
	var two, one, n2, n1 float64
	for _, p := range peers {
		if p.Weight == 2 {
			two += float64(counts[p.Name])
			n2++
		} else {
			one += float64(counts[p.Name])
			n1++
		}
	}
	return (two / n2) / (one / n1)
}

// singleWeightRatio builds n peers, one of weight 2, and returns its keys
// over the mean keys of the weight-1 peers.
func singleWeightRatio(tb testing.TB, n int, hs []uint64) float64 {
	tb.Helper()
	peers := namedPeers(n)
	peers[0].Weight = 2
	counts := keyCounts(mustNew(tb, peers), hs)
	rest := 0
	for _, p := range peers[1:] {
		rest += counts[p.Name]
	}
	return float64(counts[peers[0].Name]) / (float64(rest) / float64(n-1))
}

// zoneSpread returns the fraction of keys whose first k replicas are in k
// distinct zones, on n peers in k zones.
func zoneSpread(tb testing.TB, n, k int, keys int) float64 {
	tb.Helper()
	peers := namedPeers(n)
	for i := range peers {
		peers[i].Zone = fmt.Sprint("zone-", i%k)
	}
	r := mustNew(tb, peers)
	spread := 0
	for i := range keys {
		zones := make(map[string]bool)
		for _, p := range r.Replicas(fmt.Sprint("/k/", i), k) {
			zones[p.Zone] = true
		}
		if len(zones) == k {
			spread++
		}
	}
	return float64(spread) / float64(keys)
}

// TestQualityReport prints the acceptance figures over 1,000,000 keys:
//
//	go test ./ring -run TestQualityReport -v -args -quality
func TestQualityReport(t *testing.T) {
	if !*quality {
		t.Skip("pass -args -quality to measure over 1,000,000 keys")
	}
	hs := keyHashes(1_000_000, 1)
	for _, n := range []int{10, 50} {
		r := mustNew(t, namedPeers(n))
		lo, hi := 1.0, 0.0
		for _, p := range r.Peers() {
			lo, hi = min(lo, r.Share(p.Name)*float64(n)), max(hi, r.Share(p.Name)*float64(n))
		}
		t.Logf("balance  n=%-3d most-loaded peer / mean = %.4f   (partition shares %.4f..%.4f of the mean)", n, maxOverMean(r, hs), lo, hi)
	}
	for _, n := range []int{10, 50} {
		c := measureChurn(t, n, 5, hs)
		t.Logf("movement n=%-3d remove one: moved / ideal 1/n = %.4f   add one: moved / ideal 1/(n+1) = %.4f", n, c.removeRatio, c.addRatio)
		t.Logf("movement n=%-3d keys moved between unchanged peers: mean %.4f%%, worst %.4f%% of keys (10 changes)", n, 100*c.strayMean, 100*c.strayMax)
	}
	for _, n := range []int{10, 50} {
		t.Logf("weights  n=%-3d half weight 2: keys per weight-2 peer / per weight-1 peer = %.4f", n, weightRatio(t, n, hs))
		t.Logf("weights  n=%-3d one weight-2 peer: its keys / keys per weight-1 peer = %.4f", n, singleWeightRatio(t, n, hs))
	}
	t.Logf("replicas 50 peers in 3 zones: %.2f%% of keys have 3 replicas in 3 zones", 100*zoneSpread(t, 50, 3, 100_000))
}
