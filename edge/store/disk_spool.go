package store

import (
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"sync"
)

// Writing a body too large for memory as it arrives (nginx's
// proxy_cache writes it to a temporary file and renames that into the
// cache; so does this tier): a [Spool] is a segment file of its own, in
// the tier's directory under a temporary name, that holds one entry.
// Its layout is that of any segment, so that loading it needs nothing
// new:
//
//	0            a padding record (kind 4: its meta is zeros)
//	P            the entry's record header, then its meta
//	spoolPrefix  the body, written as it arrives
//	end          the seal
//
// The body starts at a fixed offset (spoolPrefix), since the entry's
// meta (its key, which a Vary index decides, and its fields) is known
// only when the body is complete; the padding record fills what the meta
// leaves of the prefix. At Commit the record's header, its meta, the
// padding and the seal are written, the file is synced, and the writer
// goroutine renames it to the next segment's name and indexes it, in
// order with the other queued work (so that a removal queued before it
// does not undo it, nor it a removal queued after). The active segment
// is sealed first and the next write starts a new one: a segment's
// records are ordered by its name.
//
// Crash safety: a file under the temporary name is never loaded, and is
// removed at open; a renamed one was complete, synced and sealed before
// the rename. So a kill -9 at any moment leaves either no entry or the
// whole one.
//
// Budget: what spools write counts in the tier's budget as it is
// written (rotation evicts for it), and a commit evicts the oldest
// segments for its file as a rotation does. One spool holds at most
// MaxSpoolBytes; all spools together at most a quarter of the budget,
// so that fills to disk cannot take the room of what is stored.

// spoolPrefix is where a spooled body starts in its file: room for the
// padding record, the entry's record header and a meta of up to about
// 64 KiB (an entry with larger fields is not committed). It is a
// multiple of the page size, so the body is page-aligned for sendfile.
const spoolPrefix = 64 << 10

// writebackBytes is how much a spool writes between two starts of
// writeback (startWriteback): the sync at commit then waits for at most
// about this much.
const writebackBytes = 8 << 20

// kindPad is a padding record: its meta is zeros, it has no body.
const kindPad = 4

// spoolPattern names spools being written (os.CreateTemp's pattern):
// not segmentGlob, so never loaded.
const spoolPattern = "spool-*.tmp"

var (
	// ErrSpoolRefused is what StartSpool returns when the tier takes no
	// spool now: too large, the spools' share of the budget is taken,
	// the disk failed recently, or the tier is closed.
	ErrSpoolRefused = errors.New("store: disk tier: no room to write this body")
	// ErrSpoolTooLarge is what Spool.Write returns for a body of unknown
	// length that outgrew MaxSpoolBytes.
	ErrSpoolTooLarge = errors.New("store: disk tier: body above the per-object limit (MaxSpoolBytes)")
	errSpoolDone     = errors.New("store: spool already committed or aborted")
)

// Spool is the body of one entry being written to the disk tier as it
// arrives, readable while it is written (see the comment above
// spoolPrefix for the layout). Write, Commit and Abort are for one
// goroutine (the fill); ReadAt may be called by any number of readers
// concurrently, for bytes already written; Close, once every reader is
// done, lets go of the file.
type Spool struct {
	d   *Disk
	seg *segment // id 0 until committed; refs: the readers' hold, and the tier's once committed
	crc hash.Hash32
	// written is the body's bytes written; reserved what the budget
	// holds for it (see Disk.spooling). Only the fill's goroutine
	// changes them.
	written, reserved int64
	flushed           int64 // written up to here, writeback was started (see startWriteback)
	limit             int64 // MaxSpoolBytes when started
	done              bool  // committed or aborted
	closeOnce         sync.Once
}

// MaxSpoolBytes is the largest body a spool takes: an eighth of the
// budget, as a segment is at most, so that committing one evicts at most
// an eighth of what the tier holds.
func (d *Disk) MaxSpoolBytes() int64 { return d.opt.MaxBytes / 8 }

// StartSpool starts writing the body of an entry as it arrives. size is
// its announced length, -1 if unknown (Write then fails once it
// outgrows MaxSpoolBytes). It returns ErrSpoolRefused when the tier
// takes no spool now.
func (d *Disk) StartSpool(size int64) (*Spool, error) {
	limit := d.MaxSpoolBytes()
	if size > limit || d.isFull() || d.isClosed() {
		return nil, ErrSpoolRefused
	}
	first := max(size, 0)
	if !d.reserveSpool(first) {
		return nil, ErrSpoolRefused
	}
	f, err := os.CreateTemp(d.opt.Dir, spoolPattern)
	if err != nil {
		d.unreserveSpool(first)
		d.failed(err)
		return nil, fmt.Errorf("store: disk tier: %w", err)
	}
	seg := &segment{path: f.Name(), f: f}
	seg.refs.Store(1)
	return &Spool{d: d, seg: seg, crc: newCRC(), reserved: first, limit: limit}, nil
}

// reserveSpool holds n more bytes of the budget for spools, unless that
// takes them past a quarter of the budget.
func (d *Disk) reserveSpool(n int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.spooling+n > d.opt.MaxBytes/4 {
		return false
	}
	d.spooling += n
	return true
}

func (d *Disk) unreserveSpool(n int64) {
	d.mu.Lock()
	d.spooling -= n
	d.mu.Unlock()
}

// Write appends p to the body. A failed write (a full disk: the tier
// then admits nothing for FullBackoff) leaves the spool to be aborted;
// n says how much of p is in the file all the same, readable at the
// offsets before Written.
func (s *Spool) Write(p []byte) (n int, err error) {
	if s.done {
		return 0, errSpoolDone
	}
	if s.written+int64(len(p)) > s.limit {
		return 0, fmt.Errorf("%w: %d bytes", ErrSpoolTooLarge, s.limit)
	}
	if grow := s.written + int64(len(p)) - s.reserved; grow > 0 {
		grow = max(grow, 1<<20) // a body of unknown length reserves a MiB at a time
		if !s.d.reserveSpool(grow) {
			return 0, ErrSpoolRefused
		}
		s.reserved += grow
	}
	if s.d.faults != nil {
		if err := s.d.faults(len(p)); err != nil {
			s.d.failed(err)
			return 0, err
		}
	}
	n, err = s.seg.f.WriteAt(p, spoolPrefix+s.written)
	s.crc.Write(p[:n])
	s.written += int64(n)
	if err != nil {
		s.d.failed(err)
	}
	if s.written-s.flushed >= writebackBytes {
		startWriteback(s.seg.f, spoolPrefix+s.flushed, s.written-s.flushed)
		s.flushed = s.written
	}
	return n, err
}

// Written is the body's bytes in the file so far.
func (s *Spool) Written() int64 { return s.written }

// ReadAt reads the body's bytes at off, which must be within what was
// written. It fails with ErrBodyGone once the file is let go of.
func (s *Spool) ReadAt(p []byte, off int64) (int, error) {
	if !s.seg.acquire() {
		return 0, ErrBodyGone
	}
	defer s.seg.release()
	return s.seg.f.ReadAt(p, spoolPrefix+off)
}

// Commit stores the sealed entry e (its body, the spool's) in the tier:
// it completes and syncs the file, then has the writer index it after
// the work queued before, and waits for that. On failure the spool is
// aborted; either way its bytes stay readable until Close.
func (s *Spool) Commit(e *Entry) error {
	if s.done {
		return errSpoolDone
	}
	err := s.finishFile(e)
	if err == nil {
		err = s.d.enqueueSpool(s, e)
	}
	if err != nil {
		s.Abort()
		return err
	}
	return nil
}

// finishFile writes the padding record, e's record header and meta,
// and the seal, and syncs the file.
func (s *Spool) finishFile(e *Entry) error {
	if !e.Sealed() {
		return errors.New("store: disk tier: spool committed with an unsealed entry")
	}
	meta := appendMeta(nil, e)
	pad := spoolPrefix - 2*recHeader - len(meta)
	if pad < 1 {
		return fmt.Errorf("store: disk tier: fields of %d bytes do not fit a spool's prefix", len(meta))
	}
	buf := make([]byte, spoolPrefix)
	padMeta := buf[recHeader : recHeader+pad] // zeros
	putHeader(buf, kindPad, padMeta, crcOf(nil), 0)
	putHeader(buf[recHeader+pad:], kindEntry, meta, s.crc.Sum32(), s.written)
	copy(buf[2*recHeader+pad:], meta)
	var seal [recHeader]byte
	putHeader(seal[:], kindSeal, nil, 0, 0)
	f := s.seg.f
	for _, w := range []struct {
		p   []byte
		off int64
	}{{buf, 0}, {seal[:], spoolPrefix + s.written}} {
		if s.d.faults != nil {
			if err := s.d.faults(len(w.p)); err != nil {
				s.d.failed(err)
				return err
			}
		}
		if _, err := f.WriteAt(w.p, w.off); err != nil {
			s.d.failed(err)
			return fmt.Errorf("store: disk tier: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		s.d.failed(err)
		return fmt.Errorf("store: disk tier: %w", err)
	}
	s.seg.size = spoolPrefix + s.written + recHeader
	return nil
}

// enqueueSpool queues the commit of s (its file complete) as e, and
// waits until the writer has done it.
func (d *Disk) enqueueSpool(s *Spool, e *Entry) error {
	done := make(chan struct{})
	op := diskOp{e: e, spool: s, done: done}
	d.qmu.Lock()
	if d.isClosed() {
		d.qmu.Unlock()
		return errors.New("store: disk tier closed")
	}
	d.pending[e.Key()]++
	d.ops = append(d.ops, op)
	d.qmu.Unlock()
	d.signal()
	select {
	case <-done:
	case <-d.stopped:
		return errors.New("store: disk tier closed")
	}
	if !s.done {
		return errors.New("store: disk tier: spool not committed")
	}
	return nil
}

// commitSpool renames a complete spool to the next segment's name and
// indexes its entry, after sealing the active segment and evicting for
// its file (see rotateFor). The writer calls it, in queue order.
func (d *Disk) commitSpool(op diskOp) {
	s, e := op.spool, op.e
	key := e.Key()
	d.wmu.Lock()
	err := d.rotateFor(s, e)
	d.wmu.Unlock()
	d.qmu.Lock()
	if d.pending[key]--; d.pending[key] <= 0 {
		delete(d.pending, key)
	}
	d.qmu.Unlock()
	if err != nil {
		d.failed(err)
	}
	close(op.done)
}

// installSpool renames s's file to segment id's name and indexes its
// entry. The caller holds wmu.
func (d *Disk) installSpool(s *Spool, e *Entry, id uint64) error {
	path := filepath.Join(d.opt.Dir, segmentName(id))
	if err := os.Rename(s.seg.path, path); err != nil {
		return err
	}
	s.seg.id, s.seg.path = id, path
	s.seg.refs.Add(1) // the tier's hold
	metaLen := int64(len(appendMeta(nil, e)))
	obj := &diskObj{seg: s.seg, off: spoolPrefix - recHeader - metaLen, recLen: recHeader + metaLen + s.written}
	obj.e = withDiskRef(e.Clone(), &diskRef{seg: s.seg, off: spoolPrefix, size: s.written})
	obj.e.body = nil
	d.mu.Lock()
	d.spooling -= s.reserved
	s.reserved = 0
	d.segs = append(d.segs, s.seg)
	d.bytes += s.seg.size
	d.publish(obj)
	d.mu.Unlock()
	s.done = true
	d.writes.Add(1)
	return nil
}

// Abort drops the spool: its file is removed (its bytes stay readable
// until Close) and its share of the budget given back. It is safe to
// call after Commit, and more than once.
func (s *Spool) Abort() {
	if s.done {
		return
	}
	s.done = true
	os.Remove(s.seg.path)
	s.d.unreserveSpool(s.reserved)
	s.reserved = 0
}

// Close lets go of the readers' hold on the file, once every reader is
// done: an aborted spool's file is closed then, a committed one's when
// the tier lets go of it too. It aborts a spool neither committed nor
// aborted. It is safe to call more than once.
func (s *Spool) Close() error {
	s.Abort()
	s.closeOnce.Do(s.seg.release)
	return nil
}
