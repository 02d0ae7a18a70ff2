package origin

import (
	"container/list"
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Why a server refused a request a slot; both are KindOverloaded.
var (
	errQueueFull    = errors.New("max_inflight requests in flight and max_queue waiting")
	errQueueTimeout = errors.New("max_inflight requests in flight and none done within queue_timeout")
)

// unlimited is the limit of a cap turned off (-1 in the config).
const unlimited = math.MaxInt

// slots caps the requests in flight to one server. A request takes a slot
// before it is sent and gives it back when its response body is closed or
// its try fails. When none is free it waits in a FIFO queue of at most
// maxQueue requests, for a bounded time; a slot given back goes straight to
// the longest waiting request, so a steady stream of newcomers cannot starve
// it.
//
// The number of slots depends on the protocol the server last answered
// with: over HTTP/1.1 a request holds a connection, so the connection cap
// bounds it too, while over HTTP/2 it does not.
//
// mu guards every field but h2, which is written under mu and read without
// it; mu is never held across I/O or a wait.
type slots struct {
	mu       sync.Mutex
	limit    int // slots now; unlimited for no cap
	h1Limit  int // slots while the server speaks HTTP/1.1
	h2Limit  int // slots once it answers over HTTP/2
	h2       atomic.Bool
	active   int       // slots taken
	maxQueue int       // longest queue; 0: no queueing
	waiters  list.List // of chan struct{}, closed when a slot is handed over
}

// newSlots returns the slots of a server taken to speak HTTP/1.1 until it
// answers over HTTP/2.
func newSlots(h1Limit, h2Limit, maxQueue int) *slots {
	return &slots{limit: h1Limit, h1Limit: h1Limit, h2Limit: h2Limit, maxQueue: maxQueue}
}

// acquire takes a slot, waiting at most wait in the queue (not at all when
// wait <= 0) and never past ctx. It returns errQueueFull, errQueueTimeout or
// ctx's error when it gets none; waited is how long it spent in the queue.
func (s *slots) acquire(ctx context.Context, wait time.Duration) (waited time.Duration, err error) {
	s.mu.Lock()
	if s.active < s.limit && s.waiters.Len() == 0 {
		s.active++
		s.mu.Unlock()
		return 0, nil
	}
	switch {
	case s.waiters.Len() >= s.maxQueue:
		s.mu.Unlock()
		return 0, errQueueFull
	case wait <= 0:
		s.mu.Unlock()
		return 0, errQueueTimeout
	}
	ready := make(chan struct{})
	elem := s.waiters.PushBack(ready)
	s.mu.Unlock()

	start := time.Now()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-ready:
		return time.Since(start), nil
	case <-timer.C:
		err = errQueueTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-ready: // handed a slot just as the wait ended: take it
		return time.Since(start), nil
	default:
		s.waiters.Remove(elem)
		return time.Since(start), err
	}
}

// release gives a slot back: to the first waiter if the limit allows,
// else to the pool of free slots.
func (s *slots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active <= s.limit {
		if front := s.waiters.Front(); front != nil {
			close(s.waiters.Remove(front).(chan struct{}))
			return // the slot changes hands: active stays
		}
	}
	s.active--
}

// setHTTP2 records the protocol of the server's latest response and sets
// the number of slots to match. It costs an atomic load unless the
// protocol changed.
func (s *slots) setHTTP2(h2 bool) {
	if s.h2.Load() == h2 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.h2.Store(h2)
	if h2 {
		s.setLimitLocked(s.h2Limit)
	} else {
		s.setLimitLocked(s.h1Limit)
	}
}

// setLimitLocked changes the number of slots. A raise hands slots to
// waiters at once; a cut takes effect as slots come back.
func (s *slots) setLimitLocked(limit int) {
	s.limit = limit
	for s.active < s.limit {
		front := s.waiters.Front()
		if front == nil {
			break
		}
		close(s.waiters.Remove(front).(chan struct{}))
		s.active++
	}
}

// state returns the slots taken, the requests waiting and the limit.
func (s *slots) state() (active, queued, limit int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active, s.waiters.Len(), s.limit
}
