package edge

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

var (
	// errBodyTrimmed is what a reader gets that asks for bytes a streaming
	// body no longer holds.
	errBodyTrimmed = errors.New("edge: body bytes already dropped (streamed past the storable size)")
	// errNoReaders ends a streaming fill that nobody reads any more.
	errNoReaders = errors.New("edge: nobody reads the streamed body")
	// errStreaming says a streaming body's size cannot be waited for.
	errStreaming = errors.New("edge: body of unknown length is streaming")
	// errFillStopped ends a fill whose handler is shutting down.
	errFillStopped = errors.New("edge: fill stopped")
)

// growingBody is a response body being filled from upstream while any number
// of readers read it (Traffic Server's read-while-writer): a reader blocks
// only until the bytes it wants have arrived, never for a polling interval.
//
// A body that outgrows what the cache stores (its length unknown until
// then) switches to streaming: from then on it keeps only the bytes that a
// registered reader has yet to read, and the fill waits while the slowest
// reader is more than a window behind, as a proxy without a cache would.
// Its memory stays bounded however long the body is.
type growingBody struct {
	mu   sync.Mutex
	cond sync.Cond
	buf  []byte
	base int64 // offset in the body of buf[0]: bytes before it were dropped
	done bool
	err  error // set with done when the fill failed
	size int64 // expected length, -1 if unknown

	streaming bool
	window    int64   // streaming: how far the slowest reader may lag
	readers   []int64 // registered readers' offsets; -1 for one gone
	// pending counts the requests that were handed the body (or wait for
	// it) and are not done with it: while more of them than registered
	// readers exist, one may yet start reading from the first byte. It is
	// atomic so that a request can join under the handler's lock, which
	// the fill takes while holding mu (see expect).
	pending atomic.Int64
	stopped bool // the fill was told to stop
	// received counts the bytes appended so far; announced is the
	// length upstream announced (-1 if none). Both are read without mu
	// (see fillProgress).
	received  atomic.Int64
	announced int64
	// finished is set with done, for readers that may not take mu (see
	// Handler.leave).
	finished atomic.Bool

	// spill, when set, is a file (a disk tier's spool) that holds the
	// body from its first byte to spilled: readers read those bytes from
	// it, and the memory buffer starts at spilled (see spillTo). It is
	// closed once the body is done and no request holds it (pending 0).
	spill       bodySpill
	spilled     int64
	spillClosed bool
}

// bodySpill is where a body too large for memory is written as it
// arrives: readable up to what was written until closed.
type bodySpill interface {
	io.ReaderAt
	Close() error
}

// firstChunk is what a body starts with: a fill holds memory only as its
// bytes arrive, however large the length it announces.
const firstChunk = 32 << 10

func newGrowingBody(size int64) *growingBody {
	b := &growingBody{size: size, announced: size}
	b.cond.L = &b.mu
	return b
}

// growthFor returns how many bytes of capacity appending m bytes will
// allocate: the buffer doubles, from firstChunk, up to the announced
// length. Only the fill (the one writer) calls it, before append.
func (b *growingBody) growthFor(m int) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	need := len(b.buf) + m
	if need <= cap(b.buf) {
		return 0
	}
	return int64(b.newCap(need) - cap(b.buf))
}

// newCap is the capacity the buffer grows to when it must hold need
// bytes. The caller holds mu.
func (b *growingBody) newCap(need int) int {
	c := max(2*cap(b.buf), firstChunk, need)
	if b.announced >= int64(need) && int64(c) > b.announced-b.base {
		c = int(b.announced - b.base)
	}
	return c
}

// capacity is the bytes the buffer holds, for the in-flight budget.
func (b *growingBody) capacity() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return int64(cap(b.buf))
}

// grow appends p, growing the buffer as growthFor said. The caller
// holds mu.
func (b *growingBody) grow(p []byte) {
	if need := len(b.buf) + len(p); need > cap(b.buf) {
		nb := make([]byte, len(b.buf), b.newCap(need))
		copy(nb, b.buf)
		b.buf = nb
	}
	b.buf = append(b.buf, p...)
	b.received.Add(int64(len(p)))
}

// fillProgress reports the share of the announced body received so far,
// or -1 when no length was announced. An announced empty body (a 204,
// Content-Length: 0) has all arrived: its client has the whole answer
// before the fill has stored it, and leaving then abandons nothing. It
// takes no lock.
func (b *growingBody) fillProgress() float64 {
	switch {
	case b.announced == 0:
		return 1
	case b.announced < 0:
		return -1
	}
	return float64(b.received.Load()) / float64(b.announced)
}

// completeBody returns a growingBody that already holds all of p.
func completeBody(p []byte) *growingBody {
	b := &growingBody{buf: p, done: true, size: int64(len(p)), announced: int64(len(p))}
	b.cond.L = &b.mu
	b.received.Store(int64(len(p)))
	b.finished.Store(true)
	return b
}

// append adds p. A streaming body first drops what every reader has read,
// then waits while the slowest reader lags more than the window; it fails
// when no reader is left or the fill is stopped.
func (b *growingBody) append(p []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.grow(p)
	b.cond.Broadcast()
	if !b.streaming {
		return nil
	}
	for {
		if b.stopped {
			return errFillStopped
		}
		low, any := b.lowestReader()
		if !any {
			return errNoReaders
		}
		b.trim(low)
		if b.base+int64(len(b.buf))-low <= b.window {
			return nil
		}
		b.cond.Wait()
	}
}

// drain waits until every reader has read all the body holds, then drops
// it: a streaming fill that gets no room to grow goes on within its first
// chunk. It fails, as append does, when no reader is left or the fill is
// stopped.
func (b *growingBody) drain() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		if b.stopped {
			return errFillStopped
		}
		low, any := b.lowestReader()
		if !any {
			return errNoReaders
		}
		if end := b.base + int64(len(b.buf)); low >= end {
			b.buf, b.base = nil, end // readers may still write out of the old array
			return nil
		}
		b.cond.Wait()
	}
}

// appendThen appends p and runs fn with the whole buffer before any
// reader can see p.
func (b *growingBody) appendThen(p []byte, fn func(all []byte)) {
	b.mu.Lock()
	b.grow(p)
	fn(b.buf)
	b.mu.Unlock()
	b.cond.Broadcast()
}

// stream switches the body to streaming with the given window.
func (b *growingBody) stream(window int64) {
	b.mu.Lock()
	b.streaming, b.window = true, window
	b.mu.Unlock()
	b.cond.Broadcast() // waitSize returns
}

// streamed reports whether the body switched to streaming.
func (b *growingBody) streamed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.streaming
}

// stop makes a waiting or later append fail: the fill is over.
func (b *growingBody) stop() {
	b.mu.Lock()
	b.stopped = true
	b.mu.Unlock()
	b.cond.Broadcast()
}

// lowestReader returns the smallest offset a reader may still read
// from: 0 while a pending request has not started reading. any is false
// when nobody will read any more. The caller holds b.mu.
func (b *growingBody) lowestReader() (low int64, any bool) {
	active := 0
	for _, off := range b.readers {
		if off >= 0 {
			active++
			if !any || off < low {
				low, any = off, true
			}
		}
	}
	if b.pending.Load() > int64(active) {
		return 0, true
	}
	return low, any
}

// expect adds n requests that will or may read the body. It takes no
// lock, so it may be called under any: more readers only ever hold a fill
// back, so a fill waiting needs no wake-up for them.
func (b *growingBody) expect(n int) { b.pending.Add(int64(n)) }

// release says one request is done with the body, and wakes a fill that
// may have been waiting for it. The caller must not hold the handler's
// lock: the fill takes it while holding mu.
func (b *growingBody) release() {
	b.pending.Add(-1)
	b.mu.Lock() // a fill between its check and its Wait gets the wake-up
	b.closeSpillLocked()
	b.mu.Unlock()
	b.cond.Broadcast()
}

// spillTo makes s, which holds the body's first n bytes (all it has
// received), hold its bytes from now on: the fill writes them there and
// says so with spilledTo. The memory buffer is let go of.
func (b *growingBody) spillTo(s bodySpill, n int64) {
	b.mu.Lock()
	b.spill, b.spilled = s, n
	b.buf, b.base = nil, n // readers may still write out of the old array
	b.mu.Unlock()
}

// spilledTo says the spill holds the body's bytes up to n: readers may
// read them.
func (b *growingBody) spilledTo(n int64) {
	b.mu.Lock()
	b.received.Add(n - b.spilled)
	b.spilled, b.base = n, n
	b.mu.Unlock()
	b.cond.Broadcast()
}

// endSpill says the spill takes no more bytes (the disk failed): the rest
// of the body streams through memory, as a body too large to store does,
// while what the spill holds stays readable.
func (b *growingBody) endSpill(window int64) {
	b.stream(window)
}

// closeSpillLocked closes the spill once the body is done and nobody
// holds it. The caller holds mu.
func (b *growingBody) closeSpillLocked() {
	if b.spill != nil && b.done && !b.spillClosed && b.pending.Load() <= 0 {
		b.spillClosed = true
		b.spill.Close()
	}
}

// trim drops the bytes before off once they are worth a copy: a window's
// worth, or half the buffer. The rest moves to a new array, since readers
// may still be writing out of the old one. The caller holds b.mu.
func (b *growingBody) trim(off int64) {
	drop := off - b.base
	if drop <= 0 || drop < b.window && 2*drop < int64(len(b.buf)) {
		return
	}
	b.buf = append([]byte(nil), b.buf[drop:]...)
	b.base = off
}

// register adds a reader at offset off and returns its id.
func (b *growingBody) register(off int64) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.readers = append(b.readers, off)
	return len(b.readers) - 1
}

// advance records that reader id has read up to off.
func (b *growingBody) advance(id int, off int64) {
	b.mu.Lock()
	b.readers[id] = off
	streaming := b.streaming
	b.mu.Unlock()
	if streaming {
		b.cond.Broadcast() // the fill may be waiting for room
	}
}

// leave unregisters reader id.
func (b *growingBody) leave(id int) {
	b.mu.Lock()
	b.readers[id] = -1
	b.mu.Unlock()
	b.cond.Broadcast()
}

// finish marks the body complete (err nil) or failed.
func (b *growingBody) finish(err error) {
	b.finished.Store(true)
	b.mu.Lock()
	b.done = true
	b.err = err
	if err == nil {
		b.size = b.base + int64(len(b.buf))
	}
	b.closeSpillLocked()
	b.mu.Unlock()
	b.cond.Broadcast()
}

// wait blocks until more than off bytes are available, the body is done
// or ctx ends, and returns the bytes from off on that are available now:
// in memory (p), or, for bytes the spill holds, how many may be read
// from it at off (inSpill). A caller that passes a ctx that can end must
// have it wake the body (see watch).
func (b *growingBody) wait(ctx context.Context, off int64) (p []byte, inSpill int64, done bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.base+int64(len(b.buf)) <= off && !b.done {
		if err := ctx.Err(); err != nil {
			return nil, 0, true, err
		}
		b.cond.Wait()
	}
	if off < b.spilled {
		return nil, b.spilled - off, false, nil
	}
	if off < b.base {
		return nil, 0, true, errBodyTrimmed
	}
	if end := int64(len(b.buf)); b.base+end > off {
		return b.buf[off-b.base : end : end], 0, false, nil
	}
	return nil, 0, true, b.err
}

// readSpill reads up to n bytes at off from the spill into buf (n is
// what wait said the spill holds there).
func (b *growingBody) readSpill(buf []byte, off, n int64) ([]byte, error) {
	buf = buf[:min(int64(len(buf)), n)]
	m, err := b.spill.ReadAt(buf, off)
	if m == len(buf) {
		err = nil
	}
	return buf[:m], err
}

// waitSize blocks until the body's length is known: announced up front or
// found at the end. It returns the error of a failed fill, and
// errStreaming for a body of unknown length that switched to streaming:
// its end will come only as its readers read it.
func (b *growingBody) waitSize(ctx context.Context) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.size < 0 && !b.done && !b.streaming {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		b.cond.Wait()
	}
	switch {
	case b.done && b.err != nil:
		return 0, b.err
	case b.size < 0:
		return 0, errStreaming
	}
	return b.size, nil
}

// state returns the expected size (-1 if unknown) and, when the body is
// complete and whole (not streamed), its bytes.
func (b *growingBody) state() (size int64, whole []byte, complete bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	complete = b.done && b.err == nil && !b.streaming && b.spill == nil
	if complete {
		whole = b.buf
	}
	return b.size, whole, complete
}

// bytes returns the whole body once complete, nil if it was streamed.
func (b *growingBody) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.streaming || b.spill != nil {
		return nil
	}
	return b.buf
}

// watch wakes the body's waiters when ctx ends, so that a reader whose
// client left stops waiting for bytes; call the returned stop when done.
func (b *growingBody) watch(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() {
		b.mu.Lock() // a reader between its check and its Wait gets the wake-up
		b.mu.Unlock()
		b.cond.Broadcast()
	})
}

// writeTo copies the whole body to w as it arrives, as a registered reader,
// until ctx (the client's request) ends. It returns the fill's error if the
// body ended short.
func (b *growingBody) writeTo(ctx context.Context, w io.Writer, flush func()) (int64, error) {
	id := b.register(0)
	defer b.leave(id)
	defer b.watch(ctx)()
	var off int64
	var spillBuf *[]byte
	defer func() {
		if spillBuf != nil {
			readBufs.Put(spillBuf)
		}
	}()
	for {
		p, inSpill, done, err := b.wait(ctx, off)
		if done {
			return off, err
		}
		if inSpill > 0 {
			if spillBuf == nil {
				spillBuf = readBufs.Get().(*[]byte)
			}
			if p, err = b.readSpill(*spillBuf, off, inSpill); err != nil {
				return off, err
			}
		}
		n, werr := w.Write(p)
		off += int64(n)
		b.advance(id, off)
		if werr != nil {
			return off, werr
		}
		if flush != nil {
			flush()
		}
	}
}

// readerAt is an io.ReaderAt over a growing body for one client request:
// reads block until the bytes they want have arrived, or the request ends
// (its ctx must be watched: see growingBody.watch).
type readerAt struct {
	ctx context.Context
	b   *growingBody
}

// ReadAt implements io.ReaderAt.
func (r readerAt) ReadAt(p []byte, off int64) (int, error) {
	b := r.b
	n := 0
	for n < len(p) {
		avail, inSpill, done, err := b.wait(r.ctx, off+int64(n))
		if done {
			if err == nil {
				err = io.EOF
			}
			return n, err
		}
		if inSpill > 0 {
			got, err := b.readSpill(p[n:], off+int64(n), inSpill)
			n += len(got)
			if err != nil {
				return n, err
			}
			continue
		}
		n += copy(p[n:], avail)
	}
	return n, nil
}
