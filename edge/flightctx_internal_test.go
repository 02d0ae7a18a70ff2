package edge

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptrace"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/internal/poll"
)

// A fill's context: ended once, with its cause (context.Cause), its
// derived contexts with it; its AfterFunc slot runs what it holds when
// it ends, unless stopped first, runs a late registration at once, and
// a second registration at a time goes to context.AfterFunc and runs
// too; a stale stop leaves a newer registration in place.
func TestFlightContextEndsOnceWithItsAfterFuncs(t *testing.T) {
	var l fillList
	var trace httptrace.ClientTrace
	var c flightContext
	c.start(&l, &trace)
	if httptrace.ContextClientTrace(&c) != &trace {
		t.Fatal("the fill's trace is not its context's")
	}
	derived, cancel := context.WithCancel(&c)
	defer cancel()

	var stopped, slot, second atomic.Int32
	stop := c.AfterFunc(func() { stopped.Add(1) })
	if !stop() || stop() {
		t.Fatal("stop: want true once, then false")
	}
	stale := stop
	c.AfterFunc(func() { slot.Add(1) })
	if stale() {
		t.Fatal("a stale stop removed a newer registration")
	}
	stopSecond := c.AfterFunc(func() { second.Add(1) })

	cause := errors.New("the cause")
	c.end(cause)
	c.end(errors.New("another"))
	if got := context.Cause(&c); got != cause {
		t.Errorf("cause %v, want %v", got, cause)
	}
	if derived.Err() == nil {
		t.Error("a derived context did not end with it")
	}
	if slot.Load() != 1 || stopped.Load() != 0 {
		t.Errorf("slot ran %d times, stopped one %d; want 1, 0", slot.Load(), stopped.Load())
	}
	poll.Until(t, 10*time.Second, "the second registration running", func() bool { return second.Load() == 1 })
	if stopSecond() {
		t.Error("stop after the end: want false")
	}
	var late atomic.Int32
	if c.AfterFunc(func() { late.Add(1) })() {
		t.Error("stop of a late registration: want false")
	}
	if late.Load() != 1 {
		t.Error("a registration after the end did not run at once")
	}
	if n := l.len(); n != 0 {
		t.Errorf("%d contexts listed after the end, want 0", n)
	}
}

// The handler's list of fills: endAll ends every listed context (Close),
// and a context that ends by itself leaves the list.
func TestFillListEndsEveryListedFill(t *testing.T) {
	var l fillList
	var trace httptrace.ClientTrace
	cs := make([]flightContext, 4)
	for i := range cs {
		cs[i].start(&l, &trace)
	}
	cs[1].end(nil) // the middle
	cs[3].end(nil) // the head
	if n := l.len(); n != 2 {
		t.Fatalf("%d listed, want 2", n)
	}
	var aborted atomic.Int32
	cs[0].AfterFunc(func() { aborted.Add(1) })
	l.endAll(nil)
	for i := range cs {
		if cs[i].Err() == nil {
			t.Errorf("context %d not ended", i)
		}
	}
	if aborted.Load() != 1 {
		t.Error("endAll did not run a listed context's AfterFunc")
	}
	if n := l.len(); n != 0 {
		t.Errorf("%d listed after endAll, want 0", n)
	}
}

// Whatever runs because a fill's context ended sees it ended, with its
// cause: a registration that finds the context ending runs at once, and
// must not find it marked ended but not yet canceled. The lean origin
// client's abort ran in that window once (an abandoned fill's
// registration, under -race and load): its exchange failed with a write
// timeout while context.Cause was still nil, and the fill was remembered
// as the origin's failure, so that the key answered 504 from the failure
// memory to the clients that came next.
func TestFlightContextIsCanceledBeforeItsAfterFuncsRun(t *testing.T) {
	cause := errors.New("abandoned")
	var l fillList
	var trace httptrace.ClientTrace
	for i := range 2000 {
		var c flightContext
		c.start(&l, &trace)
		var seen atomic.Value // the cause the registration saw when it ran
		start := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			<-start
			c.AfterFunc(func() { seen.Store(fmt.Sprint(context.Cause(&c))) })
		}()
		close(start)
		c.end(cause)
		<-done
		if got, _ := seen.Load().(string); got != cause.Error() {
			t.Fatalf("iteration %d: the AfterFunc ran with the cause %q, want %q", i, got, cause)
		}
	}
}

// A failed fill is remembered for the key's backoff only when the
// origin failed it: not when the edge's drain took it, even before the
// drain's cancel reaches the fill's context (StopWaiting flips the
// leader's head wait first, then ends the context: a fill that sees
// the flip fails with errDraining while context.Cause may still be
// nil), nor when every client left, nor for the edge's own limits.
func TestRememberedOnlyForTheOriginsFailures(t *testing.T) {
	live := context.Background()
	abandoned, cancel := context.WithCancelCause(context.Background())
	cancel(errAbandoned)
	timedOut, cancel2 := context.WithCancelCause(context.Background())
	cancel2(errFirstByteTimeout)
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"origin unreachable", live, errors.New("origin o: connection refused"), true},
		{"first-byte timeout", timedOut, errors.New("origin o: timeout"), true},
		{"every client left", abandoned, errors.New("origin o: canceled"), false},
		{"the drain, context not yet ended", live, fmt.Errorf("origin o: %w", errDraining), false},
		{"the in-flight budget", live, fmt.Errorf("origin o: %w", errInflightFull), false},
	} {
		if got := remembered(tc.ctx, tc.err); got != tc.want {
			t.Errorf("%s: remembered %v, want %v", tc.name, got, tc.want)
		}
	}
}
