package edge_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
)

// largeBody is the body of the large object at path: n bytes in which
// every 8-byte word says its offset (mixed with the path), so that a byte
// served from the wrong place or object shows.
func largeBody(path string, n int) []byte {
	b := make([]byte, (n+7)&^7)
	seed := uint64(crc32.ChecksumIEEE([]byte(path))) << 32
	for off := 0; off < len(b); off += 8 {
		binary.LittleEndian.PutUint64(b[off:], uint64(off)^seed)
	}
	return b[:n]
}

// largeOrigin serves largeBody(path, size) fresh for ten minutes with an
// ETag and a surrogate key (a matching If-None-Match gets 304), with its
// length announced unless chunked is true.
type largeOrigin struct {
	size    int
	chunked bool
	// hold, when set, is called once half the body is sent; the rest
	// follows when it returns.
	hold func(r *http.Request)
	// cutAt, when above zero, makes the origin drop the connection after
	// that many bytes of the body.
	cutAt int
}

func (o *largeOrigin) serve(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	w.Header().Set("Cache-Control", "max-age=600")
	w.Header().Set("ETag", `"`+name+`"`)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Surrogate-Key", "large t"+name)
	if r.Header.Get("If-None-Match") == `"`+name+`"` {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := largeBody(r.URL.Path, o.size)
	if !o.chunked {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	if o.cutAt > 0 {
		w.WriteHeader(200)
		w.Write(body[:o.cutAt])
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	half := len(body) / 2
	for off := 0; off < len(body); off += 256 << 10 {
		end := min(off+256<<10, len(body))
		if _, err := w.Write(body[off:end]); err != nil {
			return
		}
		if o.hold != nil && off < half && end >= half {
			w.(http.Flusher).Flush()
			o.hold(r)
		}
	}
}

// withLargeDisk: objects up to 8 MiB in memory (max_object_bytes), and a
// disk tier whose spools take objects up to an eighth of its budget.
func withLargeDisk(dir string, maxBytes int64) func(*edge.Config) {
	return func(c *edge.Config) {
		c.Cache.MaxObjectBytes = 8 << 20
		c.Cache.MaxBytes = 32 << 20
		c.Cache.Disk = edge.DiskConfig{Path: dir, MaxBytes: maxBytes}
	}
}

// spoolFiles lists the spools left in a disk tier's directory.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "spool-*"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// openSpools counts this process's open files that are spools in dir
// (removed or not): a spool's file is closed once its readers are done.
func openSpools(t *testing.T, dir string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(target, filepath.Join(dir, "spool-")) {
			n++
		}
	}
	return n
}

// A 24 MiB object, above max_object_bytes, is filled to the disk tier as
// it arrives: the first GET gets it from the origin byte for byte, and
// from then on it is a disk hit (whole, by Range, HEAD, 304) with the
// right Content-Length, Age and Cache-Status, until it is purged. Its
// length announced or not (chunked), the same.
func TestLargeObjectFillsToDisk(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			const size = 24 << 20
			dir := t.TempDir()
			o := &largeOrigin{size: size, chunked: chunked}
			e := newEnv(t, o.serve, withLargeDisk(dir, 256<<20))
			const path = "/large/a"
			want := largeBody(path, size)
			resp, body := e.get(path)
			wantStatus(t, resp, 200)
			wantCS(t, resp, "!hit")
			if !bytes.Equal([]byte(body), want) {
				t.Fatalf("miss: %d bytes, not the object", len(body))
			}
			st, _ := e.edge.DiskStats()
			if st.Objects != 1 || st.Bytes < size {
				t.Fatalf("after the miss, disk %+v", st)
			}
			if n := e.counter("meridian_edge_disk_spooled_fills_total"); n != 1 {
				t.Fatalf("spooled fills %v", n)
			}

			e.clock.Advance(3 * time.Second)
			resp, body = e.get(path)
			wantStatus(t, resp, 200)
			wantCS(t, resp, "hit")
			if resp.ContentLength != size || !bytes.Equal([]byte(body), want) {
				t.Fatalf("hit: Content-Length %d, %d bytes", resp.ContentLength, len(body))
			}
			if age := resp.Header.Get("Age"); age != "3" {
				t.Fatalf("Age %q", age)
			}
			if n := e.origin.count(path); n != 1 {
				t.Fatalf("the origin was asked %d times", n)
			}
			if st2, _ := e.edge.DiskStats(); st2.Hits <= st.Hits {
				t.Fatalf("not a disk hit: %+v", st2)
			}

			resp, body = e.get(path, "Range", "bytes=20000000-20000999")
			wantStatus(t, resp, http.StatusPartialContent)
			if body != string(want[20000000:20001000]) || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 20000000-20000999/%d", size) {
				t.Fatalf("range: %q, %d bytes", resp.Header.Get("Content-Range"), len(body))
			}
			resp, body = e.get(path, "Range", fmt.Sprintf("bytes=%d-", size-5))
			wantStatus(t, resp, http.StatusPartialContent)
			if body != string(want[size-5:]) {
				t.Fatal("suffix range differs")
			}
			resp, body = e.do(http.MethodHead, path, nil, nil)
			if resp.StatusCode != 200 || body != "" || resp.ContentLength != size {
				t.Fatalf("HEAD: %d, %d bytes, Content-Length %d", resp.StatusCode, len(body), resp.ContentLength)
			}
			resp, _ = e.get(path, "If-None-Match", `"a"`)
			wantStatus(t, resp, http.StatusNotModified)
			if n := e.origin.count(path); n != 1 {
				t.Fatalf("the origin was asked %d times", n)
			}

			if n, err := e.edge.Purge(edge.Purge{URLs: []string{"http://site.test" + path}}); err != nil || n != 1 {
				t.Fatalf("purge: %d, %v", n, err)
			}
			resp, body = e.get(path)
			wantCS(t, resp, "!hit")
			if n := e.origin.count(path); n != 2 || body != string(want) {
				t.Fatalf("after the purge: the origin was asked %d times, %d bytes", n, len(body))
			}
			if left := spoolFiles(t, dir); len(left) != 0 {
				t.Fatalf("spool files left: %v", left)
			}
		})
	}
}

// Ten cold clients of a large object cost one origin request and all get
// every byte: those that come while the body arrives read what the disk
// has of it, then the rest as it comes. A Range request after is a hit.
func TestLargeObjectConcurrentColdClients(t *testing.T) {
	const size, clients = 24 << 20, 10
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	o := &largeOrigin{size: size, hold: func(*http.Request) { <-release }}
	e := newEnv(t, o.serve, withLargeDisk(t.TempDir(), 256<<20), func(c *edge.Config) {
		c.Sites[0].Timeout = time.Minute
	})
	t.Cleanup(unblock)
	const path = "/large/c"
	want := largeBody(path, size)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	headers := make(chan struct{}, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", e.base+path, nil)
			req.Host = testHost
			resp, err := e.client.Do(req)
			headers <- struct{}{}
			if err != nil {
				errs <- err
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || !bytes.Equal(b, want) {
				errs <- fmt.Errorf("status %d, %d bytes, err %v", resp.StatusCode, len(b), err)
			}
		}()
	}
	for range clients {
		select {
		case <-headers:
		case <-time.After(time.Minute):
			t.Fatal("not every client got its response header within a minute")
		}
	}
	unblock()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := e.origin.count(path); n != 1 {
		t.Fatalf("the origin was asked %d times, want 1", n)
	}
	resp, body := e.get(path, "Range", "bytes=12582912-12583011")
	wantStatus(t, resp, http.StatusPartialContent)
	wantCS(t, resp, "hit")
	if body != string(want[12582912:12583012]) {
		t.Fatal("range after the fill differs")
	}
	if n := e.origin.count(path); n != 1 {
		t.Fatalf("the origin was asked %d times after the range", n)
	}
}

// An origin that cuts the body short leaves nothing on disk and serves
// no truncated object: the client sees a short body, the next request
// goes to the origin, and that one is stored.
func TestLargeObjectCutMidBodyIsNotStored(t *testing.T) {
	const size = 24 << 20
	dir := t.TempDir()
	o := &largeOrigin{size: size}
	cut := &largeOrigin{size: size, cutAt: 10 << 20}
	e := newEnv(t, cut.serve, withLargeDisk(dir, 256<<20))
	const path = "/large/cut"
	req, _ := http.NewRequest("GET", e.base+path, nil)
	req.Host = testHost
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || len(b) >= size {
		t.Fatalf("a cut body reached the client whole-looking: %d bytes, %v", len(b), err)
	}
	if !bytes.Equal(b, largeBody(path, size)[:len(b)]) {
		t.Fatal("the cut body's bytes differ")
	}
	eventually(t, "the cut fill's spool removed and closed", func() bool {
		return len(spoolFiles(t, dir)) == 0 && openSpools(t, dir) == 0
	})
	if st, _ := e.edge.DiskStats(); st.Objects != 0 {
		t.Fatalf("a cut body was stored: %+v", st)
	}
	e.origin.setHandler(o.serve)
	resp, body := e.get(path)
	wantCS(t, resp, "!hit")
	if body != string(largeBody(path, size)) {
		t.Fatalf("after the cut: %d bytes", len(body))
	}
	if n := e.origin.count(path); n != 2 {
		t.Fatalf("the origin was asked %d times", n)
	}
	resp, _ = e.get(path)
	wantCS(t, resp, "hit")
}

// A fill to disk whose only client leaves is called off: nothing stored,
// its spool removed, and the next request goes to the origin.
func TestLargeObjectClientLeavesNotStored(t *testing.T) {
	const size = 24 << 20
	dir := t.TempDir()
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	o := &largeOrigin{size: size, hold: func(r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}}
	e := newEnv(t, o.serve, withLargeDisk(dir, 256<<20), func(c *edge.Config) {
		c.Cache.FinishAbandoned = 1 // never worth finishing mid-body
	})
	t.Cleanup(unblock)
	const path = "/large/left"
	conn, err := net.Dial("tcp", e.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, testHost)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	eventually(t, "the abandoned fill's spool removed and closed", func() bool {
		return len(spoolFiles(t, dir)) == 0 && openSpools(t, dir) == 0
	})
	eventually(t, "the fill called off", func() bool { return e.counter("meridian_edge_fills_abandoned_total") == 1 })
	unblock()
	if st, _ := e.edge.DiskStats(); st.Objects != 0 {
		t.Fatalf("an abandoned fill was stored: %+v", st)
	}
	e.origin.setHandler((&largeOrigin{size: size}).serve)
	resp2, body := e.get(path)
	wantCS(t, resp2, "!hit")
	if body != string(largeBody(path, size)) || e.origin.count(path) != 2 {
		t.Fatalf("after the abandoned fill: %d bytes, origin asked %d times", len(body), e.origin.count(path))
	}
}

// Without a disk tier a large object streams through uncached, as
// before; so does one above the disk tier's per-object limit, its length
// announced or found as it outgrows the limit on its way to disk (the
// rest then streams through: its client gets every byte).
func TestLargeObjectWithoutDiskStreamsThrough(t *testing.T) {
	const size = 24 << 20
	for _, tc := range []struct {
		name    string
		chunked bool
		cfg     func(*edge.Config)
	}{
		{"no disk tier", false, func(c *edge.Config) { c.Cache.MaxObjectBytes = 8 << 20 }},
		{"above the disk's per-object limit", false, withLargeDisk(t.TempDir(), 128<<20)}, // limit 16 MiB
		{"chunked, outgrows the disk's per-object limit", true, withLargeDisk(t.TempDir(), 128<<20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &largeOrigin{size: size, chunked: tc.chunked}
			e := newEnv(t, o.serve, tc.cfg)
			const path = "/large/s"
			for i := range 2 {
				resp, body := e.get(path)
				wantStatus(t, resp, 200)
				wantCS(t, resp, "!hit")
				if body != string(largeBody(path, size)) {
					t.Fatalf("GET %d: %d bytes", i, len(body))
				}
			}
			if n := e.origin.count(path); n != 2 {
				t.Fatalf("the origin was asked %d times", n)
			}
		})
	}
}

// A disk that fills up mid-body does not cut the clients: what the file
// has is read from it, the rest streams through; nothing is stored; the
// next request streams through (the tier admits nothing for a while),
// and what is on disk is served as before. The disk is a small tmpfs
// (root can mount one; elsewhere the test is skipped).
func TestLargeObjectDiskFullStreamsThrough(t *testing.T) {
	mnt := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=40m"); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (needs CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	const size = 24 << 20
	o := &largeOrigin{size: size}
	// A budget far above the 40 MiB the file system has.
	e := newEnv(t, o.serve, withLargeDisk(mnt, 1<<30))
	want := func(path string) string { return string(largeBody(path, size)) }
	if _, body := e.get("/large/first"); body != want("/large/first") {
		t.Fatal("first object differs")
	}
	resp, body := e.get("/large/second")
	wantStatus(t, resp, 200)
	if body != want("/large/second") {
		t.Fatalf("the object whose fill filled the disk: %d bytes, not the object", len(body))
	}
	st, _ := e.edge.DiskStats()
	if !st.Full || st.Objects != 1 {
		t.Fatalf("disk %+v", st)
	}
	if left := spoolFiles(t, mnt); len(left) != 0 {
		t.Fatalf("spools left: %v", left)
	}
	eventually(t, "the failed spool's file closed", func() bool { return openSpools(t, mnt) == 0 })
	resp, body = e.get("/large/second")
	wantCS(t, resp, "!hit")
	if body != want("/large/second") || e.origin.count("/large/second") != 2 {
		t.Fatalf("with the disk full: %d bytes, the origin asked %d times", len(body), e.origin.count("/large/second"))
	}
	resp, body = e.get("/large/first")
	wantCS(t, resp, "hit")
	if body != want("/large/first") || e.origin.count("/large/first") != 1 {
		t.Fatal("the object on disk is not served as a hit with the disk full")
	}
}

// A large object filled to disk is served after a restart on the same
// directory, as a hit, without the origin; the tier's eviction takes it
// like any other object when the budget needs room.
func TestLargeObjectOnDiskSurvivesRestartAndIsEvicted(t *testing.T) {
	const size = 24 << 20
	dir := t.TempDir()
	o := &largeOrigin{size: size}
	e := newEnv(t, o.serve, withLargeDisk(dir, 200<<20)) // spools up to 25 MiB
	const path = "/large/warm"
	if _, body := e.get(path); body != string(largeBody(path, size)) {
		t.Fatal("miss differs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.srv.Shutdown(ctx)
	e.edge.Close()

	e2 := newEnv(t, o.serve, withLargeDisk(dir, 200<<20))
	resp, body := e2.get(path)
	wantCS(t, resp, "hit")
	if resp.ContentLength != size || body != string(largeBody(path, size)) || e2.origin.count(path) != 0 {
		t.Fatalf("after the restart: %d bytes, origin asked %d times", len(body), e2.origin.count(path))
	}
	// Seven more of the same size: 8 × 24 MiB do not fit 200 MiB, and
	// the oldest goes.
	for i := range 7 {
		p := fmt.Sprintf("/large/more%d", i)
		if _, body := e2.get(p); body != string(largeBody(p, size)) {
			t.Fatalf("%s differs", p)
		}
		if st, _ := e2.edge.DiskStats(); st.Bytes > st.MaxBytes {
			t.Fatalf("disk %d bytes, budget %d", st.Bytes, st.MaxBytes)
		}
	}
	st, _ := e2.edge.DiskStats()
	if st.EvictedSegments == 0 {
		t.Fatalf("nothing evicted: %+v", st)
	}
	resp, body = e2.get(path)
	wantCS(t, resp, "!hit")
	if body != string(largeBody(path, size)) || e2.origin.count(path) != 1 {
		t.Fatal("the evicted large object was not fetched again whole")
	}
}

// A 64 MiB fill to disk holds no more than its first chunk of the
// in-flight budget, and the heap stays far below the object's size: the
// origin makes the body as it sends it and the clients hash it as they
// read it, so that what the heap holds is the edge's. The peak is sampled
// every millisecond (a measurement, not a synchronisation) and reported.
func TestLargeObjectFillHeapStaysSmall(t *testing.T) {
	const size = 64 << 20
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	const path = "/large/heap"
	origin := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Length", strconv.Itoa(size))
		chunk := make([]byte, 256<<10)
		for off := 0; off < size; off += len(chunk) {
			fillWords(chunk, path, off)
			if _, err := w.Write(chunk); err != nil {
				return
			}
			if off+len(chunk) == size/2 {
				w.(http.Flusher).Flush()
				<-release
			}
		}
	}
	e := newEnv(t, origin, withLargeDisk(t.TempDir(), 1<<30), func(c *edge.Config) {
		c.Sites[0].Timeout = time.Minute
	})
	t.Cleanup(unblock)
	want := crc32.NewIEEE()
	chunk := make([]byte, 256<<10)
	for off := 0; off < size; off += len(chunk) {
		fillWords(chunk, path, off)
		want.Write(chunk)
	}

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	const clients = 2
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	got := make(chan struct{}, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", e.base+path, nil)
			req.Host = testHost
			resp, err := e.client.Do(req)
			if err != nil {
				errs <- err
				got <- struct{}{}
				return
			}
			defer resp.Body.Close()
			h := crc32.NewIEEE()
			if _, err := io.CopyN(h, resp.Body, size/4); err != nil {
				errs <- err
			}
			got <- struct{}{}
			if _, err := io.Copy(h, resp.Body); err != nil || h.Sum32() != want.Sum32() {
				errs <- fmt.Errorf("body differs (%v)", err)
			}
		}()
	}
	for range clients {
		<-got
	}
	// Half the body is in, the origin holds the rest: the fill holds
	// its first chunk of the in-flight budget, not the object.
	if held := e.metric("meridian_edge_inflight_bytes"); held > 64<<10 {
		t.Errorf("the fill holds %v bytes of the in-flight budget", held)
	}
	unblock()
	wg.Wait()
	close(stop)
	<-sampled
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := e.origin.count(path); n != 1 {
		t.Fatalf("the origin was asked %d times", n)
	}
	grew := int64(peak.Load()) - int64(base.HeapAlloc)
	t.Logf("64 MiB fill to disk, 2 clients: heap objects %.1f MiB before, peak %.1f MiB (+%.1f MiB)",
		float64(base.HeapAlloc)/(1<<20), float64(peak.Load())/(1<<20), float64(grew)/(1<<20))
	if grew > 16<<20 {
		t.Fatalf("the heap grew by %d bytes during a fill of %d", grew, size)
	}
}

// fillWords fills p with the words of largeBody(path, …) from off.
func fillWords(p []byte, path string, off int) {
	seed := uint64(crc32.ChecksumIEEE([]byte(path))) << 32
	for i := 0; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], uint64(off+i)^seed)
	}
}

// spoolWritten is how many body bytes the spools in dir hold (0 if none).
func spoolWritten(t *testing.T, dir string) int64 {
	var n int64
	for _, name := range spoolFiles(t, dir) {
		if fi, err := os.Stat(name); err == nil {
			n += max(fi.Size()-64<<10, 0) // the body starts after a 64 KiB prefix
		}
	}
	return n
}

// A request that comes while a fill to disk is halfway joins it (one
// origin request) and gets every byte: the first half from the file, the
// rest as it arrives. A purge that comes during the fill keeps it from
// being stored, without cutting its clients.
func TestLargeObjectLateJoinerAndPurgeDuringFill(t *testing.T) {
	for _, purge := range []bool{false, true} {
		t.Run(fmt.Sprintf("purge=%v", purge), func(t *testing.T) {
			const size = 24 << 20
			dir := t.TempDir()
			release := make(chan struct{})
			var once sync.Once
			unblock := func() { once.Do(func() { close(release) }) }
			o := &largeOrigin{size: size, hold: func(*http.Request) { <-release }}
			e := newEnv(t, o.serve, withLargeDisk(dir, 256<<20), func(c *edge.Config) {
				c.Sites[0].Timeout = time.Minute
			})
			t.Cleanup(unblock)
			const path = "/large/late"
			want := largeBody(path, size)
			get := func(out chan<- error) {
				req, _ := http.NewRequest("GET", e.base+path, nil)
				req.Host = testHost
				resp, err := e.client.Do(req)
				if err != nil {
					out <- err
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || !bytes.Equal(b, want) {
					out <- fmt.Errorf("%d bytes, %v", len(b), err)
					return
				}
				out <- nil
			}
			first, late := make(chan error, 1), make(chan error, 1)
			go get(first)
			eventually(t, "half the body on disk", func() bool { return spoolWritten(t, dir) >= size/2 })
			if n := e.metric("meridian_edge_disk_spooling_bytes"); n < size {
				t.Fatalf("meridian_edge_disk_spooling_bytes %v during the fill, want the announced %d held", n, size)
			}
			go get(late)
			eventually(t, "the late request joined the fill", func() bool {
				return e.counter("meridian_edge_collapsed_total") >= 1
			})
			if purge {
				if _, err := e.edge.Purge(edge.Purge{URLs: []string{"http://site.test" + path}}); err != nil {
					t.Fatal(err)
				}
			}
			unblock()
			for _, ch := range []chan error{first, late} {
				if err := <-ch; err != nil {
					t.Fatal(err)
				}
			}
			if n := e.origin.count(path); n != 1 {
				t.Fatalf("the origin was asked %d times", n)
			}
			eventually(t, "the spool's hold on the budget released", func() bool {
				return e.metric("meridian_edge_disk_spooling_bytes") == 0
			})
			resp, body := e.get(path)
			if body != string(want) {
				t.Fatal("the next GET differs")
			}
			if purge {
				wantCS(t, resp, "!hit")
				if n := e.origin.count(path); n != 2 {
					t.Fatalf("purged during its fill, stored anyway: the origin was asked %d times", n)
				}
			} else {
				wantCS(t, resp, "hit")
			}
		})
	}
}

// Variants of a large object (Vary) each go to disk under their own key,
// with the vary index in memory.
func TestLargeObjectVariantsOnDisk(t *testing.T) {
	const size = 10 << 20
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		v := r.Header.Get("X-Variant")
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Vary", "X-Variant")
		w.Write(largeBody(r.URL.Path+v, size))
	}, withLargeDisk(t.TempDir(), 256<<20))
	const path = "/large/vary"
	for round := range 2 {
		for _, v := range []string{"a", "b"} {
			resp, body := e.get(path, "X-Variant", v)
			if body != string(largeBody(path+v, size)) {
				t.Fatalf("round %d, variant %s: %d bytes, not the variant", round, v, len(body))
			}
			if round == 1 {
				wantCS(t, resp, "hit")
			}
		}
	}
	if n := e.origin.count(path); n != 2 {
		t.Fatalf("the origin was asked %d times for 2 variants", n)
	}
	if st, _ := e.edge.DiskStats(); st.Objects != 2 {
		t.Fatalf("disk %+v", st)
	}
}

// Range requests that join a fill to disk are answered from the file as
// it grows: a range already written at once (while the origin still
// holds the rest back), one at the end once it arrives.
func TestLargeObjectRangeDuringFill(t *testing.T) {
	const size = 24 << 20
	dir := t.TempDir()
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	o := &largeOrigin{size: size, hold: func(*http.Request) { <-release }}
	e := newEnv(t, o.serve, withLargeDisk(dir, 256<<20), func(c *edge.Config) {
		c.Sites[0].Timeout = time.Minute
	})
	t.Cleanup(unblock)
	const path = "/large/ranges"
	want := largeBody(path, size)
	whole := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("GET", e.base+path, nil)
		req.Host = testHost
		resp, err := e.client.Do(req)
		if err != nil {
			whole <- err
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(b, want) {
			err = fmt.Errorf("whole GET: %d bytes, %v", len(b), err)
		}
		whole <- err
	}()
	eventually(t, "half the body on disk", func() bool { return spoolWritten(t, dir) >= size/2 })
	resp, body := e.get(path, "Range", "bytes=5000000-5000999")
	wantStatus(t, resp, http.StatusPartialContent)
	if body != string(want[5000000:5001000]) || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 5000000-5000999/%d", size) {
		t.Fatalf("range in the written half: %q, %d bytes", resp.Header.Get("Content-Range"), len(body))
	}
	tail := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("GET", e.base+path, nil)
		req.Host = testHost
		req.Header.Set("Range", "bytes=-100")
		resp, err := e.client.Do(req)
		if err != nil {
			tail <- err
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, want[size-100:]) {
			err = fmt.Errorf("tail range: %d, %d bytes, %v", resp.StatusCode, len(b), err)
		}
		tail <- err
	}()
	eventually(t, "both ranges joined the fill", func() bool {
		return e.counter("meridian_edge_collapsed_total") >= 2
	})
	unblock()
	for _, ch := range []chan error{whole, tail} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if n := e.origin.count(path); n != 1 {
		t.Fatalf("the origin was asked %d times", n)
	}
}

// A stale large object on disk is revalidated, not fetched again: the
// fill sends its validators, and on 304 the copy on disk is written anew
// under the refreshed fields (from the disk, not the origin) while the
// clients read it. Before, a copy above max_object_bytes was asked for
// whole every time it went stale.
func TestLargeObjectOnDiskRevalidated(t *testing.T) {
	const size = 12 << 20
	dir := t.TempDir()
	o := &largeOrigin{size: size}
	e := newEnv(t, o.serve, withLargeDisk(dir, 256<<20))
	const path = "/large/r"
	want := largeBody(path, size)
	if resp, body := e.get(path); resp.StatusCode != 200 || body != string(want) {
		t.Fatalf("miss: %d, %d bytes", resp.StatusCode, len(body))
	}

	e.clock.Advance(601 * time.Second) // max-age=600: stale
	resp, body := e.get(path)
	wantStatus(t, resp, 200)
	wantCS(t, resp, "fwd=stale", "fwd-status=304", "stored")
	if resp.ContentLength != size || body != string(want) {
		t.Fatalf("revalidated: Content-Length %d, %d bytes, not the object", resp.ContentLength, len(body))
	}
	if inm := e.origin.lastRequest().Header.Get("If-None-Match"); inm != `"r"` {
		t.Fatalf("the fill sent If-None-Match %q, want the stored ETag", inm)
	}
	if age := resp.Header.Get("Age"); age != "" && age != "0" {
		t.Fatalf("refreshed copy: Age %q", age)
	}

	// Fresh again, from the disk: no origin request, the whole body, Age
	// counted from the revalidation.
	e.clock.Advance(5 * time.Second)
	resp, body = e.get(path)
	wantCS(t, resp, "hit")
	if body != string(want) || resp.Header.Get("Age") != "5" {
		t.Fatalf("after revalidation: Age %q, %d bytes", resp.Header.Get("Age"), len(body))
	}
	resp, body = e.get(path, "Range", "bytes=10000000-10000099")
	wantStatus(t, resp, http.StatusPartialContent)
	if body != string(want[10000000:10000100]) {
		t.Fatal("range after revalidation differs")
	}
	if n := e.origin.count(path); n != 2 {
		t.Fatalf("the origin was asked %d times, want 2 (the miss and the revalidation)", n)
	}
	if st, _ := e.edge.DiskStats(); st.Objects != 1 {
		t.Fatalf("disk holds %d objects, want the refreshed one only", st.Objects)
	}
	if left := spoolFiles(t, dir); len(left) != 0 {
		t.Fatalf("spool files left: %v", left)
	}
}
