package edge_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/rules"
	"github.com/meridiancdn/meridian/internal/cdntest"
)

// Slicing with what else stores, removes and shapes answers: the disk
// tier, purges and bans, site rules, the access log.

// newSliceEnvWith is newSliceEnv with the edge's Options adjusted by opt.
func newSliceEnvWith(t *testing.T, sliceBytes int64, opt func(*edge.Options), mutate ...func(*edge.Config)) *sliceEnv {
	t.Helper()
	lo := cdntest.StartLargeOrigin(t)
	m := append([]func(*edge.Config){func(c *edge.Config) {
		c.Sites[0].Origin = lo.URL
		c.Sites[0].SliceBytes = sliceBytes
	}}, mutate...)
	return &sliceEnv{env: newEnvWith(t, respond(http.StatusTeapot, "not this origin"), opt, m...), lo: lo, s: sliceBytes}
}

// withSliceDisk gives the edge a memory store of about three 64 KiB
// slices over a disk tier in dir.
func withSliceDisk(dir string) func(*edge.Config) {
	return func(c *edge.Config) {
		c.Cache.MaxBytes = 200 << 10
		c.Cache.MaxObjectBytes = 64 << 10
		c.Cache.Disk = edge.DiskConfig{Path: dir, MaxBytes: 64 << 20}
	}
}

// stored is how many entries the edge holds in memory and on disk.
func (e *sliceEnv) stored() (memory, disk int) {
	memory, _, _ = e.edge.StoreStats()
	st, _ := e.edge.DiskStats()
	return memory, st.Objects
}

// waitTiers waits until the edge holds n entries in memory and on disk
// together, some in each (the disk tier writes in the background).
func (e *sliceEnv) waitTiers(n int) {
	e.t.Helper()
	eventually(e.t, fmt.Sprintf("%d slices over memory and disk", n), func() bool {
		m, d := e.stored()
		return m+d == n && m > 0 && d > 0
	})
}

// getWhole GETs path whole and checks its body against version.
func (e *sliceEnv) getWhole(path, version string, size int64) *http.Response {
	e.t.Helper()
	resp := e.fetch("GET", path)
	wantStatus(e.t, resp, http.StatusOK)
	if resp.ContentLength != size {
		e.t.Fatalf("GET %s: Content-Length %d, want %d", path, resp.ContentLength, size)
	}
	wantBody(e.t, resp, version, 0, size)
	return resp
}

// Slices evicted from memory are answered from the disk tier: whole and
// by ranges across slices, byte for byte, without asking the origin.
func TestSliceEvictedSlicesServedFromDisk(t *testing.T) {
	const s, size = 64 << 10, 12*(64<<10) + 777 // 13 slices; memory holds about 3
	e := newSliceEnv(t, s, withSliceDisk(t.TempDir()))
	e.lo.Set("/v.mp4", cdntest.LargeObject{Size: size, Version: "v1", CacheControl: "max-age=600"})
	e.getWhole("/v.mp4", "v1", size)
	e.waitTiers(13)
	if m, _ := e.stored(); m > 4 {
		t.Fatalf("memory holds %d slices: none had to go to disk", m)
	}
	before := len(e.lo.Requests())
	hitsBefore, _ := e.edge.DiskStats()

	resp := e.getWhole("/v.mp4", "v1", size)
	wantCS(t, resp, "hit", "detail=sliced")
	for _, rg := range []struct{ off, n int64 }{{100_000, 300_000}, {0, 1}, {size - 5000, 5000}} {
		resp := e.fetch("GET", "/v.mp4", "Range", fmt.Sprintf("bytes=%d-%d", rg.off, rg.off+rg.n-1))
		wantStatus(t, resp, http.StatusPartialContent)
		if want := fmt.Sprintf("bytes %d-%d/%d", rg.off, rg.off+rg.n-1, size); resp.Header.Get("Content-Range") != want || resp.ContentLength != rg.n {
			t.Errorf("Content-Range %q, Content-Length %d; want %q, %d", resp.Header.Get("Content-Range"), resp.ContentLength, want, rg.n)
		}
		wantBody(t, resp, "v1", rg.off, rg.n)
	}
	if got := e.lo.Requests()[before:]; len(got) != 0 {
		t.Errorf("slices on disk reached the origin %d times: %+v", len(got), got[0])
	}
	if st, _ := e.edge.DiskStats(); st.Hits <= hitsBefore.Hits {
		t.Errorf("the disk tier answered no lookup (%d hits before, %d after)", hitsBefore.Hits, st.Hits)
	}
}

// Every kind of purge reaches every slice of the object it names, in
// memory and on disk, and no slice of another object: the next GET costs
// each of the object's slices once at the origin (a soft purge's, in
// memory, revalidated), and the other object's none.
func TestSlicePurgesReachEverySliceInEveryTier(t *testing.T) {
	const s, size = 64 << 10, 6*(64<<10) + 100 // 7 slices each
	cases := []struct {
		name  string
		purge edge.Purge
		other bool // the other object is named too
		// soft: a slice may be revalidated; revalidates: some must be
		// (a soft purge marks the slices in memory stale at once; a
		// soft ban does at lookup, and by then the refill has pushed
		// them to disk, where a soft ban removes)
		soft, revalidates bool
	}{
		{name: "url", purge: edge.Purge{URLs: []string{"http://site.test/v/a.mp4"}}},
		{name: "url soft", purge: edge.Purge{URLs: []string{"https://site.test/v/a.mp4"}, Soft: true}, soft: true, revalidates: true},
		{name: "surrogate key", purge: edge.Purge{Keys: []string{"video-a"}}},
		{name: "prefix", purge: edge.Purge{Prefixes: []string{"http://site.test/v/a."}}},
		{name: "regex ban", purge: edge.Purge{Bans: []string{`req.url ~ "^/v/a\.mp4$"`}}},
		{name: "stored field ban", purge: edge.Purge{Bans: []string{`obj.http.Surrogate-Key ~ "video-a"`}}},
		{name: "soft ban", purge: edge.Purge{Bans: []string{`req.url ~ "a\.mp4$"`}, Soft: true}, soft: true},
		{name: "host", purge: edge.Purge{Hosts: []string{"site.test"}}, other: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newSliceEnv(t, s, withSliceDisk(t.TempDir()))
			e.lo.Set("/v/a.mp4", cdntest.LargeObject{Size: size, Version: "v1", CacheControl: "max-age=600", SurrogateKey: "all video-a"})
			e.lo.Set("/v/b.mp4", cdntest.LargeObject{Size: size, Version: "v1", CacheControl: "max-age=600", SurrogateKey: "all video-b"})
			// b first: memory keeps a's last slices, the disk the rest.
			e.getWhole("/v/b.mp4", "v1", size)
			e.getWhole("/v/a.mp4", "v1", size)
			e.waitTiers(14)
			e.clock.Advance(time.Second) // a ban is newer than what it names
			if _, err := e.edge.Purge(tc.purge); err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(time.Second)

			before := len(e.lo.Requests())
			e.getWhole("/v/a.mp4", "v1", size)
			reqs := requestsSince(e.lo, before)
			wantEachSliceOnce(t, reqs, "/v/a.mp4", s, size)
			revalidated := 0
			for _, r := range reqs {
				if r.IfNoneMatch != "" {
					revalidated++
					if !tc.soft || r.IfNoneMatch != `"v1"` || r.Status != http.StatusNotModified {
						t.Errorf("slice %s revalidated (If-None-Match %q, %d) after a hard purge", r.Range, r.IfNoneMatch, r.Status)
					}
				}
			}
			if tc.revalidates && revalidated == 0 {
				t.Errorf("no slice kept in memory was revalidated after a soft purge")
			}

			before = len(e.lo.Requests())
			e.getWhole("/v/b.mp4", "v1", size)
			reqs = requestsSince(e.lo, before)
			if tc.other {
				wantEachSliceOnce(t, reqs, "/v/b.mp4", s, size)
			} else if len(reqs) != 0 {
				t.Errorf("the other object's slices reached the origin %d times (%s first)", len(reqs), reqs[0].Range)
			}
			// The new slices are newer than the purge: they stay. (Wait
			// for those evicted to be written: the disk tier's lookups
			// do not see its write queue.)
			e.waitTiers(14)
			before = len(e.lo.Requests())
			e.getWhole("/v/a.mp4", "v1", size)
			if reqs := requestsSince(e.lo, before); len(reqs) != 0 {
				t.Errorf("after the refill the origin got %d requests (%s first)", len(reqs), reqs[0].Range)
			}
		})
	}
}

// A purge that comes while slices evicted from memory wait in the disk
// tier's write queue removes them too: none of them is written and served
// afterwards.
func TestSlicePurgeReachesSlicesQueuedForDisk(t *testing.T) {
	const s, size = 64 << 10, 30 * (64 << 10) // 30 slices; memory holds about 3
	for range 3 {
		e := newSliceEnv(t, s, withSliceDisk(t.TempDir()))
		e.lo.Set("/q.bin", cdntest.LargeObject{Size: size, Version: "v1", CacheControl: "max-age=600"})
		e.getWhole("/q.bin", "v1", size)
		// At once, while evicted slices may still be queued.
		if _, err := e.edge.Purge(edge.Purge{URLs: []string{"http://site.test/q.bin"}}); err != nil {
			t.Fatal(err)
		}
		if m, d := e.stored(); m+d != 0 {
			t.Fatalf("after the purge %d slices are left in memory, %d on disk", m, d)
		}
		before := len(e.lo.Requests())
		e.getWhole("/q.bin", "v1", size)
		wantEachSliceOnce(t, requestsSince(e.lo, before), "/q.bin", s, size)
	}
}

// Slices are ranges of one representation: they are asked for in the
// identity coding whatever the client accepts, and the answer is not
// compressed.
func TestSliceAskedInIdentityCoding(t *testing.T) {
	const s, size = 64 << 10, 3 * (64 << 10)
	e := newSliceEnv(t, s)
	e.lo.Set("/t.bin", cdntest.LargeObject{Size: size, Version: "v1", CacheControl: "max-age=600"})
	resp := e.fetch("GET", "/t.bin", "Accept-Encoding", "gzip, br")
	wantStatus(t, resp, http.StatusOK)
	if ce := resp.Header.Get("Content-Encoding"); ce != "" {
		t.Errorf("Content-Encoding %q", ce)
	}
	wantBody(t, resp, "v1", 0, size)
	for _, r := range e.lo.Requests() {
		if r.AcceptEncoding != "identity" {
			t.Errorf("slice %s asked with Accept-Encoding %q", r.Range, r.AcceptEncoding)
		}
	}
}

// A site's rules apply to the answer assembled from slices, once: the
// rewrite decides the object (and the origin's path), the response header
// rules shape the answer, and a purge of the client's URL reaches the
// rewritten object's slices.
func TestSliceSiteRulesApplyToTheAnswer(t *testing.T) {
	const s, size = 64 << 10, 3*(64<<10) + 1
	e := newSliceEnv(t, s, func(c *edge.Config) {
		c.Sites[0].Rules = rules.Config{
			Redirects: []rules.Redirect{{Name: "dl", PathMatch: rules.PathMatch{Prefix: "/dl/"}, RewriteTo: "/files/"}},
			Headers: rules.HeadersConfig{Response: []rules.HeaderRule{{
				Set: map[string]string{"X-Rule": "on", "Cache-Control": "public, max-age=60"}}}},
		}
	})
	e.lo.Set("/files/a.bin", cdntest.LargeObject{Size: size, Version: "v1", CacheControl: "max-age=600"})
	for _, rg := range []string{"", "bytes=70000-140000", "bytes=0-9,-10"} {
		var resp *http.Response
		if rg == "" {
			resp = e.fetch("GET", "/dl/a.bin")
		} else {
			resp = e.fetch("GET", "/dl/a.bin", "Range", rg)
		}
		body := readAll(t, resp)
		if resp.Header.Values("X-Rule") == nil || len(resp.Header.Values("X-Rule")) != 1 || resp.Header.Get("Cache-Control") != "public, max-age=60" {
			t.Errorf("%q: the response rules did not apply once: X-Rule %q, Cache-Control %q", rg, resp.Header.Values("X-Rule"), resp.Header.Get("Cache-Control"))
		}
		wantCS(t, resp, "detail=sliced")
		switch rg {
		case "":
			wantStatus(t, resp, http.StatusOK)
			if int64(len(body)) != size || cdntest.CheckLarge(strings.NewReader(string(body)), "v1", 0, size) != nil {
				t.Errorf("whole: %d bytes, not the object's", len(body))
			}
		case "bytes=70000-140000":
			wantStatus(t, resp, http.StatusPartialContent)
			if err := cdntest.CheckLarge(strings.NewReader(string(body)), "v1", 70000, 70001); err != nil {
				t.Errorf("range: %v", err)
			}
		default:
			wantStatus(t, resp, http.StatusPartialContent)
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "multipart/byteranges; boundary=") || int64(len(body)) != resp.ContentLength {
				t.Errorf("multipart: Content-Type %q, %d bytes for Content-Length %d", resp.Header.Get("Content-Type"), len(body), resp.ContentLength)
			}
		}
	}
	wantEachSliceOnce(t, e.lo.Requests(), "/files/a.bin", s, size)

	// The client's URL names the rewritten object.
	if n, err := e.edge.Purge(edge.Purge{URLs: []string{"http://site.test/dl/a.bin"}}); err != nil || n != 4 {
		t.Fatalf("purge of the client's URL removed %d entries (%v), want the 4 slices", n, err)
	}
}

// The access log has one line per client request of a sliced site, none
// per slice: its status, body bytes and Cache-Status are the assembled
// answer's.
func TestSliceAccessLogOneLinePerAnswer(t *testing.T) {
	const s, size = 64 << 10, 5 * (64 << 10)
	var buf syncBuffer
	al, err := edge.NewAccessLog(&buf, edge.AccessLogJSON)
	if err != nil {
		t.Fatal(err)
	}
	e := newSliceEnvWith(t, s, func(o *edge.Options) { o.AccessLog = al })
	e.lo.Set("/log.bin", cdntest.LargeObject{Size: size, Version: "v1", CacheControl: "max-age=600"})
	steps := []struct {
		rng    string
		status int
		bytes  int64 // -1: the answer's Content-Length
		cs     []string
	}{
		{"", 200, size, []string{"edge1; fwd=uri-miss", "detail=sliced"}},
		{"bytes=100000-200000", 206, 100001, []string{"edge1; hit", "detail=sliced"}},
		{"bytes=0-0,-1", 206, -1, []string{"edge1; hit", "detail=sliced"}},
		// A slice past the end: the origin's 416 passed through.
		{"bytes=999999999-", 416, -1, []string{"edge1; fwd=uri-miss; fwd-status=416", "detail=sliced"}},
	}
	for i, st := range steps {
		before := len(buf.lines())
		var resp *http.Response
		if st.rng == "" {
			resp = e.fetch("GET", "/log.bin")
		} else {
			resp = e.fetch("GET", "/log.bin", "Range", st.rng)
		}
		body := readAll(t, resp)
		wantStatus(t, resp, st.status)
		waitFor(t, func() bool { return len(buf.lines()) > before })
		time.Sleep(20 * time.Millisecond) // a line per slice would come now
		lines := buf.lines()
		if len(lines) != before+1 {
			t.Fatalf("step %d: %d lines for one request", i, len(lines)-before)
		}
		l := lines[before]
		want := st.bytes
		if want < 0 {
			want = int64(len(body))
		}
		if l["status"] != float64(st.status) || l["bytes"] != float64(want) || l["uri"] != "/log.bin" {
			t.Errorf("step %d: status %v, bytes %v, uri %v; want %d, %d", i, l["status"], l["bytes"], l["uri"], st.status, want)
		}
		cs, _ := l["cache_status"].(string)
		if cs != resp.Header.Get("Cache-Status") {
			t.Errorf("step %d: logged Cache-Status %q, answered %q", i, cs, resp.Header.Get("Cache-Status"))
		}
		for _, part := range st.cs {
			if !strings.Contains(cs, part) {
				t.Errorf("step %d: Cache-Status %q lacks %q", i, cs, part)
			}
		}
	}
}
