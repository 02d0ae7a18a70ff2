package edge

import (
	"context"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/internal/poll"
)

// The first-byte timeout ends its own fill with errFirstByteTimeout and
// says so at stop; a timer stopped in time ends nothing and is reused,
// one whose time came is not (its function could meet the next fill), and
// no fill whose stop said "in time" is ever ended by a timer.
func TestFirstByteTimerEndsOnlyItsFill(t *testing.T) {
	h := &Handler{}
	f1, ctx1 := h.newFlight("k1", false, nil)
	ft1 := h.armFirstByte(f1, time.Nanosecond)
	poll.Until(t, 10*time.Second, "the timeout ending the fill", func() bool { return ctx1.Err() != nil })
	if c := context.Cause(ctx1); c != errFirstByteTimeout {
		t.Fatalf("cause %v, want errFirstByteTimeout", c)
	}
	if !h.stopFirstByte(ft1) {
		t.Fatal("stop after the timeout: want fired")
	}
	if got, _ := h.firstByteTimers.Get().(*firstByteTimer); got == ft1 {
		t.Fatal("a timer whose time came was reused")
	}

	f2, ctx2 := h.newFlight("k2", false, nil)
	ft2 := h.armFirstByte(f2, time.Hour)
	if h.stopFirstByte(ft2) || ctx2.Err() != nil {
		t.Fatal("a timeout stopped in time ended its fill")
	}
	f2.cancel(nil)

	// Many fills with timeouts about as long as their wait: whichever
	// way each one goes, one whose stop said "in time" is never ended.
	var inTime []context.Context
	for i := range 2000 {
		f, ctx := h.newFlight("k", false, nil)
		ft := h.armFirstByte(f, time.Duration(i%50)*time.Microsecond)
		for range i % 7 {
			ctx.Err() // a moment's work
		}
		if !h.stopFirstByte(ft) {
			inTime = append(inTime, ctx)
		}
	}
	for i, ctx := range inTime {
		if ctx.Err() != nil {
			t.Fatalf("fill %d ended by a timer after its stop said in time", i)
		}
	}
	if n := h.fills.len(); n != len(inTime) {
		t.Errorf("%d fills listed, want %d (those not ended)", n, len(inTime))
	}
}
