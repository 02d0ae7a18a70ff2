package edge

import (
	"net/http"
	"testing"
	"time"
)

// The cache answers each second's own IMF-fixdate, also when two seconds
// share a slot and take turns in it, and one string per second while the
// slot holds it.
func TestDateCache(t *testing.T) {
	var c dateCache
	base := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC).Unix()
	other := base + int64(len(c.slots)) // the same slot
	for range 3 {
		for _, secs := range []int64{base, other, base + 1} {
			if got, want := c.value(secs), time.Unix(secs, 0).UTC().Format(http.TimeFormat); got != want {
				t.Fatalf("value(%d) = %q, want %q", secs, got, want)
			}
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { c.value(base + 1) }); allocs != 0 {
		t.Errorf("a cached second allocates %v times, want 0", allocs)
	}
}
