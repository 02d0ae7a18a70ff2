package node

import (
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
)

// memoryLimit is the Go runtime's soft memory limit, 0 when none is set.
func memoryLimit() int64 {
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		return l
	}
	return 0
}

// rssBytes is the process's resident set size from /proc (0 where there
// is none).
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

// memoryStatus is the status page's memory section: what the process
// holds against its limit.
func memoryStatus() map[string]int64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"}}
	metrics.Read(s)
	out := map[string]int64{"rss_bytes": rssBytes(), "limit_bytes": memoryLimit()}
	if s[0].Value.Kind() == metrics.KindUint64 {
		out["heap_bytes"] = int64(s[0].Value.Uint64())
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		out["go_total_bytes"] = int64(s[1].Value.Uint64())
	}
	return out
}
