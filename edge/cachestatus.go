package edge

import (
	"strconv"
	"strings"
	"time"
)

// cacheStatus is this cache's entry in the Cache-Status field (RFC 9211).
type cacheStatus struct {
	hit       bool
	fwd       string // uri-miss, vary-miss, stale, method, request, partial, …; "" if not forwarded
	fwdStatus int
	ttl       time.Duration
	hasTTL    bool
	stored    bool
	collapsed bool
	detail    string
}

// appendCacheStatus adds this cache's entry after those of the caches
// nearer the origin (prior).
func appendCacheStatus(prior, name string, cs cacheStatus) string {
	var b strings.Builder
	b.Grow(len(prior) + len(name) + 64)
	var num [20]byte // the numbers are formatted here, not as strings of their own
	if prior != "" {
		b.WriteString(prior)
		b.WriteString(", ")
	}
	b.WriteString(name)
	if cs.hit {
		b.WriteString("; hit")
	}
	if cs.fwd != "" && !cs.hit {
		b.WriteString("; fwd=")
		b.WriteString(cs.fwd)
	}
	if cs.fwdStatus != 0 {
		b.WriteString("; fwd-status=")
		b.Write(strconv.AppendInt(num[:0], int64(cs.fwdStatus), 10))
	}
	if cs.hasTTL {
		b.WriteString("; ttl=")
		b.Write(strconv.AppendInt(num[:0], int64(cs.ttl/time.Second), 10))
	}
	if cs.stored {
		b.WriteString("; stored")
	}
	if cs.collapsed {
		b.WriteString("; collapsed")
	}
	if cs.detail != "" {
		b.WriteString("; detail=")
		b.WriteString(cs.detail)
	}
	return b.String()
}
