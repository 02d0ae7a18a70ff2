package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/policy"
	"github.com/meridiancdn/meridian/internal/poll"
)

// bodyOf is the body of the object at key: n bytes that differ by key
// and position, so that a body served from the wrong place shows.
func bodyOf(key string, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(len(key)), uint64(crcOf([]byte(key)))))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// diskEntry is a sealed entry at key with bodyOf(key, n) as its body.
func diskEntry(t testing.TB, key string, n int, hdr http.Header) *Entry {
	if hdr == nil {
		hdr = http.Header{}
	}
	hdr.Set("Etag", `"`+key+`"`)
	hdr.Set("Cache-Control", "max-age=600")
	e := NewFilling(http.StatusOK, hdr, policy.Policy{Store: true, Lifetime: 10 * time.Minute, StaleIfError: time.Hour}, time.Unix(1_800_000_000, 0))
	e.SetBody(bodyOf(key, n))
	e.Seal(key, e.BaseHeader(), "1.1 test")
	return e
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openTestDisk(t testing.TB, dir string, opt DiskOptions, faults func(int) error) *Disk {
	t.Helper()
	opt.Dir = dir
	if opt.MaxBytes == 0 {
		opt.MaxBytes = 64 << 20
	}
	if opt.Logger == nil {
		opt.Logger = quietLog()
	}
	d, err := openDisk(opt, faults)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// readBody reads the whole body of a disk entry.
func readBody(t testing.TB, e *Entry) []byte {
	t.Helper()
	r, err := e.OpenBody()
	if err != nil {
		t.Fatalf("%s: %v", e.Key(), err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", e.Key(), err)
	}
	return b
}

// sameEntry fails unless got (from disk) is want as it was stored.
func sameEntry(t testing.TB, got, want *Entry) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: not on disk", want.Key())
	}
	gs, gotOwn := got.Blocks()
	ws, wantOwn := want.Blocks()
	if got.Key() != want.Key() || gs != ws || gotOwn != wantOwn || got.Status() != want.Status() ||
		!slices.Equal(got.Tags(), want.Tags()) || !reflect.DeepEqual(got.Policy(), want.Policy()) || got.ResponseTime() != want.ResponseTime() {
		t.Fatalf("%s: data differs after the disk:\n got %+v\nwant %+v", want.Key(), got.data, want.data)
	}
	if !got.OnDisk() || got.BodySize() != want.BodySize() || !bytes.Equal(readBody(t, got), want.Body()) {
		t.Fatalf("%s: body differs after the disk", want.Key())
	}
}

func TestDiskStoresAndSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	d := openTestDisk(t, dir, DiskOptions{}, nil)
	want := map[string]*Entry{}
	for i, n := range []int{0, 1, 4 << 10, 300 << 10, 2 << 20} {
		key := fmt.Sprintf("h/obj/%d", i)
		want[key] = diskEntry(t, key, n, http.Header{"Surrogate-Key": {"all k" + fmt.Sprint(i)}, "Date": {"Thu, 15 Jan 2027 08:00:00 GMT"}})
		if !d.Admit(want[key]) {
			t.Fatalf("%s not admitted", key)
		}
	}
	idx := NewVaryIndex("h/varies", []string{"Accept-Encoding"}, 42)
	d.Admit(idx)
	d.drain()
	check := func(d *Disk) {
		t.Helper()
		for key, e := range want {
			sameEntry(t, d.Get(key), e)
		}
		if fields, gen, ok := d.Get("h/varies").VaryIndex(); !ok || gen != 42 || !slices.Equal(fields, []string{"Accept-Encoding"}) {
			t.Fatalf("vary index: %v %d %v", fields, gen, ok)
		}
		if got := d.KeysByTag("all"); len(got) != len(want) {
			t.Fatalf("tag all: %v", got)
		}
		if st := d.Stats(); st.Objects != len(want)+1 || st.Bytes > st.MaxBytes {
			t.Fatalf("stats %+v", st)
		}
	}
	check(d)
	d.Close()
	d = openTestDisk(t, dir, DiskOptions{}, nil)
	if st := d.Stats(); st.Loaded != len(want)+1 {
		t.Fatalf("loaded %d entries, want %d", st.Loaded, len(want)+1)
	}
	check(d)
}

func TestDiskRemovalSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	d := openTestDisk(t, dir, DiskOptions{}, nil)
	for _, key := range []string{"h/a", "h/b", "h/c"} {
		d.Admit(diskEntry(t, key, 100, nil))
	}
	d.drain()
	if !d.Remove("h/a") || d.Remove("h/a") || d.Get("h/a") != nil {
		t.Fatal("Remove reported wrongly")
	}
	d.Supersede("h/b")
	if d.Get("h/b") != nil {
		t.Fatal("a superseded entry is still served")
	}
	// A removal queued behind a write of the same key wins.
	d.Admit(diskEntry(t, "h/d", 100, nil))
	d.Remove("h/d")
	d.drain()
	if d.Get("h/d") != nil {
		t.Fatal("an entry removed while its write was queued was written")
	}
	d.Close() // not needed for the removals: they were on disk already
	d = openTestDisk(t, dir, DiskOptions{}, nil)
	for _, key := range []string{"h/a", "h/b", "h/d"} {
		if d.Get(key) != nil {
			t.Fatalf("%s came back after a restart", key)
		}
	}
	if d.Get("h/c") == nil {
		t.Fatal("h/c lost")
	}
}

// copyDir copies the tier's files as a crash would leave them: what was
// written, without the seal a Close adds.
func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	names, _ := filepath.Glob(filepath.Join(from, segmentGlob))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, filepath.Base(n)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// A crash at any moment of a write leaves the segment cut anywhere, or a
// byte anywhere wrong: what is loaded after it is what was written, byte
// for byte, or nothing.
func TestDiskTornAndCorruptRecordsAreDropped(t *testing.T) {
	dir := t.TempDir()
	d := openTestDisk(t, dir, DiskOptions{}, nil)
	want := map[string]*Entry{}
	for i := range 6 {
		key := fmt.Sprintf("h/torn/%d", i)
		want[key] = diskEntry(t, key, 1000+i*3000, nil)
		d.Admit(want[key])
	}
	d.drain()
	names, _ := filepath.Glob(filepath.Join(dir, segmentGlob))
	if len(names) != 1 {
		t.Fatalf("segments %v", names)
	}
	whole, _ := os.ReadFile(names[0])
	loadsOnly := func(t *testing.T, seg []byte) int {
		t.Helper()
		crash := t.TempDir()
		if err := os.WriteFile(filepath.Join(crash, filepath.Base(names[0])), seg, 0o644); err != nil {
			t.Fatal(err)
		}
		c := openTestDisk(t, crash, DiskOptions{}, nil)
		defer c.Close()
		n := 0
		for key, e := range want {
			if got := c.Get(key); got != nil {
				sameEntry(t, got, e)
				n++
			}
		}
		if st := c.Stats(); st.Objects != n {
			t.Fatalf("%d objects loaded, %d of them known", st.Objects, n)
		}
		return n
	}
	if n := loadsOnly(t, whole); n != len(want) {
		t.Fatalf("the whole segment loads %d of %d", n, len(want))
	}
	for _, cut := range []int{0, 1, 31, 32, 33, 100, len(whole) / 3, len(whole) / 2, len(whole) - 1} {
		loadsOnly(t, whole[:cut])
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 40 {
		bad := bytes.Clone(whole)
		bad[r.IntN(len(bad))] ^= byte(1 + r.IntN(255))
		loadsOnly(t, bad)
	}
	// A cut segment is sealed once checked: the next start trusts what
	// was kept.
	crash := copyDir(t, dir)
	os.Truncate(filepath.Join(crash, filepath.Base(names[0])), int64(len(whole)-10))
	c := openTestDisk(t, crash, DiskOptions{}, nil)
	kept := c.Stats().Objects
	c.Close()
	c = openTestDisk(t, crash, DiskOptions{}, nil)
	if got := c.Stats().Objects; got != kept || kept != len(want)-1 {
		t.Fatalf("after the cut %d objects, after a restart %d; want %d", kept, got, len(want)-1)
	}
}

func TestDiskEvictsOldestSegmentsKeepingWhatIsAskedFor(t *testing.T) {
	d := openTestDisk(t, t.TempDir(), DiskOptions{MaxBytes: 4 << 20, SegmentBytes: 1 << 20}, nil)
	const n = 40
	for i := range n {
		key := fmt.Sprintf("h/e/%d", i)
		d.Admit(diskEntry(t, key, 200<<10, nil))
		d.drain()
		if i < 3 {
			continue
		}
		if d.Get("h/e/0") == nil { // asked for all along
			t.Fatalf("after %d writes the object asked for is gone", i+1)
		}
	}
	st := d.Stats()
	if st.Bytes > st.MaxBytes || st.EvictedSegments == 0 || st.Reinserted == 0 {
		t.Fatalf("stats %+v", st)
	}
	if d.Get("h/e/1") != nil || d.Get(fmt.Sprintf("h/e/%d", n-1)) == nil {
		t.Fatal("the oldest object not asked for survived, or the newest is gone")
	}
	sameEntry(t, d.Get("h/e/0"), diskEntry(t, "h/e/0", 200<<10, nil))
	// A body being read when its segment goes is read to its end.
	e := d.Get(fmt.Sprintf("h/e/%d", n-4))
	r, err := e.OpenBody()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := range 20 {
		d.Admit(diskEntry(t, fmt.Sprintf("h/later/%d", i), 200<<10, nil))
	}
	d.drain()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, bodyOf(e.Key(), 200<<10)) {
		t.Fatalf("a body open across its eviction: %v", err)
	}
	r.Close()
	if _, err := e.OpenBody(); !errors.Is(err, ErrBodyGone) {
		t.Fatalf("OpenBody of an evicted body: %v", err)
	}
	// It was asked for (Get above): it moved rather than went.
	sameEntry(t, d.Get(e.Key()), diskEntry(t, e.Key(), 200<<10, nil))
}

// A full disk: writes fail, nothing more is admitted, everything stored
// is served; after the backoff writes are tried again.
func TestDiskFullStopsAdmittingAndKeepsServing(t *testing.T) {
	var mu sync.Mutex
	full := false
	faults := func(n int) error {
		mu.Lock()
		defer mu.Unlock()
		if full {
			return syscall.ENOSPC
		}
		return nil
	}
	now := time.Unix(1000, 0)
	var clock sync.Mutex
	d := openTestDisk(t, t.TempDir(), DiskOptions{FullBackoff: time.Minute, Now: func() time.Time {
		clock.Lock()
		defer clock.Unlock()
		return now
	}}, faults)
	for i := range 5 {
		d.Admit(diskEntry(t, fmt.Sprintf("h/f/%d", i), 10<<10, nil))
	}
	d.drain()
	mu.Lock()
	full = true
	mu.Unlock()
	d.Admit(diskEntry(t, "h/f/new", 10<<10, nil)) // fails to write
	d.drain()
	st := d.Stats()
	if !st.Full || st.WriteErrors != 1 || d.Get("h/f/new") != nil {
		t.Fatalf("after a failed write: %+v", st)
	}
	if d.Admit(diskEntry(t, "h/f/more", 10<<10, nil)) {
		t.Fatal("admitted while full")
	}
	for i := range 5 {
		sameEntry(t, d.Get(fmt.Sprintf("h/f/%d", i)), diskEntry(t, fmt.Sprintf("h/f/%d", i), 10<<10, nil))
	}
	mu.Lock()
	full = false
	mu.Unlock()
	clock.Lock()
	now = now.Add(2 * time.Minute)
	clock.Unlock()
	if !d.Admit(diskEntry(t, "h/f/later", 10<<10, nil)) {
		t.Fatal("not admitted after the backoff")
	}
	d.drain()
	sameEntry(t, d.Get("h/f/later"), diskEntry(t, "h/f/later", 10<<10, nil))
}

func TestDiskIsOneProcesss(t *testing.T) {
	dir := t.TempDir()
	openTestDisk(t, dir, DiskOptions{}, nil)
	if _, err := OpenDisk(DiskOptions{Dir: dir, MaxBytes: 64 << 20, Logger: quietLog()}); err == nil {
		t.Fatal("a second open of the same directory succeeded")
	}
	if _, err := OpenDisk(DiskOptions{Dir: t.TempDir(), MaxBytes: 1 << 20}); err == nil {
		t.Fatal("a budget below the minimum was accepted")
	}
}

// The memory store hands what it evicts, and what is too large for it, to
// the next tier.
func TestStoreHandsEvictedToNextTier(t *testing.T) {
	a := storedEntry(t, "h/a", 100, nil)
	s := New(2 * a.Charge())
	var got []string
	s.OnEvict(func(e *Entry) { got = append(got, e.Key()) })
	for _, k := range []string{"h/a", "h/b", "h/c"} {
		s.Put(storedEntry(t, k, 100, nil))
	}
	s.Put(storedEntry(t, "h/huge", 10000, nil))
	if !slices.Equal(got, []string{"h/a", "h/huge"}) {
		t.Fatalf("handed %v", got)
	}
	if keys := storeKeys(s); !slices.Equal(keys, []string{"h/c", "h/b"}) {
		t.Fatalf("stored %v", keys)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	for _, e := range []*Entry{
		diskEntry(f, "h/a", 1, http.Header{"Surrogate-Key": {"x y"}, "Cache-Status": {"up; hit"}}),
		diskEntry(f, "https://h/b?q=1", 0, http.Header{"Date": {"Thu, 15 Jan 2027 08:00:00 GMT"}, "Content-Type": {"text/plain"}}),
		NewVaryIndex("h/v", []string{"Accept-Encoding", "Accept-Language"}, 7),
	} {
		f.Add(appendMeta(nil, e))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeMeta(b)
		if err != nil {
			return
		}
		// What decodes encodes back to the same bytes: nothing is read
		// that the encoding does not say.
		if again := appendMeta(nil, e); !bytes.Equal(again, b) {
			t.Fatalf("decoded and encoded again:\n%q\n%q", b, again)
		}
	})
}

// Whatever a segment file holds, loading it neither fails nor panics, and
// every entry it yields has a body inside the file.
func FuzzDiskLoad(f *testing.F) {
	dir := f.TempDir()
	d := openTestDisk(f, dir, DiskOptions{}, nil)
	d.Admit(diskEntry(f, "h/a", 10, nil))
	d.Admit(diskEntry(f, "h/b", 100, http.Header{"Surrogate-Key": {"t"}}))
	d.drain()
	d.Remove("h/a")
	d.Close()
	names, _ := filepath.Glob(filepath.Join(dir, segmentGlob))
	seed, _ := os.ReadFile(names[0])
	f.Add(seed)
	f.Add(seed[:len(seed)-recHeader])
	f.Fuzz(func(t *testing.T, seg []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segmentName(1)), seg, 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := openDisk(DiskOptions{Dir: dir, MaxBytes: 64 << 20, Logger: quietLog()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		d.mu.Lock()
		objs := make([]*diskObj, 0, len(d.index))
		for _, o := range d.index {
			objs = append(objs, o)
		}
		d.mu.Unlock()
		for _, o := range objs {
			if ref := o.e.extra.disk; ref.off+ref.size > int64(len(seg)) {
				t.Fatalf("%s: body [%d, +%d) outside the file of %d bytes", o.e.Key(), ref.off, ref.size, len(seg))
			}
			readBody(t, o.e)
		}
	})
}

// TestDiskFindsWhatWaitsToBeWritten: an entry handed to the tier is found
// at once, while it waits for the writer (an object evicted from memory
// under load is not a miss for that while); a removal or a newer version
// while it waits keeps it from being written at all.
func TestDiskFindsWhatWaitsToBeWritten(t *testing.T) {
	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	faults := func(int) error { <-gate; return nil }
	d := openTestDisk(t, t.TempDir(), DiskOptions{}, faults)
	defer release()

	a, b, c := diskEntry(t, "h/a", 3000, nil), diskEntry(t, "h/b", 4000, nil), diskEntry(t, "h/c", 5000, nil)
	for _, e := range []*Entry{a, b, c} {
		if !d.Admit(e) {
			t.Fatalf("%s not admitted", e.Key())
		}
	}
	// The writer is held at its first write; all three wait.
	for _, e := range []*Entry{a, b, c} {
		if got := d.Get(e.Key()); got != e || d.Peek(e.Key()) != e {
			t.Fatalf("%s: waiting entry not found (got %v)", e.Key(), got)
		}
	}
	removed := make(chan bool)
	go func() { removed <- d.Remove("h/b") }() // waits for the queue: released below
	poll.Until(t, 10*time.Second, "the removed entry is no longer found", func() bool { return d.Peek("h/b") == nil })
	c2 := diskEntry(t, "h/c", 6000, nil)
	d.Admit(c2)
	if d.Get("h/c") != c2 {
		t.Fatal("the newer queued version is not the one found")
	}
	release()
	if !<-removed {
		t.Fatal("Remove of a waiting entry said there was none")
	}
	d.drain()
	sameEntry(t, d.Get("h/a"), a)
	if e := d.Get("h/b"); e != nil {
		t.Fatalf("removed while waiting, then written: %v", e.Key())
	}
	sameEntry(t, d.Get("h/c"), c2)
	if st := d.Stats(); st.Objects != 2 {
		t.Fatalf("%d objects on disk, want 2 (a and the newer c)", st.Objects)
	}
}

// TestDiskIndexBytesMatchHeap: what the tier says its index holds in
// memory (IndexBytes, which the node adds to the process's memory limit)
// is within 20 % of the live heap an index of small objects takes once
// loaded. Without it, a disk of a million small objects held about
// 400 MiB that no budget counted.
func TestDiskIndexBytesMatchHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 20,000 objects")
	}
	const objects = 20000
	dir := t.TempDir()
	writeDiskObjects(t, dir, objects)
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	d := openTestDisk(t, dir, DiskOptions{MaxBytes: 1 << 40}, nil)
	live := float64(heap()-before) / objects
	st := d.Stats()
	if st.Objects != objects {
		t.Fatalf("%d objects loaded, want %d", st.Objects, objects)
	}
	said := float64(st.IndexBytes) / objects
	t.Logf("per entry: IndexBytes %.0f B, live heap %.0f B", said, live)
	if diff := (said - live) / live; diff < -0.20 || diff > 0.20 {
		t.Errorf("IndexBytes says %.0f B an entry, the live heap is %.0f B: %+.1f %%, want within 20 %%", said, live, 100*diff)
	}
	runtime.KeepAlive(d)
	d.Close()
	if st := d.Stats(); st.IndexBytes < 0 {
		t.Fatalf("IndexBytes %d after close", st.IndexBytes)
	}
}

// writeDiskObjects fills a disk tier at dir with objects 1 KiB objects
// and closes it.
func writeDiskObjects(tb testing.TB, dir string, objects int) {
	tb.Helper()
	d, err := OpenDisk(DiskOptions{Dir: dir, MaxBytes: 1 << 40, Logger: quietLog()})
	if err != nil {
		tb.Fatal(err)
	}
	body := make([]byte, 1024)
	for i := range objects {
		key := "www.example.com/assets/" + strconv.Itoa(i) + ".js"
		e := NewFilling(http.StatusOK, http.Header{
			"Cache-Control": {"public, max-age=3600"}, "Content-Type": {"application/javascript"},
			"Etag": {`"` + strconv.Itoa(i) + `"`}, "Date": {"Thu, 15 Jan 2027 08:00:00 GMT"},
		}, policy.Policy{Store: true, Lifetime: time.Hour}, time.Unix(1_800_000_000, 0))
		e.SetBody(body)
		e.Seal(key, e.BaseHeader(), "1.1 edge-a")
		d.write(e)
	}
	if err := d.Close(); err != nil {
		tb.Fatal(err)
	}
}
