package listen

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// reqContext is the context of a request the fast front serves through
// the handler (fastConn.serveMiss): a context.WithCancel of missContext
// made lean for the one thing a miss asks of it. The inline fill's
// leader (edge's startFillInline) registers a function on it to call
// the fill off when the client goes; with a WithCancel and
// context.AfterFunc that cost, on every miss, the cancelCtx and its
// cancel closure, its Done channel, a children map, the afterFuncCtx
// and its stop closure, and the cancelCtx's lock taken twice. Here it
// costs this one object and a stop closure: BenchmarkMissFront/fast
// makes 91 allocations per miss, was 96 (the in-process origin's
// included); an all-miss edge (wrk -c64, 1 KiB) about 31, was about 34
// by its sampled allocation profile. CPU per miss moved less than the
// machine's noise: 0.985 of the WithCancel's (user time 0.97), the
// mean of six interleaved runs.
//
// It answers context.AfterFunc's protocol (an AfterFunc method, which
// edge calls directly when a request's context has one): the first
// registration at a time takes a slot of its own. Whatever else asks
// more of it (Done, a second registration) gets a cancelCtx made then
// (inner), which cancel ends too, and which Value shows to the context
// package: so a context derived from this one, directly or beneath a
// context.WithValue (a pass's, a tracing span's), is registered with
// inner as it was with the WithCancel, never watched by a goroutine,
// and context.Cause is inner's. Other values are missContext's
// (http.ServerContextKey, http.LocalAddrContextKey); the parent must
// never end (missContext does not), so the request's context ends only
// by cancel: when the handler returns, a write fails or the watch finds
// the client gone. Err and Cause are then context.Canceled, as a
// WithCancel's.
//
// A reqContext is one request's: never reused, since a handler may
// keep r.Context() after its request.
type reqContext struct {
	parent   context.Context // values only: never ends
	canceled atomic.Bool     // set under mu, before inner is canceled
	inner    atomic.Value    // context.Context: a cancelCtx, made under mu when first needed

	mu          sync.Mutex
	err         error  // context.Canceled once canceled
	f           func() // the AfterFunc slot; nil when free
	gen         uint64 // counts the slot's registrations, so that a stale stop is a no-op
	innerCancel context.CancelFunc

	// url is the request's URL when newRequest builds it itself
	// (parseOriginForm): one object with the context instead of one
	// of its own, as both live as long as the request.
	url url.URL
}

// newReqContext returns a request's context over parent, which must
// never end.
func newReqContext(parent context.Context) *reqContext {
	return &reqContext{parent: parent}
}

// innerCtx returns inner, made (canceled if c is) if it was not.
func (c *reqContext) innerCtx() context.Context {
	if in := c.inner.Load(); in != nil {
		return in.(context.Context)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if in := c.inner.Load(); in != nil {
		return in.(context.Context)
	}
	in, cancel := context.WithCancel(context.Background())
	if c.canceled.Load() {
		cancel()
	}
	c.innerCancel = cancel
	c.inner.Store(in)
	return in
}

func (c *reqContext) Deadline() (deadline time.Time, ok bool) { return c.parent.Deadline() }

// Value answers the context package's key for a cancelCtx with inner,
// if it was made (inner holds no other value); every other key is the
// parent's.
func (c *reqContext) Value(key any) any {
	if in := c.inner.Load(); in != nil {
		if v := in.(context.Context).Value(key); v != nil {
			return v
		}
	}
	return c.parent.Value(key)
}

// Done is inner's Done.
func (c *reqContext) Done() <-chan struct{} { return c.innerCtx().Done() }

// Err is context.Canceled once cancel was called, else nil.
func (c *reqContext) Err() error {
	if !c.canceled.Load() {
		return nil
	}
	// cancel sets err and cancels inner (closing Done) under mu, after
	// it sets canceled: err is read under mu so that it is never
	// non-nil while Done is open.
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *reqContext) String() string { return fmt.Sprint(c.parent) + ".WithCancel" }

// cancel ends the context: cancels inner if it was made, and starts
// what the slot holds on a goroutine of its own. Only the first call
// does anything.
func (c *reqContext) cancel() {
	c.mu.Lock()
	if c.canceled.Load() {
		c.mu.Unlock()
		return
	}
	c.canceled.Store(true)
	c.err = context.Canceled
	if c.innerCancel != nil {
		// Under mu, as a cancelCtx cancels its children under its
		// lock: Err must not answer before Done is closed. What
		// inner's cancel runs calls nothing of c.
		c.innerCancel()
	}
	f := c.f
	c.f = nil
	c.mu.Unlock()
	if f != nil {
		go f()
	}
}

// AfterFunc arranges for f to run on a goroutine of its own once the
// context ends (at once if it has), as context.AfterFunc does, and
// returns the function that stops it: stop reports whether it stopped f
// from running (false if f ran or was stopped already). The first
// registration at a time takes the context's slot and costs nothing but
// stop; any other is context.AfterFunc's, on inner.
func (c *reqContext) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	if c.canceled.Load() {
		c.mu.Unlock()
		go f()
		return notStopped
	}
	if c.f != nil {
		c.mu.Unlock()
		return context.AfterFunc(c.innerCtx(), f)
	}
	c.f = f
	c.gen++
	gen := c.gen
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.f == nil || c.gen != gen {
			return false // it ran, or was stopped already
		}
		c.f = nil
		return true
	}
}

// notStopped is the stop of a function that has run (or is running).
func notStopped() bool { return false }
