// Package fakeclock is the tests' one settable clock: time-dependent code
// takes a `now func() time.Time` (or a small clock interface), and a test
// hands it a Clock's Now and moves time with Advance instead of sleeping.
// It imports nothing of the module, so that internal tests can use it.
package fakeclock

import (
	"sync"
	"time"
)

// Start is where New starts: a fixed instant, so that runs are alike.
var Start = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New is a Clock at Start.
func New() *Clock { return At(Start) }

// At is a Clock at t.
func At(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock d forward (backward for a negative d).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
