package store

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"testing"
)

// BenchmarkDiskIndexLoad is a cold start: the time to open a disk tier
// holding a number of objects (1 KiB bodies, the fields a demo origin
// sends), per object, and the memory its index takes per object. The
// million-object case runs with MERIDIAN_BENCH_1M=1 (it writes 1.3 GB).
func BenchmarkDiskIndexLoad(b *testing.B) {
	counts := []int{100_000}
	if os.Getenv("MERIDIAN_BENCH_1M") != "" {
		counts = append(counts, 1_000_000)
	}
	for _, objects := range counts {
		b.Run(fmt.Sprintf("%dk", objects/1000), func(b *testing.B) {
			dir := b.TempDir()
			opt := DiskOptions{Dir: dir, MaxBytes: 1 << 40, Logger: quietLog()}
			writeDiskObjects(b, dir, objects)
			b.ResetTimer()
			var heap float64
			for i := 0; i < b.N; i++ {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				d, err := OpenDisk(opt)
				if err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				heap = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(objects)
				if got := d.Stats().Objects; got != objects {
					b.Fatalf("loaded %d of %d", got, objects)
				}
				d.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(objects), "ns/object")
			b.ReportMetric(heap, "heap-B/object")
		})
	}
}

// BenchmarkDiskHit reads a body from the disk tier: open, copy, close.
func BenchmarkDiskHit(b *testing.B) {
	for _, size := range []int{64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			d := openTestDisk(b, b.TempDir(), DiskOptions{MaxBytes: 1 << 30}, nil)
			const objects = 64
			for i := range objects {
				d.write(diskEntry(b, "h/"+strconv.Itoa(i), size, nil))
			}
			buf := make([]byte, 32<<10)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e := d.Get("h/" + strconv.Itoa(i%objects))
				r, err := e.OpenBody()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, buf); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}
