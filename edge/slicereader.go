package edge

// The slicing layer's plumbing (see slice.go): a slice subrequest runs
// serveCacheable in the background and hands its answer over through a
// pipe; the slicer reads the answer's body from its slices in order, one
// slice fetched ahead, each checked against the first.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/meridiancdn/meridian/edge/byterange"
)

// subreq is one slice subrequest: serveCacheable running in the
// background for the slice, its answer's header handed over once, its
// body through a pipe.
type subreq struct {
	index int64
	w     *subWriter
	pr    *io.PipeReader
	// ready is closed once status and header are set, or err when the
	// subrequest ended without an answer.
	ready  chan struct{}
	status int
	header http.Header
	err    error
	cancel context.CancelFunc
}

// detach lets the subrequest run to its end with nobody reading: the
// rest of its body is dropped as it comes, so that its fill completes
// and is stored.
func (s *subreq) detach() {
	s.w.detached.Store(true)
	s.pr.CloseWithError(errSliceDetached)
}

// abort ends the subrequest: its fill is called off unless others want
// it.
func (s *subreq) abort() {
	s.cancel()
	s.pr.CloseWithError(errSliceCanceled)
}

// ownStatus is the subrequest's own Cache-Status entry (the last one).
func (s *subreq) ownStatus() string {
	v := s.header.Get("Cache-Status")
	if i := strings.LastIndex(v, ", "); i >= 0 {
		v = v[i+2:]
	}
	return v
}

// subWriter is a subrequest's ResponseWriter.
type subWriter struct {
	hdr         http.Header
	sub         *subreq
	pw          *io.PipeWriter
	wroteHeader bool // only the subrequest's goroutine touches it
	detached    atomic.Bool
}

func (w *subWriter) Header() http.Header { return w.hdr }

// WriteHeader hands the final header over; interim answers (a fill's
// 103 hints) are not relayed.
func (w *subWriter) WriteHeader(code int) {
	if w.wroteHeader || code < 200 {
		return
	}
	w.wroteHeader = true
	w.sub.status, w.sub.header = code, w.hdr.Clone()
	close(w.sub.ready)
}

func (w *subWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.detached.Load() {
		return len(p), nil
	}
	n, err := w.pw.Write(p)
	if errors.Is(err, errSliceDetached) {
		return len(p), nil
	}
	return n, err
}

// Flush does nothing: the pipe hands every write over as it is made.
func (w *subWriter) Flush() {}

// indexOf is the index of the slice that holds byte off.
func (s *slicer) indexOf(off int64) int64 { return off / s.size }

// open starts the subrequest for slice i, attached to the client.
func (s *slicer) open(i int64, refresh, head bool) *subreq {
	sub := s.start(i, refresh, head, false)
	s.mu.Lock()
	if s.gone {
		s.mu.Unlock()
		sub.abort()
		return sub
	}
	s.attached = append(s.attached, sub)
	s.mu.Unlock()
	return sub
}

// start starts the subrequest for slice i: serveCacheable for a copy of
// the client's request without its Range and conditionals, asking for
// the identity coding, in the
// background (the handler's Close waits for it), with the slice in its
// context. detached starts it with nobody reading.
func (s *slicer) start(i int64, refresh, head, detached bool) *subreq {
	first := i * s.size
	last := int64(math.MaxInt64)
	if first <= math.MaxInt64-(s.size-1) {
		last = first + s.size - 1
	}
	sr := &sliceReq{object: s.object, first: first, last: last, refresh: refresh, alone: refresh && s.alone[i], admit: s.admit,
		clientCC: s.st.cfg.HonorClientCacheControl}
	// The subrequest keeps the client's context values (a peer's mark,
	// the server's) but not its end: a slice the client read part of is
	// read to its end (detach); one it no longer wants is aborted.
	ctx, cancel := context.WithCancel(context.WithValue(context.WithoutCancel(s.r.Context()), sliceKey{}, sr))
	req := s.r.Clone(ctx)
	req.Method = http.MethodGet
	if head {
		req.Method = http.MethodHead
	}
	req.Body, req.ContentLength = http.NoBody, 0
	req.ProtoMajor, req.ProtoMinor = protoSlice, 0
	for _, f := range conditionalFields {
		delete(req.Header, f)
	}
	// Slices are ranges of one representation, shared by every client:
	// the identity one (a range of a body compressed for one client
	// would not fit another's slices).
	req.Header["Accept-Encoding"] = []string{"identity"}
	pr, pw := io.Pipe()
	sub := &subreq{index: i, pr: pr, ready: make(chan struct{}), cancel: cancel}
	sub.w = &subWriter{hdr: http.Header{}, sub: sub, pw: pw}
	if detached {
		sub.detach()
	}
	h, st := s.h, s.st
	run := func() {
		stop := context.AfterFunc(h.ctx, cancel) // Close ends it
		defer func() {
			err := error(nil)
			if p := recover(); p != nil {
				err = errSliceBroken
				if p != http.ErrAbortHandler {
					h.log.Error("slice subrequest panicked", "panic", p, "stack", string(debug.Stack()))
				}
			}
			if !sub.w.wroteHeader {
				sub.err = errSliceNoAnswer
				if err != nil {
					sub.err = err
				}
				close(sub.ready)
			}
			pw.CloseWithError(err) // nil: the reader sees EOF
			stop()
			cancel()
		}()
		h.serveCacheable(sub.w, req, st)
	}
	if !h.background(run) {
		cancel()
		sub.err = errClosed
		close(sub.ready)
		pw.CloseWithError(errClosed)
	}
	return sub
}

// clientGone aborts every subrequest the client waits on.
func (s *slicer) clientGone() {
	s.mu.Lock()
	s.gone = true
	subs := s.attached
	s.attached = nil
	s.mu.Unlock()
	for _, sub := range subs {
		sub.abort()
	}
}

func (s *slicer) isGone() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gone
}

// release lets go of a subrequest: detached (read to its end, so that
// its slice is stored) when keep, else aborted.
func (s *slicer) release(sub *subreq, keep bool) {
	if sub == nil {
		return
	}
	s.mu.Lock()
	for i, a := range s.attached {
		if a == sub {
			s.attached = append(s.attached[:i], s.attached[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	if keep && keepable(sub) {
		sub.detach()
	} else {
		sub.abort()
	}
}

// keepable reports whether a subrequest is worth reading to its end: a
// slice (a 206, bounded by slice_bytes) or an answer being stored; not an
// unstored pass-through of a whole object.
func keepable(sub *subreq) bool {
	select {
	case <-sub.ready:
	default:
		return true // no answer yet: it is a slice being filled
	}
	return sub.err == nil && (sub.status == http.StatusPartialContent || strings.Contains(sub.ownStatus(), "; stored"))
}

// end lets go of every subrequest still attached once the answer is
// over: those of an answer completed are read to their end when worth it
// (see keepable), those of one cut short (the client left, a slice
// failed) are aborted.
func (s *slicer) end(completed bool) {
	s.mu.Lock()
	subs := s.attached
	s.attached = nil
	s.mu.Unlock()
	for _, sub := range subs {
		if completed && keepable(sub) {
			sub.detach()
			continue
		}
		sub.abort()
	}
}

// nextNeeded is the first slice after i that holds bytes of the body,
// -1 if none.
func (s *slicer) nextNeeded(i int64) int64 {
	for _, rg := range s.ranges {
		if last := s.indexOf(rg.Start + rg.Length - 1); last > i {
			return max(s.indexOf(rg.Start), i+1)
		}
	}
	return -1
}

// prefetch starts the next slice the body needs after i, so that it is
// on its way while slice i is sent: one slice ahead, no more.
func (s *slicer) prefetch(i int64) {
	if s.next != nil {
		return
	}
	if j := s.nextNeeded(i); j >= 0 {
		s.next = s.open(j, s.refresh, false)
	}
}

// sliceEnd is the object offset after slice i's last byte.
func (s *slicer) sliceEnd(i int64) int64 { return min((i+1)*s.size, s.total) }

// seek makes cur the slice holding byte off, positioned at it.
func (s *slicer) seek(off int64) error {
	i := s.indexOf(off)
	if s.cur == nil || s.cur.index != i || off < s.pos {
		if err := s.switchTo(i); err != nil {
			return err
		}
	}
	if skip := off - s.pos; skip > 0 {
		n, err := io.CopyN(io.Discard, s.cur.pr, skip)
		s.pos += n
		if err != nil {
			return s.readErr(err)
		}
	}
	return nil
}

// switchTo leaves the current slice (read to its end in the background)
// and makes slice i current, checked against the first slice.
func (s *slicer) switchTo(i int64) error {
	s.release(s.cur, true)
	s.cur = nil
	var sub *subreq
	if s.next != nil && s.next.index == i {
		sub, s.next = s.next, nil
	} else {
		s.release(s.next, true)
		s.next = nil
		sub = s.open(i, s.refresh, false)
	}
	<-sub.ready
	err := s.check(sub, i)
	if errors.Is(err, errSliceChanged) && !s.retried[i] {
		// Another version than the first slice's: the one stored here
		// (or at the owner) may be the old one. Once more, revalidated.
		s.h.metrics.sliceMismatches.Inc()
		s.retried[i] = true
		// A copy that a cache upstream held (a peer's or shield's hit)
		// is refreshed alone: a fill of the slice still on its way here
		// may be bringing that very copy. One the origin sent is the
		// new version on its way: the refresh may join its fill.
		if strings.Contains(strings.Join(sub.header["Cache-Status"], ","), "; hit") {
			s.alone[i] = true
		}
		s.release(sub, true) // it may be the new version: let it be stored
		sub = s.open(i, true, false)
		<-sub.ready
		err = s.check(sub, i)
		if errors.Is(err, errSliceChanged) {
			// Still another: the object changed after the first slice was
			// taken. Let go of this node's slices of the first slice's
			// version, have the first slice revalidated (at its owner
			// too), and cut the answer: the client holds bytes of the old
			// version already.
			s.release(sub, true)
			s.h.removeSlices(s.object, &s.ver)
			s.start(s.firstIndex, true, false, true)
			return err
		}
	}
	if err != nil {
		s.release(sub, false)
		if errors.Is(err, errSliceBad) {
			s.h.removeSlices(s.object, nil) // not to be served again
		}
		return err
	}
	s.cur, s.pos = sub, i*s.size
	s.prefetch(i)
	return nil
}

// check verifies that a slice's answer is the 206 of slice i of the
// first slice's version of the object.
func (s *slicer) check(sub *subreq, i int64) error {
	if sub.err != nil {
		return fmt.Errorf("slice %d: %w", i, sub.err)
	}
	if sub.status != http.StatusPartialContent {
		return fmt.Errorf("slice %d: status %d: %w", i, sub.status, errSliceBad)
	}
	a, b, total, ok := byterange.ParseContentRange(sub.header.Get("Content-Range"))
	if ok && total != s.total {
		return fmt.Errorf("slice %d: object length %d, not %d: %w", i, total, s.total, errSliceChanged)
	}
	if !ok || a != i*s.size || b != s.sliceEnd(i)-1 {
		return fmt.Errorf("slice %d: Content-Range %q: %w", i, sub.header.Get("Content-Range"), errSliceBad)
	}
	if cl := sub.header.Get("Content-Length"); cl != "" && cl != strconv.FormatInt(b-a+1, 10) {
		return fmt.Errorf("slice %d: Content-Length %s for %d bytes: %w", i, cl, b-a+1, errSliceBad)
	}
	if v := (sliceVersion{sub.header.Get("Etag"), sub.header.Get("Last-Modified")}); v != s.ver {
		return fmt.Errorf("slice %d: ETag %q Last-Modified %q, first slice's %q %q: %w", i,
			v.etag, v.lastModified, s.ver.etag, s.ver.lastModified, errSliceChanged)
	}
	return nil
}

// readErr is the error of a read from the current slice that ended
// before the slice did.
func (s *slicer) readErr(err error) error {
	if err == io.EOF {
		return fmt.Errorf("slice %d: %w", s.cur.index, errSliceShort)
	}
	return fmt.Errorf("slice %d: %w", s.cur.index, err)
}

// ReadAt reads the object's bytes at off from its slices. Reads are
// expected in increasing order (the body's ranges are sorted): a read
// before the current slice fetches that slice again.
func (s *slicer) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		at := off + int64(n)
		if at >= s.total {
			return n, io.EOF
		}
		if err := s.seek(at); err != nil {
			return n, err
		}
		want := min(int64(len(p)-n), s.sliceEnd(s.cur.index)-s.pos)
		m, err := s.cur.pr.Read(p[n : n+int(want)])
		n += m
		s.pos += int64(m)
		if err != nil && s.pos < s.sliceEnd(s.cur.index) {
			return n, s.readErr(err)
		}
	}
	return n, nil
}

// copyRange writes length bytes of the object from start to w.
func (s *slicer) copyRange(w io.Writer, start, length int64) (int64, error) {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := *bp
	var written int64
	for written < length {
		n, err := s.ReadAt(buf[:min(int64(len(buf)), length-written)], start+written)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			written += int64(m)
			if werr != nil {
				return written, werr
			}
		}
		if err != nil {
			return written, err
		}
	}
	return written, nil
}
