package store

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkDiskColdStart is an edge's cold start with a full disk tier:
// it writes a number of objects (1 KiB bodies, the fields a demo origin
// sends: 100,000, and 1,000,000 with MERIDIAN_BENCH_1M=1, which writes
// 1.3 GB), closes the tier, and opens it again in a fresh process (this
// test binary, running TestDiskOpenChild), as a restarted edge does: the
// time OpenDisk takes there and the process's resident memory once the
// index is loaded. It does so twice, once with the segment files in the
// page cache (a process restart) and once with their pages dropped
// first (fadvise DONTNEED: a reboot, or files the kernel has evicted),
// so that the load reads them from the device. BenchmarkDiskIndexLoad
// measures the same load in-process, with the heap per object.
func BenchmarkDiskColdStart(b *testing.B) {
	counts := []int{100_000}
	if os.Getenv("MERIDIAN_BENCH_1M") != "" {
		counts = append(counts, 1_000_000)
	}
	for _, objects := range counts {
		b.Run(fmt.Sprintf("%dk", objects/1000), func(b *testing.B) {
			dir := b.TempDir()
			writeDiskObjects(b, dir, objects)
			var warm, cold openReport
			for i := 0; i < b.N; i++ {
				warm = openInChild(b, dir, objects)
				dropPageCache(b, dir)
				cold = openInChild(b, dir, objects)
			}
			b.ReportMetric(warm.Seconds, "s-warm")
			b.ReportMetric(cold.Seconds, "s-cold")
			b.ReportMetric(float64(warm.RSS)/(1<<20), "RSS-MiB")
			b.ReportMetric(float64(warm.HWM)/(1<<20), "peak-RSS-MiB")
			b.ReportMetric(float64(warm.Heap)/float64(objects), "heap-B/object")
			b.Logf("%d objects, %.0f MiB of segments: open %.2f s (page cache warm), %.2f s (dropped); RSS %.0f MiB after, peak %.0f MiB; heap %.0f B/object",
				objects, float64(dirBytes(b, dir))/(1<<20), warm.Seconds, cold.Seconds,
				float64(warm.RSS)/(1<<20), float64(warm.HWM)/(1<<20), float64(warm.Heap)/float64(objects))
		})
	}
}

// openReport is what TestDiskOpenChild prints.
type openReport struct {
	Objects int     `json:"objects"`
	Seconds float64 `json:"seconds"`
	RSS     int64   `json:"rss"`  // VmRSS once loaded, after a GC
	HWM     int64   `json:"hwm"`  // VmHWM: the peak
	Heap    int64   `json:"heap"` // the live heap once loaded
}

// openInChild runs TestDiskOpenChild on dir in a new process.
func openInChild(tb testing.TB, dir string, objects int) openReport {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDiskOpenChild$", "-test.bench=^$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "MERIDIAN_DISK_OPEN_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("child: %v\n%s", err, out)
	}
	for line := range bytes.Lines(out) {
		if rest, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("open-report ")); ok {
			var r openReport
			if err := json.Unmarshal(rest, &r); err != nil {
				tb.Fatal(err)
			}
			if r.Objects != objects {
				tb.Fatalf("child loaded %d objects of %d", r.Objects, objects)
			}
			return r
		}
	}
	tb.Fatalf("child printed no report:\n%s", out)
	return openReport{}
}

// TestDiskOpenChild is BenchmarkDiskColdStart's restarted process: with
// MERIDIAN_DISK_OPEN_DIR set, it opens the disk tier there and prints how
// long that took and its memory; without, it is skipped.
func TestDiskOpenChild(t *testing.T) {
	dir := os.Getenv("MERIDIAN_DISK_OPEN_DIR")
	if dir == "" {
		t.Skip("BenchmarkDiskColdStart's child process")
	}
	start := time.Now()
	d, err := OpenDisk(DiskOptions{Dir: dir, MaxBytes: 1 << 40, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r := openReport{Objects: d.Stats().Objects, Seconds: took.Seconds(), Heap: int64(ms.HeapAlloc),
		RSS: procStatusBytes(t, "VmRSS"), HWM: procStatusBytes(t, "VmHWM")}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(r)
	fmt.Printf("open-report %s\n", out)
}

// procStatusBytes reads a "kB" field of /proc/self/status.
func procStatusBytes(tb testing.TB, field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatalf("/proc/self/status: no %s", field)
	return 0
}

// dropPageCache asks the kernel to drop the cached pages of the files in
// dir (posix_fadvise POSIX_FADV_DONTNEED; they are clean after Close's
// sync), so that the next open reads them from the device. Only these
// files: the machine's other page cache is left alone.
func dropPageCache(tb testing.TB, dir string) {
	tb.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		tb.Fatal(err)
	}
	const fadvDontNeed = 4
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			tb.Fatal(err)
		}
		if _, _, errno := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontNeed, 0, 0); errno != 0 {
			f.Close()
			tb.Fatalf("fadvise %s: %v", name, errno)
		}
		f.Close()
	}
}

// dirBytes is the size of the files in dir.
func dirBytes(tb testing.TB, dir string) int64 {
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var n int64
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}
