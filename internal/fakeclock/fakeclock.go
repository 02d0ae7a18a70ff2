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
	mu   sync.Mutex
	t    time.Time
	tick time.Duration // added after each reading (SetTick)
}

// New is a Clock at Start.
func New() *Clock { return At(Start) }

// At is a Clock at t.
func At(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time. With a tick set, each reading moves the clock
// on by it afterwards.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(c.tick)
	return t
}

// SetTick makes every reading move the clock d forward afterwards, so
// that a duration measured with it is never zero while time otherwise
// stands still (0, the default: readings do not move it).
func (c *Clock) SetTick(d time.Duration) {
	c.mu.Lock()
	c.tick = d
	c.mu.Unlock()
}

// Advance moves the clock d forward (backward for a negative d).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
