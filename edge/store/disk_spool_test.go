package store

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// spoolEntry writes body into a new spool in chunks, checking that what
// is written reads back while the spool is open.
func spoolEntry(t *testing.T, d *Disk, body []byte) *Spool {
	t.Helper()
	s, err := d.StartSpool(int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(body); off += 100 << 10 {
		p := body[off:min(off+100<<10, len(body))]
		if n, err := s.Write(p); err != nil || n != len(p) {
			t.Fatalf("write at %d: %d, %v", off, n, err)
		}
		got := make([]byte, len(p))
		if _, err := s.ReadAt(got, int64(off)); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("read back at %d: %v", off, err)
		}
	}
	return s
}

// A body written as it arrives and committed is an entry of the tier,
// byte for byte, and survives a restart; one aborted or cut by a crash
// leaves nothing behind.
func TestSpoolCommitsAndSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	d := openTestDisk(t, dir, DiskOptions{MaxBytes: 64 << 20}, nil)
	want := diskEntry(t, "h/big", 3<<20+17, http.Header{"Surrogate-Key": {"big"}})
	s := spoolEntry(t, d, want.Body())
	if err := s.Commit(want); err != nil {
		t.Fatal(err)
	}
	sameEntry(t, d.Get("h/big"), want)
	// The readers' hold outlives the commit; the tier's outlives Close.
	got := make([]byte, 10)
	if _, err := s.ReadAt(got, 3<<20); err != nil || !bytes.Equal(got, want.Body()[3<<20:3<<20+10]) {
		t.Fatalf("read after commit: %v", err)
	}
	s.Close()
	sameEntry(t, d.Get("h/big"), want)
	if keys := d.KeysByTag("big"); len(keys) != 1 {
		t.Fatalf("tag index: %v", keys)
	}

	// An aborted spool and one cut by a crash (its temporary file left).
	ab := spoolEntry(t, d, bodyOf("h/aborted", 1<<20))
	ab.Abort()
	ab.Close()
	cut := spoolEntry(t, d, bodyOf("h/cut", 1<<20))
	if d.Get("h/aborted") != nil || d.Get("h/cut") != nil {
		t.Fatal("an uncommitted spool is indexed")
	}
	st := d.Stats()
	if st.Objects != 1 || st.Bytes < 3<<20 {
		t.Fatalf("stats %+v", st)
	}
	d.Close()
	cut.seg.release() // the crashed process's file, left as it was

	d2 := openTestDisk(t, dir, DiskOptions{MaxBytes: 64 << 20}, nil)
	sameEntry(t, d2.Get("h/big"), want)
	if d2.Get("h/cut") != nil || d2.Get("h/aborted") != nil {
		t.Fatal("an uncommitted spool is served after a restart")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, spoolPattern)); len(left) != 0 {
		t.Fatalf("spool files left after open: %v", left)
	}
	// Purge reaches it, and stays purged across a restart.
	if !d2.Remove("h/big") {
		t.Fatal("remove")
	}
	d2.Close()
	d3 := openTestDisk(t, dir, DiskOptions{MaxBytes: 64 << 20}, nil)
	if d3.Get("h/big") != nil {
		t.Fatal("a removed spooled entry came back")
	}
}

// Writes after a spool's commit go to a later segment: a removal (or a
// newer version) written after it wins at the next open, and one written
// before it does not undo it.
func TestSpoolIsOrderedWithOtherWrites(t *testing.T) {
	dir := t.TempDir()
	d := openTestDisk(t, dir, DiskOptions{MaxBytes: 64 << 20}, nil)
	old := diskEntry(t, "h/k", 4<<10, nil)
	d.Admit(old)
	d.Admit(diskEntry(t, "h/other", 4<<10, nil))
	d.drain()
	d.Supersede("h/k") // the removal, queued before the spool
	big := diskEntry(t, "h/k", 2<<20, nil)
	s := spoolEntry(t, d, big.Body())
	if err := s.Commit(big); err != nil {
		t.Fatal(err)
	}
	s.Close()
	sameEntry(t, d.Get("h/k"), big)
	newer := diskEntry(t, "h/k", 8<<10, http.Header{"X-V": {"2"}})
	d.Supersede("h/k")
	d.Admit(newer)
	d.drain()
	d.Close()
	d2 := openTestDisk(t, dir, DiskOptions{MaxBytes: 64 << 20}, nil)
	sameEntry(t, d2.Get("h/k"), newer)
	sameEntry(t, d2.Get("h/other"), diskEntry(t, "h/other", 4<<10, nil))
}

// Spools count in the budget: committing evicts the oldest segments as
// a rotation does, a body above MaxSpoolBytes is refused, and so is one
// while spools hold a quarter of the budget.
func TestSpoolBudget(t *testing.T) {
	d := openTestDisk(t, t.TempDir(), DiskOptions{MaxBytes: 32 << 20, SegmentBytes: 1 << 20}, nil)
	if _, err := d.StartSpool(d.MaxSpoolBytes() + 1); !errors.Is(err, ErrSpoolRefused) {
		t.Fatalf("a body above MaxSpoolBytes: %v", err)
	}
	a, err := d.StartSpool(4 << 20)
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.StartSpool(4 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.StartSpool(1); !errors.Is(err, ErrSpoolRefused) {
		t.Fatalf("a spool past a quarter of the budget: %v", err)
	}
	a.Close()
	b.Close()
	// Unknown length: refused once it outgrows MaxSpoolBytes.
	u, err := d.StartSpool(-1)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	var werr error
	for range 5 {
		if _, werr = u.Write(chunk); werr != nil {
			break
		}
	}
	if !errors.Is(werr, ErrSpoolTooLarge) {
		t.Fatalf("a body of unknown length past MaxSpoolBytes: %v", werr)
	}
	u.Close()
	for i := range 12 {
		key := "h/s" + string(rune('a'+i))
		e := diskEntry(t, key, 3<<20, nil)
		s := spoolEntry(t, d, e.Body())
		if err := s.Commit(e); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if st := d.Stats(); st.Bytes > st.MaxBytes {
			t.Fatalf("after %d spools: %d bytes on disk, budget %d", i+1, st.Bytes, st.MaxBytes)
		}
	}
	if d.Get("h/sa") != nil || d.Get("h/sl") == nil {
		t.Fatal("the oldest spooled entry was not evicted, or the newest is missing")
	}
}

// A full disk fails the spool's write (what was written stays readable),
// and the tier admits nothing for a while.
func TestSpoolDiskFull(t *testing.T) {
	full := false
	d := openTestDisk(t, t.TempDir(), DiskOptions{MaxBytes: 64 << 20}, func(int) error {
		if full {
			return syscall.ENOSPC
		}
		return nil
	})
	body := bodyOf("h/full", 2<<20)
	s, err := d.StartSpool(int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(body[:1<<20]); err != nil {
		t.Fatal(err)
	}
	full = true
	if _, err := s.Write(body[1<<20:]); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write on a full disk: %v", err)
	}
	got := make([]byte, 1<<20)
	if _, err := s.ReadAt(got, 0); err != nil || !bytes.Equal(got, body[:1<<20]) {
		t.Fatalf("what was written before: %v", err)
	}
	path := s.seg.path
	s.Abort()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the aborted spool's file: %v", err)
	}
	if _, err := s.ReadAt(got, 0); err != nil {
		t.Fatalf("read after abort, before Close: %v", err)
	}
	s.Close()
	if _, err := s.ReadAt(got, 0); !errors.Is(err, ErrBodyGone) {
		t.Fatalf("read after Close: %v", err)
	}
	if !d.Stats().Full {
		t.Fatal("the tier is not marked full")
	}
	if _, err := d.StartSpool(10); !errors.Is(err, ErrSpoolRefused) {
		t.Fatalf("a spool while the disk is full: %v", err)
	}
	if d.Get("h/full") != nil {
		t.Fatal("indexed")
	}
}
