package origin

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// waiter starts an acquire in the background and returns where its result
// will arrive.
func waiter(s *slots, ctx context.Context, wait time.Duration) <-chan error {
	ch := make(chan error, 1)
	go func() {
		_, err := s.acquire(ctx, wait)
		ch <- err
	}()
	synctest.Wait() // it is queued (or done) before the next one starts
	return ch
}

func granted(t *testing.T, ch <-chan error) bool {
	t.Helper()
	synctest.Wait()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("acquire: %v", err)
		}
		return true
	default:
		return false
	}
}

func checkState(t *testing.T, s *slots, active, queued, limit int) {
	t.Helper()
	if a, q, l := s.state(); a != active || q != queued || l != limit {
		t.Errorf("state %d active, %d queued, limit %d; want %d, %d, %d", a, q, l, active, queued, limit)
	}
}

// Waiters get slots in the order they came, each as one is given back;
// a newcomer does not jump the queue.
func TestSlotsFIFO(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSlots(1, 1, 10)
		ctx := context.Background()
		if _, err := s.acquire(ctx, 0); err != nil {
			t.Fatal(err)
		}
		w := []<-chan error{waiter(s, ctx, time.Hour), waiter(s, ctx, time.Hour), waiter(s, ctx, time.Hour)}
		checkState(t, s, 1, 3, 1)
		for i := range w {
			s.release()
			for j := range w[i+1:] {
				if granted(t, w[i+1+j]) {
					t.Fatalf("waiter %d served before waiter %d", i+1+j, i)
				}
			}
			if !granted(t, w[i]) {
				t.Fatalf("waiter %d not served after a release", i)
			}
		}
		if _, err := s.acquire(ctx, 0); err != errQueueTimeout {
			t.Errorf("all slots taken, no wait: %v", err)
		}
		s.release()
		checkState(t, s, 0, 0, 1)
	})
}

// The wait is bounded: by the time given, by the caller's context, and by
// the queue's length.
func TestSlotsBoundedWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSlots(1, 1, 2)
		ctx := context.Background()
		s.acquire(ctx, 0)
		start := time.Now()
		waited, err := s.acquire(ctx, time.Second)
		if err != errQueueTimeout || waited != time.Second || time.Since(start) != time.Second {
			t.Errorf("timed out wait: %v after %v", err, waited)
		}
		checkState(t, s, 1, 0, 1)

		cctx, cancel := context.WithCancel(ctx)
		a := waiter(s, cctx, time.Hour)
		b := waiter(s, ctx, time.Hour)
		if _, err := s.acquire(ctx, time.Hour); err != errQueueFull {
			t.Errorf("third in a queue of two: %v", err)
		}
		cancel()
		synctest.Wait()
		if err := <-a; err != context.Canceled {
			t.Errorf("canceled waiter: %v", err)
		}
		checkState(t, s, 1, 1, 1)
		s.release()
		if !granted(t, b) {
			t.Error("the remaining waiter was not served")
		}
		s.release()
		checkState(t, s, 0, 0, 1)

		// No queue at all.
		s0 := newSlots(1, 1, 0)
		s0.acquire(ctx, 0)
		if _, err := s0.acquire(ctx, time.Hour); err != errQueueFull {
			t.Errorf("max_queue -1: %v", err)
		}
	})
}

// The first HTTP/2 answer raises the cap from max_conns to max_inflight
// and serves waiters at once; a return to HTTP/1.1 cuts it as slots come
// back.
func TestSlotsFollowProtocol(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSlots(1, 3, 10)
		ctx := context.Background()
		s.acquire(ctx, 0)
		w := []<-chan error{waiter(s, ctx, time.Hour), waiter(s, ctx, time.Hour), waiter(s, ctx, time.Hour)}
		s.setHTTP2(true)
		if !granted(t, w[0]) || !granted(t, w[1]) || granted(t, w[2]) {
			t.Fatal("HTTP/2 did not serve exactly two more")
		}
		checkState(t, s, 3, 1, 3)
		s.setHTTP2(false)
		s.release()
		s.release()
		if granted(t, w[2]) {
			t.Fatal("served above the HTTP/1.1 cap")
		}
		checkState(t, s, 1, 1, 1)
		s.release()
		if !granted(t, w[2]) {
			t.Fatal("not served once below the cap")
		}
		s.release()
		checkState(t, s, 0, 0, 1)
	})
}

// BenchmarkSlots measures taking and giving back a free slot: the cost the
// cap adds to every request.
func BenchmarkSlots(b *testing.B) {
	s := newSlots(unlimited, unlimited, 1024)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.acquire(ctx, time.Second)
			s.setHTTP2(false)
			s.release()
		}
	})
}
