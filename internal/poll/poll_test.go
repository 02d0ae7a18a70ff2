package poll_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/internal/poll"
)

// recorder is a testing.TB that records a Fatalf instead of ending the
// test.
type recorder struct {
	testing.TB
	fatal string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }

func TestUntil(t *testing.T) {
	n := 0
	r := &recorder{TB: t}
	poll.Until(r, 5*time.Second, "the third look", func() bool { n++; return n == 3 })
	if r.fatal != "" || n != 3 {
		t.Errorf("a condition that holds at the third look: %d looks, fatal %q", n, r.fatal)
	}
	poll.Until(r, 50*time.Millisecond, "never", func() bool { return false })
	if !strings.Contains(r.fatal, "waiting until never") {
		t.Errorf("a condition that never holds: fatal %q", r.fatal)
	}
}

func TestSteadyWaitsForAnUnbrokenHold(t *testing.T) {
	looks, breaks := 0, 0
	r := &recorder{TB: t}
	start := time.Now()
	var lastBreak time.Time
	poll.Steady(r, 5*time.Second, 100*time.Millisecond, "held", func() bool {
		looks++
		if looks == 5 { // one break after the hold began
			breaks++
			lastBreak = time.Now()
			return false
		}
		return true
	})
	if r.fatal != "" || breaks != 1 {
		t.Fatalf("fatal %q, %d breaks", r.fatal, breaks)
	}
	if held := time.Since(lastBreak); held < 100*time.Millisecond {
		t.Errorf("returned %s after the break, before the hold of 100ms (started %s ago)", held, time.Since(start))
	}
	poll.Steady(r, 100*time.Millisecond, time.Second, "held too long", func() bool { return true })
	if !strings.Contains(r.fatal, "held too long") {
		t.Errorf("a hold longer than the timeout: fatal %q", r.fatal)
	}
}
