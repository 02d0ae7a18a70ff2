package edge

import (
	"errors"
	"io"
	"sync"
)

// errBodyLimit ends a growing body that passed its hard cap.
var errBodyLimit = errors.New("edge: body exceeds the buffering limit")

// growingBody is a response body being filled from upstream while any number
// of readers read it (Traffic Server's read-while-writer): a reader blocks
// only until the bytes it wants have arrived, never for a polling interval.
type growingBody struct {
	mu   sync.Mutex
	cond sync.Cond
	buf  []byte
	done bool
	err  error // set with done when the fill failed
	size int64 // expected length, -1 if unknown
}

func newGrowingBody(size int64, capHint int64) *growingBody {
	b := &growingBody{size: size}
	b.cond.L = &b.mu
	if capHint > 0 {
		b.buf = make([]byte, 0, capHint)
	}
	return b
}

// completeBody returns a growingBody that already holds all of p.
func completeBody(p []byte) *growingBody {
	b := &growingBody{buf: p, done: true, size: int64(len(p))}
	b.cond.L = &b.mu
	return b
}

func (b *growingBody) append(p []byte) {
	b.mu.Lock()
	b.buf = append(b.buf, p...)
	b.mu.Unlock()
	b.cond.Broadcast()
}

// appendThen appends p and runs fn with the whole buffer before any
// reader can see p.
func (b *growingBody) appendThen(p []byte, fn func(all []byte)) {
	b.mu.Lock()
	b.buf = append(b.buf, p...)
	fn(b.buf)
	b.mu.Unlock()
	b.cond.Broadcast()
}

// finish marks the body complete (err nil) or failed.
func (b *growingBody) finish(err error) {
	b.mu.Lock()
	b.done = true
	b.err = err
	if err == nil {
		b.size = int64(len(b.buf))
	}
	b.mu.Unlock()
	b.cond.Broadcast()
}

// wait blocks until more than off bytes are available or the body is done,
// and returns the bytes from off on that are available now.
func (b *growingBody) wait(off int64) ([]byte, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for int64(len(b.buf)) <= off && !b.done {
		b.cond.Wait()
	}
	if int64(len(b.buf)) > off {
		return b.buf[off:len(b.buf):len(b.buf)], false, nil
	}
	return nil, true, b.err
}

// waitSize blocks until the body's length is known: announced up front or
// found at the end. It returns the error of a failed fill.
func (b *growingBody) waitSize() (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.size < 0 && !b.done {
		b.cond.Wait()
	}
	if b.done && b.err != nil {
		return 0, b.err
	}
	return b.size, nil
}

// state returns the expected size (-1 if unknown) and, when the body is
// complete and whole, its bytes.
func (b *growingBody) state() (size int64, whole []byte, complete bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	complete = b.done && b.err == nil
	if complete {
		whole = b.buf
	}
	return b.size, whole, complete
}

// bytes returns the whole body once complete.
func (b *growingBody) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf
}

// writeTo copies the whole body to w as it arrives. It returns the fill's
// error if the body ended short.
func (b *growingBody) writeTo(w io.Writer, flush func()) (int64, error) {
	var off int64
	for {
		p, done, err := b.wait(off)
		if done {
			return off, err
		}
		n, werr := w.Write(p)
		off += int64(n)
		if werr != nil {
			return off, werr
		}
		if flush != nil {
			flush()
		}
	}
}

// ReadAt implements io.ReaderAt over the growing body, blocking until the
// requested bytes have arrived.
func (b *growingBody) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		avail, done, err := b.wait(off + int64(n))
		if done {
			if err == nil {
				err = io.EOF
			}
			return n, err
		}
		n += copy(p[n:], avail)
	}
	return n, nil
}
