package ring

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// benchKeys returns n distinct 45-byte keys.
func benchKeys(n int) []string {
	rng := rand.New(rand.NewPCG(7, 7))
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("https://cdn.example.com/img/%016x.webp", rng.Uint64())
	}
	return ks
}

// Lookup benchmarks cycle through a key set: hot (1,024 keys, whose table
// entries stay in cache, as popular content does) or spread (65,536 keys,
// reading all over the 1 MiB owner table).
var benchSets = []struct {
	name string
	keys int
}{{"hot", 1 << 10}, {"spread", 1 << 16}}

// BenchmarkXXHash is the baseline: hashing a 45-byte key alone.
func BenchmarkXXHash(b *testing.B) {
	for _, set := range benchSets {
		b.Run("keys="+set.name, func(b *testing.B) {
			ks := benchKeys(set.keys)
			mask := set.keys - 1
			b.ReportAllocs()
			var sink uint64
			i := 0
			for b.Loop() {
				sink += xxhash.Sum64String(ks[i&mask])
				i++
			}
			_ = sink
		})
	}
}

// BenchmarkOwner is a lookup including the hash of a 45-byte key.
func BenchmarkOwner(b *testing.B) {
	for _, n := range []int{10, 50, 300} {
		r := mustNew(b, namedPeers(n))
		for _, set := range benchSets {
			b.Run(fmt.Sprintf("peers=%d/keys=%s", n, set.name), func(b *testing.B) {
				ks := benchKeys(set.keys)
				mask := set.keys - 1
				b.ReportAllocs()
				var sink int
				i := 0
				for b.Loop() {
					p, _ := r.Owner(ks[i&mask])
					sink += len(p.Name)
					i++
				}
				_ = sink
			})
		}
	}
}

// BenchmarkReplicas is a zone-aware preference list of 3 out of 50 peers
// in 3 zones, including the hash.
func BenchmarkReplicas(b *testing.B) {
	r := mustNew(b, namedPeers(50))
	ks := benchKeys(1 << 10)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = r.Replicas(ks[i&(1<<10-1)], 3)
		i++
	}
}

// BenchmarkNew is the rebuild time of a ring.
func BenchmarkNew(b *testing.B) {
	for _, n := range []int{10, 50} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			peers := namedPeers(n)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := New(peers); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
