// Package poll is the tests' one way to wait for asynchronous state
// (gossip, background fills, a listener closing): poll a condition until
// it holds, bounded in time, and fail the test if it never does. It is
// never for asserting speed: the bounds are generous because the machine
// is shared, and a test only asserts that the state is reached.
//
// It imports nothing of the module, so that every package's tests,
// internal ones included, can use it without an import cycle.
package poll

import (
	"testing"
	"time"
)

// Interval is how long Until and Steady sleep between two looks.
const Interval = 10 * time.Millisecond

// Until polls cond every Interval until it holds, and fails the test
// (t.Fatalf, naming what) if it does not within timeout. Call it from the
// test's goroutine.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", timeout, what)
			return
		}
		time.Sleep(Interval)
	}
}

// Steady is Until for a condition that must hold without a break for
// hold: a region whose members agree for a moment, not just once. Each
// break starts the wait for hold again; the whole wait is bounded by
// timeout.
func Steady(t testing.TB, timeout, hold time.Duration, what string, cond func() bool) {
	t.Helper()
	var since time.Time
	Until(t, timeout, what+" (for "+hold.String()+")", func() bool {
		if !cond() {
			since = time.Time{}
			return false
		}
		if since.IsZero() {
			since = time.Now()
		}
		return time.Since(since) >= hold
	})
}
