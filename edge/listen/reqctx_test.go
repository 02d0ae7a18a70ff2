package listen

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The fast front's request context (reqContext) must be a
// context.WithCancel of missContext in all that a handler can see.

// testReqParent is a parent as missContext makes it.
func testReqParent() context.Context {
	ctx := context.WithValue(context.Background(), http.ServerContextKey, &http.Server{})
	return context.WithValue(ctx, http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80})
}

func wantCanceled(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: Done not closed", what)
	}
	if err := ctx.Err(); err != context.Canceled {
		t.Fatalf("%s: Err = %v, want context.Canceled", what, err)
	}
	if err := context.Cause(ctx); err != context.Canceled {
		t.Fatalf("%s: Cause = %v, want context.Canceled", what, err)
	}
}

func TestReqContextEndsAsAWithCancel(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, tc := range []struct {
		name       string
		doneBefore bool // Done asked before cancel (inner made)
	}{{"Done asked before cancel", true}, {"Done first asked after cancel", false}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newReqContext(testReqParent())
			var done <-chan struct{}
			if tc.doneBefore {
				done = c.Done()
				if c.Done() != done {
					t.Fatal("Done returned another channel")
				}
				select {
				case <-done:
					t.Fatal("Done closed before cancel")
				default:
				}
			}
			if c.Err() != nil || context.Cause(c) != nil {
				t.Fatalf("before cancel: Err %v, Cause %v", c.Err(), context.Cause(c))
			}
			if _, ok := c.Deadline(); ok {
				t.Fatal("a deadline")
			}
			c.cancel()
			c.cancel() // a second call does nothing
			wantCanceled(t, c, "after cancel")
			if done != nil && c.Done() != done {
				t.Fatal("Done returned another channel after cancel")
			}
		})
	}
}

func TestReqContextValuesAreMissContexts(t *testing.T) {
	parent := testReqParent()
	c := newReqContext(parent)
	check := func(ctx context.Context) {
		t.Helper()
		for _, k := range []any{http.ServerContextKey, http.LocalAddrContextKey} {
			if got, want := ctx.Value(k), parent.Value(k); got == nil || got != want {
				t.Fatalf("Value(%v) = %v, want %v", k, got, want)
			}
		}
		if v := ctx.Value("other"); v != nil {
			t.Fatalf("Value(other) = %v", v)
		}
	}
	check(c)
	_ = c.Done() // inner made: the values stay the parent's
	check(c)
	v := context.WithValue(c, "mine", 1)
	check(v)
	if v.Value("mine") != 1 {
		t.Fatal("a value set beneath lost")
	}
}

// Contexts derived from it, directly or beneath a context.WithValue (a
// pass's, a tracing span's), end with it, each as the context package
// would end a WithCancel's, and none is watched by a goroutine of its
// own (as the context package does for a parent it does not know).
func TestReqContextDerivedEndWithIt(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c := newReqContext(testReqParent())
	g0 := runtime.NumGoroutine()
	const n = 50
	var derived []context.Context
	var cancels []context.CancelFunc
	for i := 0; i < n; i++ {
		d1, cancel1 := context.WithCancel(c)
		d2, cancel2 := context.WithTimeout(c, time.Hour)
		d3, cancel3 := context.WithCancel(context.WithValue(c, "k", i))
		derived = append(derived, d1, d2, d3)
		cancels = append(cancels, cancel1, cancel2, cancel3)
	}
	var ran atomic.Int32
	ranDone := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		context.AfterFunc(context.WithValue(c, "k", i), func() { ran.Add(1); ranDone <- struct{}{} })
	}
	if g := runtime.NumGoroutine(); g > g0+n/2 {
		t.Fatalf("%d goroutines for %d derived contexts (from %d)", g, 4*n, g0)
	}
	// One canceled alone leaves the others.
	cancels[0]()
	if derived[1].Err() != nil || c.Err() != nil {
		t.Fatal("canceling a child ended its sibling or parent")
	}
	c.cancel()
	for i, d := range derived {
		wantCanceled(t, d, fmt.Sprintf("derived context %d", i))
	}
	for i := 0; i < n; i++ {
		select {
		case <-ranDone:
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d AfterFuncs ran", ran.Load(), n)
		}
	}
	for _, cancel := range cancels {
		cancel()
	}
}

// The slot's f runs once, after cancel, on a goroutine of its own: the
// canceler (the front's connection goroutine, or its watch) may hold
// what f waits for.
func TestReqContextAfterFuncRunsOnItsOwnGoroutine(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c := newReqContext(testReqParent())
	var mu sync.Mutex
	var runs atomic.Int32
	ran := make(chan struct{}, 2)
	stop := c.AfterFunc(func() {
		mu.Lock() // held by the canceler until cancel returns
		mu.Unlock()
		runs.Add(1)
		ran <- struct{}{}
	})
	select {
	case <-ran:
		t.Fatal("f ran before cancel")
	case <-time.After(10 * time.Millisecond):
	}
	mu.Lock()
	c.cancel()
	mu.Unlock()
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("f did not run after cancel")
	}
	if stop() {
		t.Fatal("stop after f ran reported true")
	}
	c.cancel()
	time.Sleep(10 * time.Millisecond)
	if n := runs.Load(); n != 1 {
		t.Fatalf("f ran %d times", n)
	}

	// Registered after cancel: runs at once, on its own goroutine.
	mu.Lock()
	stop = c.AfterFunc(func() { mu.Lock(); mu.Unlock(); ran <- struct{}{} })
	mu.Unlock()
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("f registered after cancel did not run")
	}
	if stop() {
		t.Fatal("stop of f registered after cancel reported true")
	}
}

func TestReqContextAfterFuncStop(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c := newReqContext(testReqParent())
	var runs atomic.Int32
	f := func() { runs.Add(1) }
	stop := c.AfterFunc(f)
	if !stop() {
		t.Fatal("stop before cancel reported false")
	}
	if stop() {
		t.Fatal("a second stop reported true")
	}
	// The slot is free again: a new registration takes it, and the
	// first's stop, called again, does not stop it.
	ran := make(chan struct{}, 1)
	stop2 := c.AfterFunc(func() { ran <- struct{}{} })
	if stop() {
		t.Fatal("a stale stop reported true")
	}
	c.cancel()
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("the second registration did not run (a stale stop stopped it?)")
	}
	if stop2() {
		t.Fatal("stop after the run reported true")
	}
	time.Sleep(10 * time.Millisecond)
	if n := runs.Load(); n != 0 {
		t.Fatalf("a stopped f ran %d times", n)
	}
}

// Registrations beyond the slot's work as context.AfterFunc's: each runs
// once after cancel unless stopped first.
func TestReqContextAfterFuncMoreThanOne(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c := newReqContext(testReqParent())
	const n = 4
	var ran [n]atomic.Int32
	var wg sync.WaitGroup
	stops := make([]func() bool, n)
	for i := range n {
		wg.Add(1)
		stops[i] = c.AfterFunc(func() { ran[i].Add(1); wg.Done() })
	}
	// Stop one in the slot and one beyond it.
	for _, i := range []int{0, 2} {
		if !stops[i]() {
			t.Fatalf("stop %d before cancel reported false", i)
		}
		wg.Done()
	}
	c.cancel()
	wg.Wait()
	time.Sleep(10 * time.Millisecond)
	for i := range n {
		want := int32(1)
		if i == 0 || i == 2 {
			want = 0
		}
		if got := ran[i].Load(); got != want {
			t.Fatalf("f %d ran %d times, want %d", i, got, want)
		}
		if stops[i]() {
			t.Fatalf("stop %d after cancel reported true", i)
		}
	}
}

// cancel and stop race (the handler's end, or the watch, against the
// leader's stop): f runs, once, exactly when stop reports false. Run
// with -race.
func TestReqContextCancelRacesStop(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const n = 2000
	type result struct {
		stopped bool
		runs    *atomic.Int32
	}
	results := make([]result, n)
	for i := range n {
		c := newReqContext(testReqParent())
		runs := new(atomic.Int32)
		stop := c.AfterFunc(func() { runs.Add(1) })
		if i%2 == 1 {
			c.AfterFunc(func() {}) // one beyond the slot too
		}
		var wg sync.WaitGroup
		wg.Add(3)
		go func() { defer wg.Done(); c.cancel() }()
		go func() { defer wg.Done(); _ = c.Err(); _ = c.Done(); _ = c.Value(http.ServerContextKey) }()
		var stopped bool
		go func() { defer wg.Done(); stopped = stop() }()
		wg.Wait()
		if stop() {
			t.Fatalf("run %d: stop reported true after cancel and stop", i)
		}
		if c.Err() != context.Canceled {
			t.Fatalf("run %d: Err %v", i, c.Err())
		}
		results[i] = result{stopped, runs}
	}
	deadline := time.Now().Add(5 * time.Second)
	for i, r := range results {
		want := int32(1)
		if r.stopped {
			want = 0
		}
		for r.runs.Load() != want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if got := r.runs.Load(); got != want {
			t.Fatalf("run %d: stop reported %v, f ran %d times", i, r.stopped, got)
		}
	}
	time.Sleep(10 * time.Millisecond) // a stopped f that ran late would show now
	for i, r := range results {
		if r.stopped && r.runs.Load() != 0 {
			t.Fatalf("run %d: a stopped f ran", i)
		}
	}
}
