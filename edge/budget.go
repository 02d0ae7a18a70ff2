package edge

import (
	"context"
	"errors"
	"sync"
	"time"
)

// errInflightFull ends a fill that could not get room for its body
// within cache.inflight_wait: the edge answers 503 (or a stale copy).
var errInflightFull = errors.New("edge: the in-flight body budget (cache.max_inflight_bytes) is full")

// byteBudget bounds the bytes held by the bodies of fills in progress
// (cache.max_inflight_bytes): memory a store budget does not see yet. A
// fill takes bytes before it holds them and gives them back when its
// body is stored (the store charges it from then on) or dropped.
//
// It guards its own fields only; it never calls out while holding mu.
type byteBudget struct {
	mu      sync.Mutex
	max     int64
	used    int64
	freed   chan struct{} // closed (and replaced) whenever bytes are given back
	waiting int           // acquirers waiting for room
}

func newByteBudget(max int64) *byteBudget {
	return &byteBudget{max: max, freed: make(chan struct{})}
}

// setMax changes the budget (on reload). Fills holding more than the new
// budget keep what they hold.
func (b *byteBudget) setMax(max int64) {
	b.mu.Lock()
	b.max = max
	b.wake()
	b.mu.Unlock()
}

// tryTake takes n bytes if they fit. A request bigger than the whole
// budget fits only when nothing else is held, so one large body can
// always make progress alone.
func (b *byteBudget) tryTake(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n <= b.max || b.used == 0 {
		b.used += n
		return true
	}
	return false
}

// take takes n bytes, waiting up to wait for room (and no longer than
// ctx). It returns errInflightFull when no room came in time.
func (b *byteBudget) take(ctx context.Context, n int64, wait time.Duration) error {
	if n <= 0 || b.tryTake(n) {
		return nil
	}
	if wait <= 0 {
		return errInflightFull
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		b.mu.Lock()
		if b.used+n <= b.max || b.used == 0 {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		freed := b.freed
		b.waiting++
		b.mu.Unlock()
		select {
		case <-freed:
		case <-timer.C:
			b.unwait()
			return errInflightFull
		case <-ctx.Done():
			b.unwait()
			return context.Cause(ctx)
		}
		b.unwait()
	}
}

func (b *byteBudget) unwait() {
	b.mu.Lock()
	b.waiting--
	b.mu.Unlock()
}

// give returns n bytes.
func (b *byteBudget) give(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	if b.used < 0 {
		b.used = 0 // never: each fill gives back what it took
	}
	b.wake()
	b.mu.Unlock()
}

// wake tells waiters that bytes were given back. The caller holds mu.
func (b *byteBudget) wake() {
	if b.waiting > 0 {
		close(b.freed)
		b.freed = make(chan struct{})
	}
}

// stats returns the bytes held and the budget.
func (b *byteBudget) stats() (used, max int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.max
}
