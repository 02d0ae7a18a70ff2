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
	growing int           // of those, fills with their answer waiting to grow
	// receiving counts fills that got room for their body and are
	// receiving it (they give bytes back when they end).
	receiving int
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

// fits reports whether n more bytes may be taken now. A request bigger
// than the whole budget fits only when nothing else is held, so that one
// large body can always make progress alone.
//
// A new fill's first chunk (admit) fits only while no fill that has its
// answer waits to grow: a fill whose request upstream is made goes first,
// or every fill would hold a first chunk and wait for the rest, each a
// wasted request upstream.
//
// A fill that has its answer (grow) may also go past the budget, by at
// most its own body (max_object_bytes), when no other fill is receiving
// a body (receiving says the caller is counted among them already: a
// body of unknown length grows more than once): the others then hold
// first chunks while they wait on upstream, possibly on an origin slot
// this very fill holds, and nothing would be given back in time. Only
// one fill at a time goes past: it is receiving. The caller holds mu.
func (b *byteBudget) fits(n int64, admit, receiving bool) bool {
	if admit {
		return b.growing == 0 && (b.used+n <= b.max || b.used == 0)
	}
	others := b.receiving
	if receiving {
		others--
	}
	return b.used+n <= b.max || b.used == 0 || others == 0
}

// take takes n bytes, waiting up to wait for room (and no longer than
// ctx). admit says n is a new fill's first chunk, else the fill has its
// answer and needs room for the body (see fits); receiving says the fill
// is counted as receiving a body already. It returns errInflightFull when
// no room came in time.
func (b *byteBudget) take(ctx context.Context, n int64, wait time.Duration, admit, receiving bool) error {
	if n <= 0 {
		return nil
	}
	var timer *time.Timer
	for {
		b.mu.Lock()
		if b.fits(n, admit, receiving) {
			b.used += n
			if !admit && !receiving {
				b.receiving++
			}
			b.mu.Unlock()
			return nil
		}
		if wait <= 0 {
			b.mu.Unlock()
			return errInflightFull
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		}
		freed := b.freed
		b.waiting++
		if !admit {
			b.growing++
		}
		b.mu.Unlock()
		var err error
		select {
		case <-freed:
		case <-timer.C:
			err = errInflightFull
		case <-ctx.Done():
			err = context.Cause(ctx)
		}
		b.mu.Lock()
		b.waiting--
		if !admit {
			b.growing--
			if b.growing == 0 {
				b.wake() // new fills may be admitted again
			}
		}
		b.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// done returns n bytes, the last a fill held; receiving says the fill was
// counted as receiving a body.
func (b *byteBudget) done(n int64, receiving bool) {
	if receiving {
		b.mu.Lock()
		b.receiving--
		b.wake() // a fill waiting to grow may go past the budget now
		b.mu.Unlock()
	}
	b.give(n)
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
