package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DiskOptions configure a disk tier. Dir and MaxBytes are required; the
// zero value of every other field works.
type DiskOptions struct {
	// Dir is the directory of the tier's files, created if missing. One
	// process at a time uses it (a lock file says which).
	Dir string
	// MaxBytes is the tier's budget: the size of its segment files.
	MaxBytes int64
	// SegmentBytes is the size of one segment file, the unit in which the
	// tier writes, syncs and evicts. Default MaxBytes/8, within 1 MiB and
	// 64 MiB: eviction frees at most an eighth of the budget at once.
	SegmentBytes int64
	// QueueBytes bounds the bodies of entries waiting to be written (they
	// are held in memory until then); beyond it, evicted entries are not
	// admitted. Default 32 MiB.
	QueueBytes int64
	// FullBackoff is how long the tier admits nothing after a write failed
	// (a full or failing disk); hits are served as ever. Default 10s.
	FullBackoff time.Duration
	// Logger receives the load report and write failures. Nil means
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// withDefaults fills in the defaults.
func (o DiskOptions) withDefaults() DiskOptions {
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = min(max(o.MaxBytes/8, 1<<20), 64<<20)
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = 32 << 20
	}
	if o.FullBackoff <= 0 {
		o.FullBackoff = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// MinDiskBytes is the smallest disk budget: four segments of 1 MiB.
const MinDiskBytes = 4 << 20

var (
	errNotOnDisk = errors.New("store: the entry's body is not on disk")
	// ErrBodyGone is what OpenBody returns when the disk tier dropped the
	// body after the entry was looked up.
	ErrBodyGone     = errors.New("store: the body on disk was dropped")
	errEmptySegment = errors.New("store: empty segment")
)

// Disk is the disk tier: entries by key in segment files under a byte
// budget, their index in memory (see the package doc). It is safe for
// concurrent use; Close stops its writer.
type Disk struct {
	opt DiskOptions
	log *slog.Logger
	now func() time.Time
	// lock is the directory's lock file, held while the tier is open.
	lock *os.File

	// wmu is the writer's lock: the active segment's file and write
	// offset, and the creation and removal of segment files. Appending a
	// record (file I/O) happens under it, and nothing else does.
	wmu    sync.Mutex
	active *segment // under wmu; nil until the first write
	nextID uint64   // under wmu
	wbuf   []byte   // under wmu
	faults func(n int) error

	// mu guards the index, the segment list and the counts below. No I/O
	// happens under it. The order is wmu → mu → the tag index's lock.
	mu         sync.Mutex
	index      map[string]*diskObj
	tags       *tagIndex
	segs       []*segment // oldest first
	bytes      int64      // the segment files' sizes
	indexBytes int64      // the index's entries' charges (IndexBytes)
	spooling   int64      // the budget held by spools being written (see Spool)
	fullUntil  time.Time
	closed     bool

	// The queue of work for the writer goroutine, in order.
	qmu     sync.Mutex
	ops     []diskOp
	queued  int64          // bytes of the queued entries' bodies
	pending map[string]int // keys with a queued or ongoing write
	// waiting is the entry last queued for each key, until it is
	// written (and indexed) or removed: lookups find it there, so an
	// entry evicted from memory is not a miss while it waits.
	waiting map[string]*Entry
	wake    chan struct{}
	stop    chan struct{}
	stopped chan struct{}

	closeOnce sync.Once

	hits, writes, writeErrors, dropped, reinserted, evictedSegments atomic.Int64
	loadTime                                                        time.Duration
	loaded, cut                                                     int
}

// diskOp is one piece of the writer's work: an entry to write, or the
// removal of a key (e nil). done, when set, is closed once it is done.
type diskOp struct {
	e     *Entry
	key   string
	done  chan struct{}
	spool *Spool // a spool to commit as e (see commitSpool)
}

// diskObj is an entry of the index: where its record is.
type diskObj struct {
	e      *Entry // its data, with the body's place (e.extra.disk)
	seg    *segment
	off    int64 // the record's offset in seg
	recLen int64 // the record's length
	// hit says the entry was asked for since it was written: it is
	// written again at the head when its segment is evicted. Under mu.
	hit bool
	// charge is what the index holds in memory for it (see IndexBytes):
	// the entry's Charge, whose overhead for the memory store's slots
	// covers the diskObj, its diskRef and the index's slots here
	// (TestDiskIndexBytesMatchHeap compares the sum with the live heap
	// of a loaded index).
	charge int64
}

// segment is one segment file.
type segment struct {
	id   uint64
	path string
	f    *os.File
	// refs counts the tier's hold on the file (1 while it is in the
	// tier) and each open BodyReader; the file is closed when it drops
	// to 0.
	refs atomic.Int64
	// size is the bytes written to it; objs its records, for eviction.
	// Under Disk.mu (the writer updates them there too).
	size int64
	objs []*diskObj
}

// acquire takes a hold on the file, unless it is closed already.
func (s *segment) acquire() bool {
	for {
		n := s.refs.Load()
		if n <= 0 {
			return false
		}
		if s.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release gives a hold back, closing the file with the last one.
func (s *segment) release() {
	if s.refs.Add(-1) == 0 {
		s.f.Close()
	}
}

// diskRef is where the body of an entry of the disk tier is.
type diskRef struct {
	seg       *segment
	off, size int64 // the body's offset in the segment and length
}

func (r *diskRef) open() (*BodyReader, error) {
	if !r.seg.acquire() {
		return nil, ErrBodyGone
	}
	return &BodyReader{SectionReader: io.NewSectionReader(r.seg.f, r.off, r.size), seg: r.seg}, nil
}

// BodyReader reads the body of an entry on disk (io.Reader, io.ReaderAt,
// io.Seeker) straight from its file, never holding it whole. Close it
// when done; it is not safe for concurrent use, but several readers of
// one body are.
type BodyReader struct {
	*io.SectionReader
	seg *segment
}

// WriteTo writes the rest of the body to w (io.WriterTo, so io.Copy
// uses it). To a socket (a *net.TCPConn, or any syscall.Conn the kernel
// can sendfile to) the body goes straight from the page cache with
// sendfile(2), never through user space, within w's write deadline;
// to anything else it is copied in chunks.
//
// A w that is a DeadlineRenewer has its deadline renewed before each
// chunk (sendfileChunk) goes out.
func (b *BodyReader) WriteTo(w io.Writer) (int64, error) {
	pos, _ := b.Seek(0, io.SeekCurrent)
	sc, ok := w.(syscall.Conn)
	if !ok || b.seg == nil || pos >= b.Size() {
		return io.Copy(w, b.SectionReader)
	}
	renewer, _ := w.(DeadlineRenewer)
	_, base, _ := b.Outer()
	var sent int64
	for pos < b.Size() {
		if renewer != nil {
			renewer.RenewWriteDeadline()
		}
		n, err, handled := sendFile(sc, b.seg.f, base+pos, min(b.Size()-pos, sendfileChunk))
		if !handled {
			break // not a socket sendfile serves: copied below
		}
		pos += n
		sent += n
		b.Seek(pos, io.SeekStart)
		if err != nil {
			return sent, err
		}
	}
	if pos >= b.Size() {
		return sent, nil
	}
	n, err := io.Copy(w, b.SectionReader)
	return sent + n, err
}

// sendfileChunk is the most WriteTo sends in one go between renewals of
// a DeadlineRenewer's deadline.
const sendfileChunk = 1 << 20

// A DeadlineRenewer is a destination with a send timeout that counts
// from the last progress (listen's server.send_timeout): WriteTo renews
// its write deadline before each chunk it sends.
type DeadlineRenewer interface {
	RenewWriteDeadline()
}

// Close releases the file. It is safe to call more than once.
func (b *BodyReader) Close() error {
	if b.seg != nil {
		b.seg.release()
		b.seg = nil
	}
	return nil
}

// The record format. A record is a 32-byte header, the meta (see
// codec.go; for a removal, only the key), then the body:
//
//	0  magic "MRD" and the format version (1)
//	4  kind: 1 entry, 2 removal, 3 seal
//	5  3 bytes zero
//	8  meta length, uint32
//	12 body CRC-32C, uint32
//	16 body length, uint64
//	24 header CRC-32C over bytes 0-23 and the meta, uint32
//	28 4 bytes zero
//
// A seal is a header alone, at the end of a segment whose records were
// synced to the device before it was written.
const (
	recHeader    = 32
	kindEntry    = 1
	kindRemoval  = 2
	kindSeal     = 3
	recordMagic  = "MRD\x01"
	segmentGlob  = "seg-*.mlog"
	lockFileName = "LOCK"
)

// segmentName is the file name of segment id.
func segmentName(id uint64) string { return fmt.Sprintf("seg-%016x.mlog", id) }

// OpenDisk opens the disk tier in opt.Dir, loading the index of what is
// there: records that do not check out (a torn write, a corrupt file)
// are dropped, never served. It fails when the directory cannot be used
// or another process holds it.
func OpenDisk(opt DiskOptions) (*Disk, error) {
	return openDisk(opt, nil)
}

// openDisk is OpenDisk with a fault injected before every write of n
// bytes (tests).
func openDisk(opt DiskOptions, faults func(n int) error) (*Disk, error) {
	opt = opt.withDefaults()
	if opt.Dir == "" {
		return nil, errors.New("store: disk tier: no directory")
	}
	if opt.MaxBytes < MinDiskBytes {
		return nil, fmt.Errorf("store: disk tier: budget %d below the minimum %d", opt.MaxBytes, MinDiskBytes)
	}
	if err := os.MkdirAll(opt.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: disk tier: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(opt.Dir, lockFileName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: disk tier: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("store: disk tier: %s is in use by another process: %w", opt.Dir, err)
	}
	d := &Disk{
		opt: opt, log: opt.Logger, now: opt.Now, lock: lock, faults: faults,
		index:   map[string]*diskObj{},
		tags:    &tagIndex{keys: map[string]map[string]struct{}{}},
		pending: map[string]int{},
		waiting: map[string]*Entry{},
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	start := time.Now()
	if err := d.load(); err != nil {
		d.closeFiles()
		return nil, err
	}
	d.loadTime = time.Since(start)
	d.log.Info("disk tier loaded", "dir", opt.Dir, "objects", d.loaded, "bytes", d.bytes,
		"segments", len(d.segs), "cut", d.cut, "duration", d.loadTime)
	go d.writer()
	return d, nil
}

// load reads every segment, oldest first, into the index.
func (d *Disk) load() error {
	names, err := filepath.Glob(filepath.Join(d.opt.Dir, segmentGlob))
	if err != nil {
		return fmt.Errorf("store: disk tier: %w", err)
	}
	type found struct {
		id   uint64
		path string
	}
	var segs []found
	for _, name := range names {
		base := filepath.Base(name)
		id, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(base, "seg-"), ".mlog"), 16, 64)
		if err != nil || segmentName(id) != base {
			continue // not one of ours
		}
		segs = append(segs, found{id, name})
	}
	// Spools that were being written when the process stopped are
	// incomplete: never loaded, removed.
	if spools, _ := filepath.Glob(filepath.Join(d.opt.Dir, spoolPattern)); len(spools) > 0 {
		for _, name := range spools {
			os.Remove(name)
		}
		d.log.Info("disk tier: unfinished spools removed", "files", len(spools))
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].id < segs[j].id })
	for _, fs := range segs {
		f, err := os.OpenFile(fs.path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("store: disk tier: %w", err)
		}
		seg := &segment{id: fs.id, path: fs.path, f: f}
		seg.refs.Store(1)
		if err := d.loadSegment(seg); err == errEmptySegment {
			seg.release()
			os.Remove(fs.path) // created just before a stop
			d.nextID = fs.id + 1
			continue
		} else if err != nil {
			seg.release()
			return err
		}
		d.segs = append(d.segs, seg)
		d.bytes += seg.size
		d.nextID = fs.id + 1
	}
	for d.bytes > d.opt.MaxBytes && len(d.segs) > 0 { // the budget shrank
		victim := d.segs[0]
		d.dropSegment(victim)
		os.Remove(victim.path)
	}
	d.loaded = len(d.index)
	return nil
}

// loadSegment reads one segment's records into the index. A sealed
// segment's records are checked by their header checksum and length; an
// unsealed one (the segment being written when the process stopped) has
// its bodies checked too, is cut after its last good record and sealed.
func (d *Disk) loadSegment(seg *segment) error {
	fi, err := seg.f.Stat()
	if err != nil {
		return fmt.Errorf("store: disk tier: %w", err)
	}
	size := fi.Size()
	end, sealed := size, false
	if size >= recHeader {
		var h [recHeader]byte
		if _, err := seg.f.ReadAt(h[:], size-recHeader); err == nil {
			if kind, ml, _, bl, ok := parseHeader(h[:]); ok && kind == kindSeal && ml == 0 && bl == 0 && headerCRC(h[:], nil) == headerSum(h[:]) {
				end, sealed = size-recHeader, true
			}
		}
	}
	sr := &segmentReader{f: seg.f, end: end}
	off := int64(0)
	bad := ""
	for off < end {
		rec, why := sr.record(off, !sealed)
		if why != "" {
			bad = why
			break
		}
		switch rec.kind {
		case kindEntry:
			e, err := decodeMeta(rec.meta)
			if err != nil {
				d.log.Warn("disk tier: record dropped", "segment", seg.path, "offset", off, "err", err)
				break
			}
			obj := &diskObj{seg: seg, off: off, recLen: rec.len}
			obj.e = withDiskRef(e, &diskRef{seg: seg, off: off + recHeader + int64(len(rec.meta)), size: rec.bodyLen})
			d.publish(obj)
		case kindRemoval:
			if key := string(rec.meta); d.index[key] != nil {
				d.unindex(d.index[key])
			}
		}
		off += rec.len
	}
	seg.size = off
	if off == 0 && !sealed {
		return errEmptySegment
	}
	if sealed && bad == "" {
		seg.size = size
		return nil
	}
	if bad != "" {
		d.cut++
		d.log.Warn("disk tier: segment cut after its last good record", "segment", seg.path, "offset", off, "size", size, "why", bad)
	}
	// Cut what did not check out, and seal: the next start trusts it.
	if err := seg.f.Truncate(off); err != nil {
		return fmt.Errorf("store: disk tier: %w", err)
	}
	if err := seg.f.Sync(); err != nil {
		return fmt.Errorf("store: disk tier: %w", err)
	}
	var h [recHeader]byte
	putHeader(h[:], kindSeal, nil, 0, 0)
	if _, err := seg.f.WriteAt(h[:], off); err != nil {
		return fmt.Errorf("store: disk tier: %w", err)
	}
	seg.size = off + recHeader
	return nil
}

// withDiskRef is e, whose body is at ref.
func withDiskRef(e *Entry, ref *diskRef) *Entry {
	var x extra
	if e.extra != nil {
		x = *e.extra
	}
	x.disk = ref
	e.extra = &x
	return e
}

// record is one record read back.
type record struct {
	kind    byte
	meta    []byte // valid until the next record is read
	bodyLen int64
	len     int64 // the whole record's
}

// segmentReader reads a segment's records in order through a window of
// the file, so that small records cost no system call each.
type segmentReader struct {
	f      *os.File
	end    int64  // where the records end
	win    []byte // the file's bytes from winOff
	winOff int64
	buf    []byte // the window's storage
}

const loadWindow = 256 << 10

// bytes returns the file's bytes [off, off+n), which must be within end;
// the slice is valid until the next call.
func (r *segmentReader) bytes(off, n int64) ([]byte, error) {
	if off >= r.winOff && off+n <= r.winOff+int64(len(r.win)) {
		return r.win[off-r.winOff : off-r.winOff+n], nil
	}
	if n > loadWindow {
		p := make([]byte, n)
		_, err := r.f.ReadAt(p, off)
		return p, err
	}
	if r.buf == nil {
		r.buf = make([]byte, loadWindow)
	}
	m, err := r.f.ReadAt(r.buf[:min(loadWindow, r.end-off)], off)
	r.win, r.winOff = r.buf[:m], off
	if int64(m) < n {
		return nil, err
	}
	return r.win[:n], nil
}

// record reads the record at off, checking its header and, with
// checkBody, its body. why says what is wrong with it.
func (r *segmentReader) record(off int64, checkBody bool) (rec record, why string) {
	if r.end-off < recHeader {
		return rec, "short header"
	}
	h, err := r.bytes(off, recHeader)
	if err != nil {
		return rec, fmt.Sprintf("header unreadable: %v", err)
	}
	var hdr [recHeader]byte
	copy(hdr[:], h)
	kind, ml, bodyCRC, bl, ok := parseHeader(hdr[:])
	switch {
	case !ok:
		return rec, "no record header"
	case kind != kindEntry && kind != kindRemoval && kind != kindPad:
		return rec, fmt.Sprintf("record kind %d", kind)
	case ml == 0 || ml > maxMetaBytes || bl < 0 || bl > r.end:
		return rec, "record lengths out of range"
	}
	rec.kind, rec.bodyLen, rec.len = kind, bl, recHeader+int64(ml)+bl
	if rec.len > r.end-off {
		return rec, "record runs past the end of the segment"
	}
	meta, err := r.bytes(off+recHeader, int64(ml))
	if err != nil {
		return rec, fmt.Sprintf("meta unreadable: %v", err)
	}
	if headerCRC(hdr[:], meta) != headerSum(hdr[:]) {
		return rec, "header checksum mismatch"
	}
	rec.meta = meta
	if checkBody {
		c := newCRC()
		if _, err := io.Copy(c, io.NewSectionReader(r.f, off+recHeader+int64(ml), bl)); err != nil {
			return rec, fmt.Sprintf("body unreadable: %v", err)
		}
		if c.Sum32() != bodyCRC {
			return rec, "body checksum mismatch"
		}
	}
	return rec, ""
}

// publish puts obj in the index, replacing the key's record. The caller
// holds mu, or owns d (load).
func (d *Disk) publish(obj *diskObj) {
	key := obj.e.Key()
	if old := d.index[key]; old != nil {
		d.unindex(old)
	}
	d.index[key] = obj
	obj.charge = obj.e.Charge()
	d.indexBytes += obj.charge
	obj.seg.objs = append(obj.seg.objs, obj)
	if tags := obj.e.Tags(); len(tags) > 0 {
		d.tags.add(key, tags)
	}
}

// unindex takes obj out of the index. The caller holds mu.
func (d *Disk) unindex(obj *diskObj) {
	key := obj.e.Key()
	if d.index[key] != obj {
		return
	}
	delete(d.index, key)
	d.indexBytes -= obj.charge
	if tags := obj.e.Tags(); len(tags) > 0 {
		d.tags.remove(key, tags)
	}
}

// dropSegment takes seg and its records out of the tier; its file is
// closed once its last reader is done. The caller holds mu (or owns d)
// and removes the file.
func (d *Disk) dropSegment(seg *segment) {
	for _, obj := range seg.objs {
		d.unindex(obj)
	}
	d.removeSegment(seg)
}

// removeSegment takes seg out of the segment list and lets go of the
// tier's hold on its file. The caller holds mu (or owns d).
func (d *Disk) removeSegment(seg *segment) {
	seg.objs = nil
	for i, s := range d.segs {
		if s == seg {
			d.segs = append(d.segs[:i:i], d.segs[i+1:]...)
			break
		}
	}
	d.bytes -= seg.size
	seg.release()
}

// Get returns the entry at key, nil if none: its data in memory, its body
// to be read with OpenBody; or, while the entry waits to be written, the
// entry as it was admitted, body in memory. It counts the use.
func (d *Disk) Get(key string) *Entry {
	if e := d.queuedEntry(key); e != nil {
		d.hits.Add(1)
		return e
	}
	d.mu.Lock()
	obj := d.index[key]
	if obj != nil {
		obj.hit = true
	}
	d.mu.Unlock()
	if obj == nil {
		return nil
	}
	d.hits.Add(1)
	return obj.e
}

// Peek returns the entry at key, nil if none, without counting a use.
func (d *Disk) Peek(key string) *Entry {
	if e := d.queuedEntry(key); e != nil {
		return e
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if obj := d.index[key]; obj != nil {
		return obj.e
	}
	return nil
}

// queuedEntry is the entry at key that waits to be written, nil if
// none. Lookups ask it before the index: the writer indexes an entry
// before it stops waiting, so one of the two has it.
func (d *Disk) queuedEntry(key string) *Entry {
	d.qmu.Lock()
	defer d.qmu.Unlock()
	return d.waiting[key]
}

// Keys returns the keys of the entries on disk, in no order: a snapshot
// for walks over the whole tier (the ban sweeper).
func (d *Disk) Keys() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	keys := make([]string, 0, len(d.index))
	for k := range d.index {
		keys = append(keys, k)
	}
	return keys
}

// KeysByTag returns the keys of the entries on disk that carry the
// surrogate key tag.
func (d *Disk) KeysByTag(tag string) []string { return d.tags.lookup(tag) }

// Admit queues a sealed entry (or vary index) evicted from memory, or too
// large for it, to be written, and reports whether it was queued: not
// when the queue is full, the disk failed recently, or the tier is
// closed. The entry must not change any more (stored entries do not).
func (d *Disk) Admit(e *Entry) bool {
	if e == nil || e.OnDisk() || !e.Sealed() && !e.IsVaryIndex() || e.BodySize()+recHeader > d.opt.SegmentBytes*2 {
		d.dropped.Add(1)
		return false
	}
	if d.isFull() {
		d.dropped.Add(1)
		return false
	}
	n := int64(len(e.body))
	d.qmu.Lock()
	if d.queued+n > d.opt.QueueBytes || d.isClosed() {
		d.qmu.Unlock()
		d.dropped.Add(1)
		return false
	}
	d.queued += n
	d.pending[e.Key()]++
	d.waiting[e.Key()] = e
	d.ops = append(d.ops, diskOp{e: e})
	d.qmu.Unlock()
	d.signal()
	return true
}

// Supersede drops the entry at key, whose newer version the memory tier
// now holds, so that the older one is not served once that is gone; the
// removal is written in the background.
func (d *Disk) Supersede(key string) {
	d.qmu.Lock()
	queued := d.pending[key] > 0
	delete(d.waiting, key)
	d.qmu.Unlock()
	d.mu.Lock()
	obj := d.index[key]
	if obj != nil {
		d.unindex(obj)
	}
	d.mu.Unlock()
	if obj != nil || queued {
		d.enqueueRemoval(key, nil)
	}
}

// Remove removes the entry at key and reports whether there was one. The
// removal is on disk when it returns (a purged object does not come back
// at the next start), after every write queued before it.
func (d *Disk) Remove(key string) bool {
	// The queue first: the writer indexes an entry before the key stops
	// being pending, so a write is either seen here or in the index.
	d.qmu.Lock()
	queued := d.pending[key] > 0
	waited := d.waiting[key] != nil
	delete(d.waiting, key)
	d.qmu.Unlock()
	d.mu.Lock()
	obj := d.index[key]
	if obj != nil {
		d.unindex(obj)
	}
	d.mu.Unlock()
	if obj == nil && !queued {
		return false
	}
	done := make(chan struct{})
	if d.enqueueRemoval(key, done) {
		select {
		case <-done:
		case <-d.stopped:
		}
	}
	return obj != nil || waited
}

func (d *Disk) enqueueRemoval(key string, done chan struct{}) bool {
	d.qmu.Lock()
	if d.isClosed() {
		d.qmu.Unlock()
		return false
	}
	d.ops = append(d.ops, diskOp{key: key, done: done})
	d.qmu.Unlock()
	d.signal()
	return true
}

// drain waits until the work queued before it is done.
func (d *Disk) drain() {
	done := make(chan struct{})
	d.qmu.Lock()
	d.ops = append(d.ops, diskOp{done: done})
	d.qmu.Unlock()
	d.signal()
	select {
	case <-done:
	case <-d.stopped:
	}
}

func (d *Disk) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *Disk) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// isFull reports whether a write failed within the last FullBackoff.
func (d *Disk) isFull() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.now().Before(d.fullUntil)
}

// writer writes the queued work in order until Close, then what is left.
func (d *Disk) writer() {
	defer close(d.stopped)
	for {
		d.qmu.Lock()
		ops := d.ops
		d.ops = nil
		d.qmu.Unlock()
		for _, op := range ops {
			d.do(op)
		}
		if len(ops) > 0 {
			continue
		}
		select {
		case <-d.wake:
		case <-d.stop:
			d.qmu.Lock()
			ops := d.ops
			d.ops = nil
			d.qmu.Unlock()
			for _, op := range ops {
				d.do(op)
			}
			return
		}
	}
}

// do carries out one piece of queued work.
func (d *Disk) do(op diskOp) {
	if op.spool != nil {
		d.commitSpool(op)
		return
	}
	if op.e == nil && op.key == "" { // a marker (see drain)
		close(op.done)
		return
	}
	if op.e == nil {
		d.wmu.Lock()
		d.mu.Lock()
		if obj := d.index[op.key]; obj != nil { // a write of it came between
			d.unindex(obj)
		}
		d.mu.Unlock()
		if _, err := d.appendRecord(kindRemoval, []byte(op.key), nil); err != nil {
			d.failed(err)
		}
		d.wmu.Unlock()
		if op.done != nil {
			close(op.done)
		}
		return
	}
	key := op.e.Key()
	d.qmu.Lock()
	d.queued -= int64(len(op.e.body))
	current := d.waiting[key] == op.e
	d.qmu.Unlock()
	switch {
	case !current:
		// Removed, superseded or queued again since: not written.
	case d.isFull():
		d.dropped.Add(1)
	default:
		d.write(op.e)
	}
	// The key stops being pending only now: a removal that came during
	// the write is queued (see Remove) and undoes it.
	d.qmu.Lock()
	if d.waiting[key] == op.e {
		delete(d.waiting, key)
	}
	if d.pending[key]--; d.pending[key] <= 0 {
		delete(d.pending, key)
	}
	d.qmu.Unlock()
}

// write appends e to the active segment and indexes it.
func (d *Disk) write(e *Entry) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	meta := appendMeta(nil, e)
	obj, err := d.appendRecord(kindEntry, meta, e.body)
	if err != nil {
		d.failed(err)
		return
	}
	obj.e = withDiskRef(e.Clone(), &diskRef{seg: obj.seg, off: obj.off + recHeader + int64(len(meta)), size: int64(len(e.body))})
	obj.e.body = nil
	d.mu.Lock()
	d.publish(obj)
	d.mu.Unlock()
	d.writes.Add(1)
}

// failed notes a failed write: the tier admits nothing for a while.
func (d *Disk) failed(err error) {
	d.writeErrors.Add(1)
	d.mu.Lock()
	wasFull := d.now().Before(d.fullUntil)
	d.fullUntil = d.now().Add(d.opt.FullBackoff)
	d.mu.Unlock()
	if !wasFull {
		d.log.Warn("disk tier: write failed; admitting nothing for a while, serving what is stored",
			"dir", d.opt.Dir, "backoff", d.opt.FullBackoff, "err", err)
	}
}

// appendRecord appends a record to the active segment, starting a new one
// when it is full, and returns where it went (not indexed yet). The body
// goes first and the header last, so that a record cut short by a crash
// has no valid header. The caller holds wmu.
func (d *Disk) appendRecord(kind byte, meta, body []byte) (*diskObj, error) {
	recLen := recHeader + int64(len(meta)) + int64(len(body))
	if d.active == nil || d.active.size > 0 && d.active.size+recLen+recHeader > d.opt.SegmentBytes {
		if err := d.rotate(); err != nil {
			return nil, err
		}
	}
	seg := d.active
	off := seg.size
	d.wbuf = append(d.wbuf[:0], make([]byte, recHeader)...)
	putHeader(d.wbuf, kind, meta, crcOf(body), int64(len(body)))
	hdr := d.wbuf[:recHeader:recHeader]
	d.wbuf = append(d.wbuf, meta...)
	var err error
	if len(body) <= 256<<10 {
		d.wbuf = append(d.wbuf, body...)
		err = d.writeAt(seg.f, d.wbuf[recHeader:], off+recHeader)
	} else if err = d.writeAt(seg.f, d.wbuf[recHeader:], off+recHeader); err == nil {
		err = d.writeAt(seg.f, body, off+recHeader+int64(len(meta)))
	}
	if err == nil {
		err = d.writeAt(seg.f, hdr, off)
	}
	if err != nil {
		seg.f.Truncate(off) // best effort: a record without its header is ignored anyway
		return nil, fmt.Errorf("segment %s: %w", seg.path, err)
	}
	d.mu.Lock()
	seg.size += recLen
	d.bytes += recLen
	d.mu.Unlock()
	return &diskObj{seg: seg, off: off, recLen: recLen}, nil
}

func (d *Disk) writeAt(f *os.File, p []byte, off int64) error {
	if d.faults != nil {
		if err := d.faults(len(p)); err != nil {
			return err
		}
	}
	_, err := f.WriteAt(p, off)
	return err
}

// rotate seals the active segment and starts a new one, evicting the
// oldest segments first to keep the budget: their entries asked for since
// they were written go to the new segment, the others are dropped. The
// caller holds wmu.
func (d *Disk) rotate() error { return d.rotateFor(nil, nil) }

// rotateFor is rotate, installing the complete spool s (its entry e) as
// a segment of its own between the sealed active segment and the new
// one, evicting for its file too. The caller holds wmu.
func (d *Disk) rotateFor(s *Spool, e *Entry) error {
	need := d.opt.SegmentBytes
	if s != nil {
		need += s.seg.size - s.reserved // d.spooling counts its reservation
	}
	if d.active != nil {
		d.seal(d.active)
		d.active = nil
	}
	// The entries to move stay indexed (and readable) at their old place
	// until they are moved, so that a removal meanwhile is not undone.
	var reinsert []*diskObj
	var victims []*segment
	d.mu.Lock()
	for d.bytes+d.spooling+need > d.opt.MaxBytes && len(d.segs) > 0 {
		victim := d.segs[0]
		for _, obj := range victim.objs {
			if d.index[obj.e.Key()] != obj {
				continue
			}
			if obj.hit {
				reinsert = append(reinsert, obj)
			} else {
				d.unindex(obj)
			}
		}
		victim.refs.Add(1) // held until the records to move are read
		d.removeSegment(victim)
		victims = append(victims, victim)
		d.evictedSegments.Add(1)
	}
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		for _, obj := range reinsert {
			d.unindex(obj) // those not moved (a moved one has a new record)
		}
		d.mu.Unlock()
		for _, v := range victims {
			os.Remove(v.path)
			v.release()
		}
	}()
	if s != nil {
		if d.faults != nil {
			if err := d.faults(0); err != nil {
				return err
			}
		}
		if err := d.installSpool(s, e, d.nextID); err != nil {
			return err
		}
		d.nextID++
	}
	id := d.nextID
	path := filepath.Join(d.opt.Dir, segmentName(id))
	if d.faults != nil {
		if err := d.faults(0); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	d.nextID++
	seg := &segment{id: id, path: path, f: f}
	seg.refs.Store(1)
	d.mu.Lock()
	d.segs = append(d.segs, seg)
	d.mu.Unlock()
	d.active = seg
	// Entries asked for since they were written get a second chance, up
	// to half the new segment, so that new writes still find room.
	room := d.opt.SegmentBytes / 2
	for _, obj := range reinsert {
		if obj.recLen > room {
			continue
		}
		if err := d.moveRecord(obj, seg); err != nil {
			return err
		}
		room -= obj.recLen
	}
	return nil
}

// moveRecord copies obj's record, whose segment is being evicted, to
// seg, and indexes it there unless the key changed meanwhile. The caller
// holds wmu.
func (d *Disk) moveRecord(obj *diskObj, seg *segment) error {
	buf := make([]byte, obj.recLen)
	if _, err := obj.seg.f.ReadAt(buf, obj.off); err != nil {
		d.log.Warn("disk tier: record not moved", "segment", obj.seg.path, "offset", obj.off, "err", err)
		return nil // the record goes with its segment
	}
	off := seg.size
	if err := d.writeAt(seg.f, buf[recHeader:], off+recHeader); err != nil {
		seg.f.Truncate(off)
		return err
	}
	if err := d.writeAt(seg.f, buf[:recHeader], off); err != nil {
		seg.f.Truncate(off)
		return err
	}
	ref := obj.e.extra.disk
	moved := &diskObj{seg: seg, off: off, recLen: obj.recLen}
	moved.e = withDiskRef(obj.e.Clone(), &diskRef{seg: seg, off: off + (ref.off - obj.off), size: ref.size})
	d.mu.Lock()
	seg.size += obj.recLen
	d.bytes += obj.recLen
	if d.index[obj.e.Key()] == obj { // not removed or replaced meanwhile
		d.publish(moved)
	}
	d.mu.Unlock()
	d.reinserted.Add(1)
	return nil
}

// seal syncs a segment and writes its seal. The caller holds wmu.
func (d *Disk) seal(seg *segment) {
	if err := seg.f.Sync(); err != nil {
		d.failed(err)
		return
	}
	var h [recHeader]byte
	putHeader(h[:], kindSeal, nil, 0, 0)
	if err := d.writeAt(seg.f, h[:], seg.size); err != nil {
		d.failed(err)
		return
	}
	d.mu.Lock()
	seg.size += recHeader
	d.bytes += recHeader
	d.mu.Unlock()
}

// Flush writes entries now, in the caller's goroutine, until deadline
// (the memory tier's content at a graceful shutdown, for a warm restart),
// and returns how many it wrote.
func (d *Disk) Flush(entries []*Entry, deadline time.Time) int {
	d.drain() // what was evicted before is older: it must not be written after
	n := 0
	for _, e := range entries {
		if d.now().After(deadline) || d.isFull() || d.isClosed() {
			break
		}
		if e.OnDisk() || !e.Sealed() && !e.IsVaryIndex() {
			continue
		}
		before := d.writes.Load()
		d.write(e)
		if d.writes.Load() > before {
			n++
		}
	}
	return n
}

// DiskStats are a disk tier's counts.
type DiskStats struct {
	Objects         int           // entries on disk (vary indexes included)
	Bytes           int64         // the segment files' sizes
	IndexBytes      int64         // what the index holds in memory: keys, fields and places, about 400 B an entry
	MaxBytes        int64         // the budget
	Spooling        int64         // the budget held by bodies being written to the tier as they arrive (Spool)
	Segments        int           // segment files
	Hits            int64         // lookups that found an entry, since open
	Writes          int64         // entries written, since open
	WriteErrors     int64         // failed writes, since open
	Dropped         int64         // entries not admitted (queue full, disk failing), since open
	Reinserted      int64         // entries written again at eviction for being asked for
	EvictedSegments int64         // segments evicted to keep the budget
	Full            bool          // a write failed within the backoff: nothing is admitted
	LoadTime        time.Duration // how long opening took to load the index
	Loaded          int           // entries the index held once loaded
	Cut             int           // segments cut at load after their last good record (a torn write, corruption)
}

// Stats returns the tier's counts.
func (d *Disk) Stats() DiskStats {
	d.mu.Lock()
	st := DiskStats{Objects: len(d.index), Bytes: d.bytes, IndexBytes: d.indexBytes, MaxBytes: d.opt.MaxBytes, Segments: len(d.segs),
		Spooling: d.spooling, Full: d.now().Before(d.fullUntil)}
	d.mu.Unlock()
	st.Hits, st.Writes, st.WriteErrors = d.hits.Load(), d.writes.Load(), d.writeErrors.Load()
	st.Dropped, st.Reinserted, st.EvictedSegments = d.dropped.Load(), d.reinserted.Load(), d.evictedSegments.Load()
	st.LoadTime, st.Loaded, st.Cut = d.loadTime, d.loaded, d.cut
	return st
}

// Close writes what is queued, seals the active segment and closes the
// tier; the files of bodies still being read close when their readers
// do. It is safe to call more than once.
func (d *Disk) Close() error {
	d.closeOnce.Do(func() {
		close(d.stop)
		<-d.stopped
		d.wmu.Lock()
		if d.active != nil {
			d.seal(d.active)
			d.active = nil
		}
		d.mu.Lock()
		d.closed = true
		d.mu.Unlock()
		d.wmu.Unlock()
		d.closeFiles()
	})
	return nil
}

// closeFiles lets go of every segment and the lock.
func (d *Disk) closeFiles() {
	d.mu.Lock()
	segs := d.segs
	d.segs, d.index = nil, map[string]*diskObj{}
	d.mu.Unlock()
	for _, s := range segs {
		s.release()
	}
	if d.lock != nil {
		syscall.Flock(int(d.lock.Fd()), syscall.LOCK_UN)
		d.lock.Close()
		d.lock = nil
	}
}

// parseHeader reads a record header. ok is false when it is not one.
func parseHeader(h []byte) (kind byte, metaLen uint32, bodyCRC uint32, bodyLen int64, ok bool) {
	if len(h) < recHeader || string(h[:4]) != recordMagic || h[5] != 0 || h[6] != 0 || h[7] != 0 ||
		binary.LittleEndian.Uint32(h[28:]) != 0 {
		return 0, 0, 0, 0, false
	}
	bl := binary.LittleEndian.Uint64(h[16:])
	if bl > math.MaxInt64 {
		return 0, 0, 0, 0, false
	}
	return h[4], binary.LittleEndian.Uint32(h[8:]), binary.LittleEndian.Uint32(h[12:]), int64(bl), true
}

// putHeader writes a record header for meta and a body of bodyLen bytes
// with checksum bodyCRC into h[:recHeader].
func putHeader(h []byte, kind byte, meta []byte, bodyCRC uint32, bodyLen int64) {
	clear(h[:recHeader])
	copy(h, recordMagic)
	h[4] = kind
	binary.LittleEndian.PutUint32(h[8:], uint32(len(meta)))
	binary.LittleEndian.PutUint32(h[12:], bodyCRC)
	binary.LittleEndian.PutUint64(h[16:], uint64(bodyLen))
	binary.LittleEndian.PutUint32(h[24:], headerCRC(h, meta))
}

// headerCRC is the checksum a header stores: over its first 24 bytes and
// the meta.
func headerCRC(h, meta []byte) uint32 {
	c := crc32.Update(0, castagnoli, h[:24])
	return crc32.Update(c, castagnoli, meta)
}

// headerSum is the checksum a header holds.
func headerSum(h []byte) uint32 { return binary.LittleEndian.Uint32(h[24:]) }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crcOf(p []byte) uint32 { return crc32.Checksum(p, castagnoli) }

func newCRC() hash.Hash32 { return crc32.New(castagnoli) }
