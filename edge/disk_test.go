package edge_test

import (
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
)

// objectBody is the body the disk tests' origin serves at path: n bytes
// that differ by path and position.
func objectBody(path string, n int) string {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), uint64(crc32.ChecksumIEEE([]byte(path)))))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return string(b)
}

// diskOrigin serves objectBody(path, 40 KiB) under /obj/, fresh for ten
// minutes, with an ETag and the surrogate keys "all" and the path's last
// element; it answers a matching If-None-Match with 304.
func diskOrigin(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	w.Header().Set("Cache-Control", "max-age=600")
	w.Header().Set("ETag", `"`+name+`"`)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Surrogate-Key", "all t"+name)
	if r.Header.Get("If-None-Match") == `"`+name+`"` {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	io.WriteString(w, objectBody(r.URL.Path, 40<<10))
}

// withDisk gives the edge a small memory store (four objects of
// diskOrigin's) over a disk tier in a test directory.
func withDisk(dir string) func(*edge.Config) {
	return func(c *edge.Config) {
		c.Cache.MaxBytes = 200 << 10
		c.Cache.MaxObjectBytes = 64 << 10
		c.Cache.Disk = edge.DiskConfig{Path: dir, MaxBytes: 64 << 20}
	}
}

// Objects evicted from memory are served from disk, whole, by range and
// conditionally, byte for byte and without asking the origin; a purge
// removes them there too; a stale one is revalidated.
func TestDiskTierServesWhatMemoryEvicted(t *testing.T) {
	e := newEnv(t, diskOrigin, withDisk(t.TempDir()))
	const objects = 20
	for i := range objects {
		resp, body := e.get(fmt.Sprintf("/obj/%d", i))
		wantStatus(t, resp, 200)
		if body != objectBody(fmt.Sprintf("/obj/%d", i), 40<<10) {
			t.Fatalf("/obj/%d: body differs on the miss", i)
		}
	}
	eventually(t, "evicted objects written to disk", func() bool {
		st, _ := e.edge.DiskStats()
		return st.Objects >= objects-5
	})
	if entries, _, _ := e.edge.StoreStats(); entries > 5 {
		t.Fatalf("memory holds %d objects: nothing had to go to disk", entries)
	}
	for i := range objects {
		path := fmt.Sprintf("/obj/%d", i)
		resp, body := e.get(path)
		wantStatus(t, resp, 200)
		wantCS(t, resp, "hit")
		if body != objectBody(path, 40<<10) || resp.ContentLength != 40<<10 {
			t.Fatalf("%s: body differs on the hit (%d bytes)", path, len(body))
		}
		if n := e.origin.count(path); n != 1 {
			t.Fatalf("%s: the origin was asked %d times", path, n)
		}
	}
	st, _ := e.edge.DiskStats()
	if st.Hits < objects-5 {
		t.Fatalf("disk hits %d", st.Hits)
	}

	// An object on disk (the first one; memory holds the last ones).
	const path = "/obj/0"
	whole := objectBody(path, 40<<10)
	resp, body := e.get(path, "Range", "bytes=1000-1999")
	wantStatus(t, resp, http.StatusPartialContent)
	if body != whole[1000:2000] || resp.Header.Get("Content-Range") != "bytes 1000-1999/40960" {
		t.Fatalf("range: %q, %d bytes", resp.Header.Get("Content-Range"), len(body))
	}
	resp, body = e.get(path, "Range", "bytes=0-9,40950-")
	wantStatus(t, resp, http.StatusPartialContent)
	_, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	mr := multipart.NewReader(strings.NewReader(body), params["boundary"])
	for _, want := range []string{whole[:10], whole[40950:]} {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(p)
		if string(got) != want {
			t.Fatalf("multipart range: %q, want %q", got, want)
		}
	}
	resp, _ = e.get(path, "If-None-Match", `"0"`)
	wantStatus(t, resp, http.StatusNotModified)
	resp, body = e.do(http.MethodHead, path, nil, nil)
	if resp.StatusCode != 200 || body != "" || resp.ContentLength != 40<<10 {
		t.Fatalf("HEAD: %d, %d bytes, Content-Length %d", resp.StatusCode, len(body), resp.ContentLength)
	}
	if n := e.origin.count(path); n != 1 {
		t.Fatalf("the origin was asked %d times", n)
	}

	// Purge by surrogate key and by URL reach the disk.
	if n, err := e.edge.Purge(edge.Purge{Keys: []string{"t1"}, URLs: []string{"http://site.test/obj/2"}}); err != nil || n != 2 {
		t.Fatalf("purge: %d, %v", n, err)
	}
	for _, p := range []string{"/obj/1", "/obj/2"} {
		resp, _ := e.get(p)
		wantCS(t, resp, "!hit")
		if n := e.origin.count(p); n != 2 {
			t.Fatalf("%s after its purge: the origin was asked %d times", p, n)
		}
	}

	// Stale on disk: revalidated with its validator, served from disk.
	e.clock.Advance(11 * time.Minute)
	resp, body = e.get("/obj/3")
	wantStatus(t, resp, 200)
	if body != objectBody("/obj/3", 40<<10) {
		t.Fatal("the revalidated object's body differs")
	}
	if got := e.origin.lastRequest().Header.Get("If-None-Match"); got != `"3"` {
		t.Fatalf("revalidation sent If-None-Match %q", got)
	}
	resp, body = e.get("/obj/3")
	wantCS(t, resp, "hit")
	if body != objectBody("/obj/3", 40<<10) || e.origin.count("/obj/3") != 2 {
		t.Fatal("the refreshed object is not a hit")
	}
}

// A bad disk configuration is refused with the field's name.
func TestDiskConfigIsValidated(t *testing.T) {
	for _, tc := range []struct {
		disk edge.DiskConfig
		want string
	}{
		{edge.DiskConfig{Path: t.TempDir(), MaxBytes: 1 << 20}, "cache.disk.max_bytes"},
		{edge.DiskConfig{Path: t.TempDir(), MaxBytes: -1}, "cache.disk.max_bytes"},
		{edge.DiskConfig{MaxBytes: 1 << 30}, "cache.disk.path"},
	} {
		cfg := edge.Config{Cache: edge.CacheConfig{Disk: tc.disk}, Sites: []edge.SiteConfig{{Hosts: []string{"a.test"}, Origin: "http://127.0.0.1:1"}}}
		if err := cfg.WithDefaults().Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.disk, err, tc.want)
		}
	}
	dir := t.TempDir()
	cfg := edge.Config{Cache: edge.CacheConfig{Disk: edge.DiskConfig{Path: dir}}, Sites: []edge.SiteConfig{{Hosts: []string{"a.test"}, Origin: "http://127.0.0.1:1"}}}
	h, err := edge.New(cfg, edge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := edge.New(cfg, edge.Options{}); err == nil || !strings.Contains(err.Error(), "cache.disk") {
		t.Fatalf("a second edge on the same disk directory: %v", err)
	}
}

// fillPastMemory gets /obj/0 to /obj/19 through e, whose memory holds the
// last few, and waits until the others are written to its disk tier.
func fillPastMemory(t *testing.T, e *env) {
	t.Helper()
	const objects = 20
	for i := range objects {
		e.get(fmt.Sprintf("/obj/%d", i))
	}
	eventually(t, "evicted objects written to disk", func() bool {
		st, _ := e.edge.DiskStats()
		return st.Objects >= objects-5
	})
}

// Bans reach the disk tier: at lookup an object on disk older than a ban
// is fetched again, and the sweeper removes the banned objects on disk
// nobody asked for, soft bans included (an entry on disk is not
// rewritten: a soft ban removes it there, as a soft purge does).
func TestBansReachTheDiskTier(t *testing.T) {
	e := newEnv(t, diskOrigin, withDisk(t.TempDir()))
	fillPastMemory(t, e)
	// /obj/1 and /obj/10../obj/14 are on disk (memory holds the last few).
	e.clock.Advance(time.Second)
	if _, err := e.edge.Purge(edge.Purge{Prefixes: []string{"http://site.test/obj/1"}, Soft: true}); err != nil {
		t.Fatal(err)
	}
	resp, body := e.get("/obj/1")
	wantCS(t, resp, "!hit")
	if body != objectBody("/obj/1", 40<<10) || e.origin.count("/obj/1") != 2 {
		t.Fatalf("/obj/1 after the ban: the origin was asked %d times", e.origin.count("/obj/1"))
	}
	before, _ := e.edge.DiskStats()
	if n := e.edge.SweepBans(); n < 6 { // of /obj/10 to /obj/19; memory holds four objects at most
		t.Fatalf("the sweep changed %d entries: the banned ones on disk were missed", n)
	}
	eventually(t, "banned objects gone from disk", func() bool {
		st, _ := e.edge.DiskStats()
		return st.Objects <= before.Objects-5
	})
	for _, p := range []string{"/obj/10", "/obj/12", "/obj/14"} {
		resp, _ := e.get(p)
		wantCS(t, resp, "!hit")
		if n := e.origin.count(p); n != 2 {
			t.Fatalf("%s after the sweep: the origin was asked %d times", p, n)
		}
	}
	resp, _ = e.get("/obj/2")
	wantCS(t, resp, "hit")
	if n := e.origin.count("/obj/2"); n != 1 {
		t.Fatalf("/obj/2 (not banned): the origin was asked %d times", n)
	}
}

// A ban that LookupHit (a fast front's hit path) applies to an object on
// disk queues the removal of the object's key; the key was derived in
// the connection's Hit, whose buffer the next request overwrites, so
// what is queued must be a copy: else the next key's object is the one
// removed from disk.
func TestLookupHitBanOnDiskQueuesItsOwnKey(t *testing.T) {
	e := newEnv(t, diskOrigin, withDisk(t.TempDir()))
	fillPastMemory(t, e)
	// /obj/1 to /obj/9 are on disk (memory holds the last few).
	e.clock.Advance(time.Second)
	if _, err := e.edge.Purge(edge.Purge{Prefixes: []string{"http://site.test/obj/1"}}); err != nil {
		t.Fatal(err)
	}
	var x edge.Hit
	req := func(target string) edge.HitRequest {
		return edge.HitRequest{Host: []byte(testHost), Target: []byte(target),
			Remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4711}}
	}
	if e.edge.LookupHit(req("/obj/1"), &x) {
		t.Fatal("/obj/1 is a hit after its ban")
	}
	for _, p := range []string{"/obj/2", "/obj/3"} { // keys as long as /obj/1's
		if !e.edge.LookupHit(req(p), &x) {
			t.Fatalf("%s (not banned) is no hit", p)
		}
		x.Release()
	}
	// A purge's removal on disk is done after the work queued before it.
	if _, err := e.edge.Purge(edge.Purge{URLs: []string{"http://site.test/obj/5"}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/obj/2", "/obj/3"} {
		resp, _ := e.get(p)
		wantCS(t, resp, "hit")
		if n := e.origin.count(p); n != 1 {
			t.Fatalf("%s: the origin was asked %d times: its object left the disk", p, n)
		}
	}
}
