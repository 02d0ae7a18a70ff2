package limit

import (
	"context"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// The limiters sit on every request: these measure one call for a client
// already known (the common path), and for a stream of new clients (an
// address-rotating flood, every call an insert and an eviction).

func BenchmarkAllow(b *testing.B) {
	l := mustNew(b, Config{RequestsPerSecond: 1e9, Burst: 1 << 30})
	k := key(1)
	b.ReportAllocs()
	for b.Loop() {
		l.Allow(k)
	}
}

func BenchmarkAllowParallel(b *testing.B) {
	l := mustNew(b, Config{RequestsPerSecond: 1e9, Burst: 1 << 30})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(key(i & 1023))
			i++
		}
	})
}

func BenchmarkAllowNewClients(b *testing.B) {
	l := mustNew(b, Config{RequestsPerSecond: 10, MaxClients: 4096})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Allow(key(i))
		i++
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	l := mustNew(b, Config{MaxConcurrent: 8})
	k := key(1)
	b.ReportAllocs()
	for b.Loop() {
		l.Acquire(k)
		l.Release(k)
	}
}

func BenchmarkAcquireReleaseParallel(b *testing.B) {
	l := mustNew(b, Config{MaxConcurrent: 8})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			k := key(i & 1023)
			l.Acquire(k)
			l.Release(k)
			i++
		}
	})
}

func BenchmarkClientKey(b *testing.B) {
	addr := netip.MustParseAddr("2001:db8:1:2:3:4:5:6")
	b.ReportAllocs()
	for b.Loop() {
		ClientKey(addr)
	}
}

func BenchmarkGate(b *testing.B) {
	g := mustGate(b, GateConfig{MaxConcurrent: 1 << 20})
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			g.Acquire(ctx)
			g.Release()
		}
	})
}

// BenchmarkTableMemory reports the heap a full table of clients holds,
// per client.
func BenchmarkTableMemory(b *testing.B) {
	const n = 65536
	for _, tc := range []struct {
		name string
		cfg  Config
		fill func(*Limiter, netip.Prefix)
	}{
		{"rate", Config{RequestsPerSecond: 10, MaxClients: n, Now: func() time.Time { return time.Time{} }},
			func(l *Limiter, k netip.Prefix) { l.Allow(k) }},
		{"concurrency", Config{MaxConcurrent: 10, MaxClients: n},
			func(l *Limiter, k netip.Prefix) { l.Acquire(k) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				l := mustNew(b, tc.cfg)
				for i := range n {
					tc.fill(l, key(i))
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/client")
				runtime.KeepAlive(l)
			}
		})
	}
}
