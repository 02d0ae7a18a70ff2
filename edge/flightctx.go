package edge

import (
	"context"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
)

// The states of flightContext.headWait.
const (
	headWaiting = 1
	headDrained = 2
)

// flightContext is the context of a flight's fill. It is not a child of
// the handler's context: registering every fill as a child of one
// context cost an insert and a delete in that context's children map,
// each under its mutex (one lock for every miss of the node). Instead
// the handler keeps its running fills in a list (fillList) and Close
// ends each of them.
//
// It also answers context.AfterFunc's own protocol (an AfterFunc
// method) with one slot of its own, which the lean origin client uses
// to abort its connection when the fill ends: context.AfterFunc on a
// cancelCtx cost the fill's context a children map, its Done channel, a
// registration and a stop closure on every miss.
//
// Its Context is the fill's 1xx trace (see startFill) over a cancelCtx
// of its own, so that context.Cause, Done and Err are the cancelCtx's,
// and a context derived from it is registered with that cancelCtx as
// usual. end is the only way it is canceled.
type flightContext struct {
	context.Context
	cancelCause context.CancelCauseFunc
	list        *fillList

	mu       sync.Mutex
	ended    bool
	abort    func() // the AfterFunc slot; nil when free
	abortGen uint64 // counts the slot's registrations, so that a stale stop is a no-op

	// headWait says whether a leader waits on its own goroutine for
	// the fill's head (startFillInline): headWaiting while it does,
	// headDrained once StopWaiting took the fill (endHeadWaits), else
	// 0. The fill and endHeadWaits each change it by compare-and-swap,
	// so only one of them decides.
	headWait atomic.Int32

	// guarded by list.mu
	prev, next *flightContext
	listed     bool
}

// start makes c the context of a fill with trace as its client trace,
// listed in l until it ends.
func (c *flightContext) start(l *fillList, trace *httptrace.ClientTrace) {
	inner, cancel := context.WithCancelCause(context.Background())
	c.Context = httptrace.WithClientTrace(inner, trace)
	c.cancelCause = cancel
	c.list = l
	l.add(c)
}

// end cancels the fill's context with cause (nil: context.Canceled),
// runs what the AfterFunc slot holds and takes the context off its
// list. Only the first call does anything, and none on a context that
// never started (a flight whose result was known: doneFlight).
func (c *flightContext) end(cause error) {
	if c.list == nil {
		return
	}
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	// Canceled before it is marked ended: an AfterFunc that finds it
	// ended runs at once, and what it interrupts (the lean client's
	// exchange) must then find the context's cause, not nil, or the
	// fill's failure would pass for the origin's (see remembered). The
	// cancelCtx's cancel calls nothing that takes c.mu.
	c.cancelCause(cause)
	c.ended = true
	abort := c.abort
	c.abort = nil
	c.mu.Unlock()
	c.list.remove(c)
	if abort != nil {
		abort()
	}
}

// AfterFunc arranges for f to run once the context ends, as
// context.AfterFunc does, and returns the function that stops it. The
// first registration at a time takes the context's slot and costs
// nothing but its stop function; f then runs on the goroutine that ends
// the context (or at once, on the caller's, if it has ended already),
// so it must be quick and take no lock (the lean client's abort sets a
// past deadline). Any other registration is context.AfterFunc's.
func (c *flightContext) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		f()
		return func() bool { return false }
	}
	if c.abort != nil {
		c.mu.Unlock()
		return context.AfterFunc(c.Context, f)
	}
	c.abort = f
	c.abortGen++
	gen := c.abortGen
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.abort == nil || c.abortGen != gen {
			return false // it ran, or was stopped already
		}
		c.abort = nil
		return true
	}
}

// fillList is the handler's list of the fills whose context has not
// ended, for Close to end them. Its lock is a leaf, held over pointer
// updates only.
type fillList struct {
	mu   sync.Mutex
	head *flightContext
}

// add lists c.
func (l *fillList) add(c *flightContext) {
	l.mu.Lock()
	c.prev, c.next, c.listed = nil, l.head, true
	if l.head != nil {
		l.head.prev = c
	}
	l.head = c
	l.mu.Unlock()
}

// remove takes c off the list if it is on it.
func (l *fillList) remove(c *flightContext) {
	l.mu.Lock()
	if c.listed {
		if c.prev != nil {
			c.prev.next = c.next
		} else {
			l.head = c.next
		}
		if c.next != nil {
			c.next.prev = c.prev
		}
		c.prev, c.next, c.listed = nil, nil, false
	}
	l.mu.Unlock()
}

// endAll ends every listed context with cause (see flightContext.end),
// outside the list's lock.
func (l *fillList) endAll(cause error) {
	l.mu.Lock()
	var all []*flightContext
	for c := l.head; c != nil; {
		next := c.next
		all = append(all, c)
		c.prev, c.next, c.listed = nil, nil, false
		c = next
	}
	l.head = nil
	l.mu.Unlock()
	for _, c := range all {
		c.end(cause)
	}
}

// len reports how many contexts are listed.
func (l *fillList) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for c := l.head; c != nil; c = c.next {
		n++
	}
	return n
}

// endHeadWaits ends, with cause, every listed context whose leader waits
// for the fill's head on its own goroutine (headWait), outside the
// list's lock.
func (l *fillList) endHeadWaits(cause error) {
	l.mu.Lock()
	var taken []*flightContext
	for c := l.head; c != nil; c = c.next {
		if c.headWait.CompareAndSwap(headWaiting, headDrained) {
			taken = append(taken, c)
		}
	}
	l.mu.Unlock()
	for _, c := range taken {
		c.end(cause)
	}
}
