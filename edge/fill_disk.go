package edge

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/meridiancdn/meridian/edge/fill"
	"github.com/meridiancdn/meridian/edge/store"
)

// Fills to disk. A storable response too large for memory (its announced
// length above cache.max_object_bytes, or a body of unknown length that
// outgrows it) is written to the disk tier as it arrives, when there is
// one, as nginx's proxy_cache writes it to a temporary file and renames
// that into the cache (store.Spool): the in-flight budget holds only the
// fill's first chunk, never the object.
//
// Its readers (the requests that started or joined the fill) read the
// body from the spool's file as it grows, not from the stream: so a
// request may join the fill at any time, however much of the body has
// gone by (the flight stays registered until the entry is stored), the
// fill runs at the origin's pace rather than the slowest client's, and
// memory holds no window of the body. The file is read through the page
// cache, where the bytes just written are.
//
// The entry is committed (the file completed, synced, renamed into the
// tier and indexed) before the readers can see the body's last bytes, so
// a client that got the whole body and asks again gets a disk hit. Any
// failure leaves no entry: an origin that cuts the body or sends another
// length than it announced fails the fill (its readers see a short body,
// as for any fill), a fill that every client left is called off, and a
// purge during the fill drops it. A disk that fails mid-body (full)
// does not cut the readers: what the file holds stays readable, and the
// rest streams through memory as a body too large to store does
// (growingBody.endSpill); the tier then admits nothing for a while
// (store.DiskOptions.FullBackoff), so later fills of large objects
// stream through uncached, as without a disk tier.

// spoolFor starts a spool for a storable body of announced length size
// (-1 if unknown) too large for memory, or returns nil: no disk tier, a
// peer's copy that this edge does not keep (the owner's is on its disk),
// a slice (its own entry, within memory), or no room on disk now.
func (h *Handler) spoolFor(out *http.Request, fromOwner bool, info fill.Info, size int64) *store.Spool {
	if h.disk == nil || fromOwner && !info.Replica || sliceOf(out.Context()) != nil {
		return nil
	}
	sp, err := h.disk.StartSpool(size)
	if err != nil {
		h.metrics.spoolRefused.Inc()
		return nil
	}
	return sp
}

// commitSpooled stores e, the entry whose body sp holds, in the disk
// tier as putFilled stores an entry in memory: not when a purge that
// matches it came since the fill started (purgeGen), sealed under its
// key (a vary index goes to memory), in place of any older copy in
// either tier. On failure sp is aborted.
func (h *Handler) commitSpooled(sp *store.Spool, primary string, reqHeader http.Header, e *store.Entry, purgeGen uint64) error {
	if e = h.afterPurges(primary, e, purgeGen); e == nil {
		sp.Abort()
		return errPurgedDuringFill
	}
	if !h.sealFor(h.store, primary, reqHeader, e) {
		sp.Abort()
		return errNotStorable
	}
	h.store.Remove(e.Key()) // an older copy in memory must not hide the new one
	if err := sp.Commit(e); err != nil {
		return err
	}
	h.metrics.spooled.Inc()
	return nil
}

var (
	errPurgedDuringFill = errors.New("edge: purged while it was filled")
	errNotStorable      = errors.New("edge: not storable")
)

// spillBuffered moves a body of unknown length that outgrew memory to
// sp: what it holds so far is written there, and from then on its bytes
// are (spoolInto).
func spillBuffered(b *growingBody, sp *store.Spool, n int64) error {
	have := b.bytes()
	if int64(len(have)) != n {
		return errors.New("edge: body no longer whole") // never: not streamed yet
	}
	if _, err := sp.Write(have); err != nil {
		return err
	}
	b.spillTo(sp, n)
	return nil
}

// spoolInto copies the rest of src into b through sp, whose file holds
// b's first n bytes, and reports the body's whole length. size is the
// announced length (-1 if unknown): once it is reached, or at the end of
// a body of unknown length, commit runs before the readers can see the
// last bytes. Should the disk fail, what sp holds stays readable, and
// the rest goes on through memory as readInto streams it (onStream
// first, with tooBig false).
func spoolInto(ctx context.Context, b *growingBody, src io.Reader, sp *store.Spool, n int64, mem *fillMemory, maxObj, size int64, commit func(), onStream func(tooBig bool)) (int64, error) {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := *bp
	for {
		m, err := src.Read(buf)
		if m > 0 {
			w, werr := sp.Write(buf[:m])
			if werr != nil {
				// The disk failed (or the body outgrew what a spool
				// takes: hit-for-miss, as a body too large to store
				// in memory is): the rest streams through memory.
				sp.Abort()
				b.spilledTo(n + int64(w))
				n += int64(w)
				onStream(errors.Is(werr, store.ErrSpoolTooLarge))
				b.endSpill(streamWindow)
				rest := io.Reader(src)
				if left := buf[w:m]; len(left) > 0 || err != nil {
					pre := io.Reader(bytes.NewReader(bytes.Clone(left)))
					if err != nil && err != io.EOF {
						pre = io.MultiReader(pre, errReader{err})
					}
					rest = io.MultiReader(pre, src)
					if err == io.EOF {
						rest = pre
					}
				}
				more, rerr := readInto(ctx, b, rest, mem, maxObj, -1, nil, nil, nil, nil)
				return n + more, rerr
			}
			n += int64(m)
			if n == size {
				commit() // before the readers see the last bytes
			}
			b.spilledTo(n)
		}
		if err == io.EOF {
			if size < 0 {
				commit()
			}
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if err := ctx.Err(); err != nil {
			return n, context.Cause(ctx)
		}
	}
}

// errReader is a reader that fails with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
