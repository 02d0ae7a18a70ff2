package store

import (
	"fmt"
	"net/http"
	"testing"
)

// BenchmarkStoreMiss is the store's part of a miss on a full store: a
// lookup that finds nothing, then the new entry stored, which evicts the
// least recent one. Keys are shaped as the bench's all-miss keys, and
// the index is large enough (at 1M) that its tables miss the CPU's
// caches, as on an edge that has been filling for a while.
func BenchmarkStoreMiss(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			// 2n entries cycle through a store that holds n: every key
			// comes back after it was evicted, so every lookup misses.
			entries := missEntries(2 * n)
			s := New(int64(n) * entries[0].Charge())
			for _, e := range entries[:n] {
				s.Put(e)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e := entries[(n+i)%len(entries)]
				if s.Get(e.Key()) != nil {
					b.Fatal("a lookup hit")
				}
				s.Put(e)
			}
		})
	}
}

// BenchmarkStoreGrow is BenchmarkStoreMiss on a store that is still
// filling: every entry stays, and the index grows under the inserts, as
// in the bench's all-miss runs (which do not fill the 2 GiB budget).
func BenchmarkStoreGrow(b *testing.B) {
	entries := missEntries(b.N)
	s := New(1 << 62)
	b.ReportAllocs()
	b.ResetTimer()
	for _, e := range entries {
		if s.Get(e.Key()) != nil {
			b.Fatal("a lookup hit")
		}
		s.Put(e)
	}
}

// missEntries returns n stored-entry look-alikes with 1 KiB bodies,
// under keys shaped as the bench's all-miss keys.
func missEntries(n int) []*Entry {
	tmpl := storedEntry(&testing.T{}, "k", 1024, http.Header{})
	entries := make([]*Entry, n)
	for i := range entries {
		key := fmt.Sprintf("bench.test/miss/m1-%d/%d?size=1024&cc=max-age%%3D3600", 1e9+i*7919, i)
		d := tmpl.data
		d.meta, d.keyLen = key+tmpl.own(), uint32(len(key))
		entries[i] = &Entry{data: d}
	}
	return entries
}
