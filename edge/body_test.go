package edge

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/internal/poll"
)

// slowWriter lets a test decide when a reader's writes go through.
type slowWriter struct {
	mu   sync.Mutex
	got  bytes.Buffer
	gate chan struct{} // one receive per Write
}

func (s *slowWriter) Write(p []byte) (int, error) {
	<-s.gate
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got.Write(p)
}

// A streaming body keeps no more than about its window beyond the
// slowest reader, however much the fill pushes, and every reader still
// gets every byte.
func TestStreamingBodyIsBoundedAndWhole(t *testing.T) {
	const window, chunk, chunks = 64 << 10, 8 << 10, 64 // 512 KiB in all
	b := newGrowingBody(-1)
	b.stream(window)
	fast := &slowWriter{gate: make(chan struct{})}
	close(fast.gate) // never blocks
	slow := &slowWriter{gate: make(chan struct{})}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, w := range []*slowWriter{fast, slow} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = b.writeTo(context.Background(), w, nil)
		}()
	}
	waitUntil(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.readers) == 2 })

	var want bytes.Buffer
	appended := make(chan error, 1)
	go func() {
		for i := range chunks {
			p := bytes.Repeat([]byte{byte('a' + i%26)}, chunk)
			want.Write(p)
			if err := b.append(p); err != nil {
				appended <- err
				return
			}
			b.mu.Lock()
			held := int64(len(b.buf))
			b.mu.Unlock()
			if held > 2*window+2*chunk {
				appended <- errors.New("the body holds too much")
				return
			}
		}
		appended <- nil
	}()
	// The slow reader lets one write through at a time; the fill can
	// never get more than a window ahead of it.
	for done := false; !done; {
		select {
		case err := <-appended:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		case slow.gate <- struct{}{}:
		case <-time.After(10 * time.Second):
			t.Fatal("the fill and the slow reader are stuck")
		}
	}
	b.finish(nil)
	close(slow.gate)
	wg.Wait()
	for i, w := range []*slowWriter{fast, slow} {
		if errs[i] != nil || !bytes.Equal(w.got.Bytes(), want.Bytes()) {
			t.Fatalf("reader %d: err %v, %d bytes of %d", i, errs[i], w.got.Len(), want.Len())
		}
	}
	if _, whole, complete := b.state(); complete || whole != nil || b.bytes() != nil {
		t.Fatal("a streamed body claims to be whole")
	}
}

// A reader that comes after the start was dropped gets an error, not a
// body with a hole; a fill nobody reads, or a stopped one, ends.
func TestStreamingBodyEnds(t *testing.T) {
	b := newGrowingBody(-1)
	b.stream(64)
	id := b.register(0)
	if err := b.append(make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	b.advance(id, 32)
	if err := b.append(make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	if _, err := (readerAt{context.Background(), b}).ReadAt(make([]byte, 4), 0); !errors.Is(err, errBodyTrimmed) {
		t.Fatalf("late reader: %v, want errBodyTrimmed", err)
	}
	if n, err := b.writeTo(context.Background(), io.Discard, nil); !errors.Is(err, errBodyTrimmed) || n != 0 {
		t.Fatalf("late writeTo: %d bytes, %v", n, err)
	}
	b.leave(id)
	if err := b.append(make([]byte, 8)); !errors.Is(err, errNoReaders) {
		t.Fatalf("append with no reader left: %v, want errNoReaders", err)
	}

	b = newGrowingBody(-1)
	b.stream(4)
	b.register(0) // a reader that never reads
	done := make(chan error, 1)
	go func() { done <- b.append(make([]byte, 64)) }()
	b.stop()
	select {
	case err := <-done:
		if !errors.Is(err, errFillStopped) {
			t.Fatalf("stopped fill: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stop did not end a fill waiting for its reader")
	}
}

// waitUntil polls cond for up to 10 s (see internal/poll).
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	poll.Until(t, 10*time.Second, "the condition holds", cond)
}

// A request joins a flight under the handler's lock, and a fill calls
// into the handler (to unregister the flight) while it holds the body's
// lock: joining must therefore never wait for the body's lock, or the two
// deadlock (as a rolling-restart test once did).
func TestJoiningNeverWaitsForTheBodyLock(t *testing.T) {
	h := &Handler{flights: map[string]*flight{}, metrics: newMetrics(nil, nil)}
	h.cache.Store(&CacheConfig{FinishAbandoned: 0.5})
	f := &flight{done: make(chan struct{}), parties: 1}
	b := newGrowingBody(-1)
	f.attach(b)
	b.mu.Lock() // a fill inside appendThen
	joined := make(chan struct{})
	go func() {
		f.join()
		close(joined)
	}()
	select {
	case <-joined:
	case <-time.After(10 * time.Second):
		t.Fatal("join waited for the body's lock")
	}
	b.mu.Unlock()
	if got := b.pending.Load(); got != 2 {
		t.Fatalf("pending %d, want 2", got)
	}
	h.leave(f)
	h.leave(f)
	if got := b.pending.Load(); got != 0 {
		t.Fatalf("pending %d after both released", got)
	}
}

// A fill holds memory as its bytes arrive, not what its Content-Length
// announces (an attacker's origin, or a slow one, may announce 8 MiB and
// send a KiB): the buffer starts at a first chunk, doubles, and never
// grows past the announced length.
func TestBodyAllocatesAsBytesArrive(t *testing.T) {
	const announced = 100 << 10
	b := newGrowingBody(announced)
	if g := b.growthFor(1024); g != firstChunk {
		t.Fatalf("first KiB grows the buffer by %d bytes, want a first chunk (%d)", g, firstChunk)
	}
	if err := b.append(make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	if c := b.capacity(); c != firstChunk {
		t.Fatalf("capacity after the first KiB %d, want %d", c, firstChunk)
	}
	if err := b.append(make([]byte, firstChunk)); err != nil {
		t.Fatal(err)
	}
	if c := b.capacity(); c != 2*firstChunk {
		t.Fatalf("capacity after %d bytes %d, want %d", 1024+firstChunk, c, 2*firstChunk)
	}
	for b.received.Load() < announced {
		n := min(int64(8<<10), announced-b.received.Load())
		if err := b.append(make([]byte, n)); err != nil {
			t.Fatal(err)
		}
		if c := b.capacity(); c > announced {
			t.Fatalf("capacity %d past the announced %d", c, announced)
		}
	}
	if c := b.capacity(); c != announced {
		t.Fatalf("whole body in %d bytes of capacity, want %d", c, announced)
	}

	big := newGrowingBody(8 << 20)
	if err := big.append(make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	if c := big.capacity(); c != firstChunk {
		t.Fatalf("8 MiB announced, 1 KiB arrived: capacity %d, want %d", c, firstChunk)
	}
}
