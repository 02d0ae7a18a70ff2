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

// MemoryLimit is the soft memory limit the node's running config and its
// disk index call for: Config.MemoryLimit, plus what the disk tier's
// index holds in memory (about 400 B an object on disk, which no budget
// counts otherwise: a million small objects on disk hold about 400 MiB,
// and a limit without them would keep the garbage collector running).
func (n *Node) MemoryLimit() int64 {
	limit := n.config().MemoryLimit()
	if st, ok := n.handler.DiskStats(); ok {
		limit += st.IndexBytes
	}
	return limit
}

// applyMemoryLimit sets the process's soft memory limit to MemoryLimit
// when the node manages it (Options.ManageMemoryLimit), and reports
// whether it did.
func (n *Node) applyMemoryLimit() bool {
	if !n.manageMemory {
		return false
	}
	limit := n.MemoryLimit()
	if n.memLimit.Swap(limit) != limit {
		debug.SetMemoryLimit(limit)
	}
	return true
}
