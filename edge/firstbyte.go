package edge

import (
	"sync"
	"time"
)

// firstByteTimer ends a fill whose response headers did not come within
// the site's timeout (errFirstByteTimeout). The handler keeps stopped
// ones in a pool (Handler.firstByteTimers) and a fill re-arms one
// (Reset) instead of making a timer and a closure of its own on every
// miss (time.AfterFunc). One whose time came is never reused: its
// function may still be about to run, and must not meet another fill.
type firstByteTimer struct {
	t  *time.Timer
	mu sync.Mutex
	f  *flight // the fill it ends; nil once it fired or was stopped
}

// armFirstByte starts the first-byte timeout d of f's fill.
func (h *Handler) armFirstByte(f *flight, d time.Duration) *firstByteTimer {
	ft, _ := h.firstByteTimers.Get().(*firstByteTimer)
	if ft == nil {
		ft = &firstByteTimer{f: f}
		ft.t = time.AfterFunc(d, ft.fire)
		return ft
	}
	ft.mu.Lock()
	ft.f = f
	ft.mu.Unlock()
	ft.t.Reset(d)
	return ft
}

// fire ends the fill with errFirstByteTimeout, unless stop came first.
func (ft *firstByteTimer) fire() {
	ft.mu.Lock()
	f := ft.f
	ft.f = nil
	ft.mu.Unlock()
	if f != nil {
		f.cancel(errFirstByteTimeout)
	}
}

// stop stops the timeout and reports whether it ended the fill (or is
// ending it): then the headers came too late. A timer stopped in time
// goes back to the handler's pool.
func (h *Handler) stopFirstByte(ft *firstByteTimer) (fired bool) {
	stopped := ft.t.Stop()
	ft.mu.Lock()
	fired = ft.f == nil
	ft.f = nil
	ft.mu.Unlock()
	if stopped {
		h.firstByteTimers.Put(ft)
	}
	return fired
}
