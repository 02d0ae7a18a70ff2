package edge_test

import (
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/internal/cdntest"
	"github.com/meridiancdn/meridian/internal/poll"
)

// sliceEnv is an edge whose site slices (slice_bytes) in front of a
// LargeOrigin that records every request.
type sliceEnv struct {
	*env
	lo *cdntest.LargeOrigin
	s  int64 // slice_bytes
}

func newSliceEnv(t *testing.T, sliceBytes int64, mutate ...func(*edge.Config)) *sliceEnv {
	t.Helper()
	lo := cdntest.StartLargeOrigin(t)
	m := append([]func(*edge.Config){func(c *edge.Config) {
		c.Sites[0].Origin = lo.URL
		c.Sites[0].SliceBytes = sliceBytes
	}}, mutate...)
	return &sliceEnv{env: newEnv(t, respond(http.StatusTeapot, "not this origin"), m...), lo: lo, s: sliceBytes}
}

// fetch sends a GET (or HEAD) with the given fields and returns the
// response with its body unread; the caller closes it.
func (e *sliceEnv) fetch(method, target string, kv ...string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+target, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Host = testHost
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Add(kv[i], kv[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, target, err)
	}
	return resp
}

// wantBody checks that resp's body is exactly n bytes of version from off.
func wantBody(t *testing.T, resp *http.Response, version string, off, n int64) {
	t.Helper()
	defer resp.Body.Close()
	if err := cdntest.CheckLarge(resp.Body, version, off, n); err != nil {
		t.Fatalf("body of %s: %v", resp.Request.Header.Get("Range"), err)
	}
}

// sliceRanges returns the Range fields the origin should get for slices
// first..last of an object of size bytes.
func sliceRange(s, i int64) string {
	return fmt.Sprintf("bytes=%d-%d", i*s, i*s+s-1)
}

// rangeCounts counts the origin's requests for path by Range field.
func rangeCounts(reqs []cdntest.LargeRequest, path string) map[string]int {
	out := map[string]int{}
	for _, r := range reqs {
		if r.Path == path {
			out[r.Range]++
		}
	}
	return out
}

// wantEachSliceOnce checks that the origin got exactly one request per
// slice of an object of size bytes, each for its slice's range, and
// nothing else.
func wantEachSliceOnce(t *testing.T, reqs []cdntest.LargeRequest, path string, s, size int64) {
	t.Helper()
	got := rangeCounts(reqs, path)
	n := (size + s - 1) / s
	for i := range n {
		if got[sliceRange(s, i)] != 1 {
			t.Errorf("slice %d (%s) reached the origin %d times, want 1", i, sliceRange(s, i), got[sliceRange(s, i)])
		}
		delete(got, sliceRange(s, i))
	}
	for rg, c := range got {
		t.Errorf("origin got %d unexpected request(s) with Range %q", c, rg)
	}
}

func TestSliceWholeObjectFromSlices(t *testing.T) {
	const s, size = 64 << 10, 1<<20 + 123
	e := newSliceEnv(t, s)
	lm := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e.lo.Set("/big", cdntest.LargeObject{Size: size, Version: "v1", ModTime: lm, CacheControl: "max-age=600"})

	for i, want := range []string{"fwd=uri-miss", "hit"} {
		resp := e.fetch("GET", "/big")
		wantStatus(t, resp, http.StatusOK)
		if resp.ContentLength != size {
			t.Fatalf("request %d: Content-Length %d, want %d", i, resp.ContentLength, size)
		}
		if got := resp.Header.Get("Etag"); got != `"v1"` {
			t.Errorf("ETag %q", got)
		}
		if got := resp.Header.Get("Last-Modified"); got != lm.Format(http.TimeFormat) {
			t.Errorf("Last-Modified %q", got)
		}
		if resp.Header.Get("Content-Range") != "" || resp.Header.Get("Cache-Control") != "max-age=600" ||
			resp.Header.Get("Accept-Ranges") != "bytes" {
			t.Errorf("fields: %v", resp.Header)
		}
		wantCS(t, resp, want, "detail=sliced")
		wantBody(t, resp, "v1", 0, size)
	}
	wantEachSliceOnce(t, e.lo.Requests(), "/big", s, size)
	for _, r := range e.lo.Requests() {
		if r.Method != "GET" || r.IfNoneMatch != "" || r.CacheControl != "" {
			t.Errorf("origin got %+v", r)
		}
	}
	// Each slice is its own entry.
	if n, _, _ := e.edge.StoreStats(); n != (size+s-1)/s {
		t.Errorf("%d entries stored, want %d", n, (size+s-1)/s)
	}
	// The edge books one client request per answer, and each slice as a
	// slice (once the answer's last byte is sent, and each slice's
	// subrequest has ended, which may be just after: wait for both).
	var got map[string]float64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		got = e.series("meridian_edge_requests_total", "meridian_edge_slice_requests_total")
		if got["meridian_edge_requests_total cache_status=hit protocol=http/1.1 site=site.test"] == 1 &&
			got["meridian_edge_slice_requests_total cache_status=hit site=site.test"] >= 17 || time.Now().After(deadline) {
			break
		}
	}
	var total float64
	for k, v := range got {
		if strings.HasPrefix(k, "meridian_edge_requests_total ") {
			total += v
		}
	}
	if got["meridian_edge_requests_total cache_status=miss protocol=http/1.1 site=site.test"] != 1 ||
		got["meridian_edge_requests_total cache_status=hit protocol=http/1.1 site=site.test"] != 1 || total != 2 {
		t.Errorf("requests: %v", got)
	}
	if got["meridian_edge_slice_requests_total cache_status=miss site=site.test"] != 17 || got["meridian_edge_slice_requests_total cache_status=hit site=site.test"] != 17 {
		t.Errorf("slices: %v", got)
	}
}

// TestSliceAnswersLikeTheOrigin compares the edge's answers for a sliced
// object with those of the origin itself (http.ServeContent) for the same
// requests: ranges within and across slices, suffix and open ranges,
// several ranges (multipart), overlapping ones, unsatisfiable ones,
// If-Range, conditionals and HEAD.
func TestSliceAnswersLikeTheOrigin(t *testing.T) {
	const s, size = 64 << 10, 300_001
	e := newSliceEnv(t, s)
	lm := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e.lo.Set("/obj", cdntest.LargeObject{Size: size, Version: "v7", ModTime: lm, CacheControl: "max-age=600"})
	lms := lm.Format(http.TimeFormat)
	// ignored: the origin (net/http) answers 416 where RFC 9110 §14.2
	// says to ignore the field, as the edge does; it is asked without.
	tests := []struct {
		name    string
		kv      []string
		ignored bool
	}{
		{"whole", nil, false},
		{"first bytes", []string{"Range", "bytes=0-9"}, false},
		{"within a slice", []string{"Range", "bytes=70000-70099"}, false},
		{"across slices", []string{"Range", "bytes=65000-200000"}, false},
		{"slice boundary", []string{"Range", "bytes=65536-131071"}, false},
		{"open", []string{"Range", "bytes=250000-"}, false},
		{"suffix", []string{"Range", "bytes=-1000"}, false},
		{"suffix longer than the object", []string{"Range", "bytes=-999999"}, false},
		{"last byte", []string{"Range", "bytes=300000-300000"}, false},
		{"past the end clamped", []string{"Range", "bytes=299990-400000"}, false},
		{"several", []string{"Range", "bytes=0-9,100000-100009,-5"}, false},
		{"several out of order", []string{"Range", "bytes=200000-200100,10-20"}, false},
		{"overlapping coalesced", []string{"Range", "bytes=100-70000,60000-140000"}, false}, // see ref below
		{"unsatisfiable", []string{"Range", "bytes=300001-"}, false},
		{"far past the end", []string{"Range", "bytes=9000000000-9000000001"}, false},
		{"invalid ignored", []string{"Range", "bytes=5-1"}, true},
		{"other unit ignored", []string{"Range", "pages=1-2"}, true},
		{"If-Range match", []string{"Range", "bytes=10-20", "If-Range", `"v7"`}, false},
		{"If-Range mismatch", []string{"Range", "bytes=10-20", "If-Range", `"v6"`}, false},
		{"If-Range date", []string{"Range", "bytes=10-20", "If-Range", lms}, false},
		{"If-None-Match match", []string{"If-None-Match", `"v7"`}, false},
		{"If-None-Match other", []string{"If-None-Match", `"v1"`}, false},
		{"If-Modified-Since", []string{"If-Modified-Since", lms}, false},
		{"If-Match fails", []string{"If-Match", `"v1"`}, false},
		{"If-None-Match with Range", []string{"If-None-Match", `"v7"`, "Range", "bytes=0-5"}, false},
	}
	for _, method := range []string{"GET", "HEAD"} {
		for _, tc := range tests {
			t.Run(method+" "+tc.name, func(t *testing.T) {
				ref := tc.kv
				if tc.ignored || method == "HEAD" {
					// Range is for GET only (RFC 9110 §14.2); net/http
					// answers a HEAD's.
					ref = withoutRange(tc.kv)
				}
				if tc.name == "overlapping coalesced" && method == "GET" {
					// The edge coalesces overlapping ranges (RFC 9110
					// §14.6 allows it); net/http sends both.
					ref = []string{"Range", "bytes=100-140000"}
				}
				want := originAnswer(t, e.lo.URL, method, "/obj", ref)
				resp := e.fetch(method, "/obj", tc.kv...)
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				wantCS(t, resp, "detail=sliced")
				if resp.StatusCode != want.status {
					t.Fatalf("status %d, origin's %d", resp.StatusCode, want.status)
				}
				fields := []string{"Content-Range", "Etag", "Last-Modified"}
				switch resp.StatusCode {
				case http.StatusNotModified:
					// net/http drops Last-Modified from a 304 with an
					// ETag; the edge keeps it, as for unsliced objects.
					fields = fields[:2]
				case http.StatusRequestedRangeNotSatisfiable:
					// net/http drops the validators from its errors.
					fields = fields[:1]
				}
				for _, f := range fields {
					if resp.Header.Get(f) != want.header.Get(f) {
						t.Errorf("%s %q, origin's %q", f, resp.Header.Get(f), want.header.Get(f))
					}
				}
				if method == "HEAD" && resp.StatusCode == http.StatusOK && resp.ContentLength != size {
					t.Errorf("HEAD: Content-Length %d", resp.ContentLength)
				}
				ct := resp.Header.Get("Content-Type")
				if strings.HasPrefix(ct, "multipart/") {
					// net/http keeps the client's order; the edge sorts
					// them (byterange.Parse).
					gp, wp := parts(t, ct, got), parts(t, want.header.Get("Content-Type"), want.body)
					slices.Sort(gp)
					slices.Sort(wp)
					if !slices.Equal(gp, wp) {
						t.Fatalf("multipart parts differ from the origin's")
					}
					return
				}
				if resp.StatusCode < 300 && string(got) != string(want.body) {
					t.Fatalf("body of %d bytes differs from the origin's %d", len(got), len(want.body))
				}
			})
		}
	}
	// Whatever was asked, the origin saw each slice once, each for a
	// slice's range (a slice past the end: a 416 from the origin, asked
	// once per request that wanted it).
	got := rangeCounts(fromEdge(e.lo.Requests()), "/obj")
	for i := range int64(5) {
		if c := got[sliceRange(s, i)]; c != 1 {
			t.Errorf("slice %d asked %d times", i, c)
		}
	}
	for rg, c := range got {
		if !strings.HasPrefix(rg, "bytes=") || strings.Contains(rg, ",") {
			t.Errorf("origin got Range %q (%d times)", rg, c)
		}
	}

}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func withoutRange(kv []string) []string {
	var out []string
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] != "Range" && kv[i] != "If-Range" {
			out = append(out, kv[i], kv[i+1])
		}
	}
	return out
}

// fromEdge keeps the requests an edge made (the test's own, made
// directly, have no Via).
func fromEdge(reqs []cdntest.LargeRequest) []cdntest.LargeRequest {
	var out []cdntest.LargeRequest
	for _, r := range reqs {
		if r.Via != "" {
			out = append(out, r)
		}
	}
	return out
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

// originAnswer asks the origin itself, directly.
func originAnswer(t *testing.T, base, method, target string, kv []string) answer {
	t.Helper()
	req, _ := http.NewRequest(method, base+target, nil)
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Add(kv[i], kv[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

// parts returns a multipart/byteranges body's parts as
// "Content-Range\nbody".
func parts(t *testing.T, ct string, body []byte) []string {
	t.Helper()
	_, params, err := mime.ParseMediaType(ct)
	if err != nil {
		t.Fatalf("Content-Type %q: %v", ct, err)
	}
	mr := multipart.NewReader(strings.NewReader(string(body)), params["boundary"])
	var out []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("multipart: %v", err)
		}
		b, _ := io.ReadAll(p)
		out = append(out, p.Header.Get("Content-Range")+"\n"+string(b))
	}
}

// randomRange is a random single range of an object of size bytes: of
// up to three slices' length, sometimes open or a suffix.
func randomRange(rng *rand.Rand, s, size int64) (field string, off, n int64) {
	switch rng.IntN(10) {
	case 0: // suffix
		n = 1 + rng.Int64N(3*s)
		return fmt.Sprintf("bytes=-%d", n), size - n, n
	case 1: // open, near the end
		off = size - 1 - rng.Int64N(2*s)
		return fmt.Sprintf("bytes=%d-", off), off, size - off
	}
	off = rng.Int64N(size)
	n = 1 + rng.Int64N(min(3*s, size-off))
	return fmt.Sprintf("bytes=%d-%d", off, off+n-1), off, n
}

// TestSliceLargeObjectEachSliceOnce: a 64 MiB object (over
// max_object_bytes, which unsliced would never be stored) asked by 100
// random ranges and then whole costs each slice once at the origin, and
// every answer is right byte for byte. (The 200 MiB of issue 17's
// acceptance go through a region: edge/node's
// TestSlicedObjectSpreadsOverTheRegion.)
func TestSliceLargeObjectEachSliceOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB through the edge")
	}
	const s, size = 1 << 20, 64 << 20
	e := newSliceEnv(t, s, func(c *edge.Config) { c.Cache.MaxBytes = 96 << 20 })
	e.lo.Set("/video.mp4", cdntest.LargeObject{Size: size, Version: "v1", CacheControl: "max-age=3600"})
	rng := rand.New(rand.NewPCG(17, 42))
	var clientBytes int64
	for range 100 {
		field, off, n := randomRange(rng, s, size)
		resp := e.fetch("GET", "/video.mp4", "Range", field)
		wantStatus(t, resp, http.StatusPartialContent)
		if want := fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, size); resp.Header.Get("Content-Range") != want || resp.ContentLength != n {
			t.Fatalf("%s: Content-Range %q, Content-Length %d; want %q, %d", field, resp.Header.Get("Content-Range"), resp.ContentLength, want, n)
		}
		wantBody(t, resp, "v1", off, n)
		clientBytes += n
	}
	resp := e.fetch("GET", "/video.mp4")
	wantStatus(t, resp, http.StatusOK)
	wantBody(t, resp, "v1", 0, size)
	clientBytes += size
	// The last range's slice may still be completing in the background.
	poll.Until(t, time.Minute, "the origin has answered every request", func() bool { return e.lo.Pending() == 0 })

	wantEachSliceOnce(t, e.lo.Requests(), "/video.mp4", s, size)
	ratio := float64(e.lo.BodyBytes()) / size
	t.Logf("origin bytes / object size = %.4f; origin bytes / client bytes = %.4f", ratio, float64(e.lo.BodyBytes())/float64(clientBytes))
	if e.lo.BodyBytes() != size {
		t.Errorf("origin sent %.4f times the object", ratio)
	}
}

// waitStored waits until the edge holds n entries: slices read in part
// are completed in the background.
func (e *sliceEnv) waitStored(n int) {
	e.t.Helper()
	poll.Until(e.t, 10*time.Second, fmt.Sprintf("%d entries are stored", n), func() bool {
		got, _, _ := e.edge.StoreStats()
		return got == n
	})
}

// requestsSince returns the origin's requests after the first skip.
func requestsSince(lo *cdntest.LargeOrigin, skip int) []cdntest.LargeRequest {
	return lo.Requests()[skip:]
}

// TestSliceChangedObjectRefetchesTheOldSlice: the object changes at the
// origin while one of its slices is stored; a whole GET takes its first
// slice from the origin (the new version), finds the stored slice of the
// old one, fetches that slice once more, revalidated, and answers the new
// version whole: no mixed body, and no error.
func TestSliceChangedObjectRefetchesTheOldSlice(t *testing.T) {
	const s, size = 64 << 10, 8*(64<<10) - 100
	e := newSliceEnv(t, s)
	e.lo.Set("/o", cdntest.LargeObject{Size: size, Version: "v1", CacheControl: "max-age=600"})
	resp := e.fetch("GET", "/o", "Range", fmt.Sprintf("bytes=%d-%d", 5*s+10, 5*s+20))
	wantStatus(t, resp, http.StatusPartialContent)
	wantBody(t, resp, "v1", 5*s+10, 11)
	e.waitStored(1)
	before := len(e.lo.Requests())

	e.lo.Set("/o", cdntest.LargeObject{Size: size, Version: "v2", CacheControl: "max-age=600"})
	resp = e.fetch("GET", "/o")
	wantStatus(t, resp, http.StatusOK)
	if resp.Header.Get("Etag") != `"v2"` {
		t.Errorf("ETag %q", resp.Header.Get("Etag"))
	}
	wantBody(t, resp, "v2", 0, size)

	var got []string
	for _, r := range requestsSince(e.lo, before) {
		got = append(got, r.Range+" "+r.IfNoneMatch+" "+r.CacheControl)
	}
	var want []string
	for i := range int64(8) {
		if i != 5 {
			want = append(want, sliceRange(s, i)+"  ")
		}
	}
	want = append(want, sliceRange(s, 5)+` "v1" no-cache`) // the old slice, revalidated
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("origin got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := e.counter("meridian_edge_slice_mismatches_total"); n != 1 {
		t.Errorf("%v mismatches counted", n)
	}
	// The store holds the new version only.
	resp = e.fetch("GET", "/o")
	wantCS(t, resp, "hit")
	wantBody(t, resp, "v2", 0, size)
}

// TestSliceChangedObjectCutsTheAnswerAndHeals: the object changes while
// its first slices are stored; a whole GET starts sending the stored (old)
// version, then meets a slice of the new one: fetched once more,
// revalidated, it is still new, so the answer is cut short (never
// completed with bytes of another version), the old version's slices
// are dropped and the first slice revalidated, and the next GET gets the
// new version whole.
func TestSliceChangedObjectCutsTheAnswerAndHeals(t *testing.T) {
	const s, size = 64 << 10, 8*(64<<10) - 100
	e := newSliceEnv(t, s)
	e.lo.Set("/o", cdntest.LargeObject{Size: size, Version: "v1", CacheControl: "max-age=600"})
	resp := e.fetch("GET", "/o", "Range", fmt.Sprintf("bytes=0-%d", 3*s-1))
	wantBody(t, resp, "v1", 0, 3*s)
	e.waitStored(3)
	before := len(e.lo.Requests())

	e.lo.Set("/o", cdntest.LargeObject{Size: size, Version: "v2", CacheControl: "max-age=600"})
	resp = e.fetch("GET", "/o")
	wantStatus(t, resp, http.StatusOK)
	if resp.Header.Get("Etag") != `"v1"` {
		t.Fatalf("ETag %q: the answer starts from the stored first slice", resp.Header.Get("Etag"))
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatalf("a body of %d bytes read to its end; want it cut short", len(b))
	}
	if int64(len(b)) > 3*s || cdntest.CheckLarge(strings.NewReader(string(b)), "v1", 0, int64(len(b))) != nil {
		t.Fatalf("the %d bytes sent are not the old version's first slices only", len(b))
	}
	// The first slice's revalidation runs in the background: wait for it
	// to reach the origin (the next GET then joins it).
	poll.Until(t, 10*time.Second, "the first slice is revalidated", func() bool {
		return slices.ContainsFunc(requestsSince(e.lo, before), func(r cdntest.LargeRequest) bool {
			return r.Range == sliceRange(s, 0) && r.CacheControl == "no-cache"
		})
	})
	resp = e.fetch("GET", "/o")
	wantStatus(t, resp, http.StatusOK)
	if resp.Header.Get("Etag") != `"v2"` {
		t.Errorf("ETag %q after the change", resp.Header.Get("Etag"))
	}
	wantBody(t, resp, "v2", 0, size)

	got := map[string]int{}
	for _, r := range requestsSince(e.lo, before) {
		if r.Range == sliceRange(s, 3) && r.CacheControl == "no-cache" {
			// Slice 3, fetched once more, revalidated, joins the fill
			// of the new version it came from when that is still on its
			// way, else revalidates it: conditionally.
			if r.IfNoneMatch != `"v2"` {
				t.Errorf("slice 3 refetched with If-None-Match %q", r.IfNoneMatch)
			}
			continue
		}
		got[r.Range+" "+r.CacheControl]++
	}
	want := map[string]int{
		sliceRange(s, 3) + " ":         1, // fetched ahead: new
		sliceRange(s, 0) + " no-cache": 1, // the first slice revalidated
	}
	for _, i := range []int64{1, 2, 4, 5, 6, 7} {
		want[sliceRange(s, i)+" "] = 1
	}
	if !maps.Equal(got, want) {
		t.Errorf("origin got %v\nwant %v", got, want)
	}
}

// TestSlicePurgeRemovesEverySlice: purging the URL removes all its
// slices, under either scheme, and so does an unsafe request's
// invalidation of it.
func TestSlicePurgeRemovesEverySlice(t *testing.T) {
	const s, size = 64 << 10, 10 * (64 << 10)
	e := newSliceEnv(t, s)
	e.lo.Set("/p", cdntest.LargeObject{Size: size, Version: "v1", CacheControl: "max-age=600"})
	e.lo.Set("/other", cdntest.LargeObject{Size: 2 * s, Version: "v1", CacheControl: "max-age=600"})
	fill := func() {
		for _, p := range []string{"/p", "/other"} {
			resp := e.fetch("GET", p)
			wantStatus(t, resp, http.StatusOK)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		e.waitStored(12)
	}
	fill()
	n, err := e.edge.Purge(edge.Purge{URLs: []string{"https://" + testHost + "/p"}})
	if err != nil || n != 10 {
		t.Fatalf("purge removed %d entries (%v), want the 10 slices", n, err)
	}
	e.waitStored(2) // /other's slices stay
	before := len(e.lo.Requests())
	resp := e.fetch("GET", "/p")
	wantCS(t, resp, "fwd=uri-miss")
	wantBody(t, resp, "v1", 0, size)
	wantEachSliceOnce(t, requestsSince(e.lo, before), "/p", s, size)

	// An unsafe method on the URL invalidates it (RFC 9111 §4.4).
	e.waitStored(12)
	e.lo.Set("/p", cdntest.LargeObject{Size: size, Version: "v1", CacheControl: "max-age=600"})
	req, _ := http.NewRequest("POST", e.base+"/p", strings.NewReader("x"))
	req.Host = testHost
	resp, err = e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	e.waitStored(2)
}

// TestSliceOriginIgnoringRange: an origin that answers a slice's Range
// with a 200 and the whole body is served through (the client's range
// cut from it), stored under the first slice's key when it fits
// max_object_bytes, and costs one origin request per client request
// when it does not: never two.
func TestSliceOriginIgnoringRange(t *testing.T) {
	const s = 64 << 10
	e := newSliceEnv(t, s, func(c *edge.Config) { c.Cache.MaxObjectBytes = 1 << 20 })
	e.lo.Set("/small", cdntest.LargeObject{Size: 300_000, Version: "v1", CacheControl: "max-age=600", IgnoreRange: true})
	e.lo.Set("/large", cdntest.LargeObject{Size: 3 << 20, Version: "v1", CacheControl: "max-age=600", IgnoreRange: true})

	resp := e.fetch("GET", "/small")
	wantStatus(t, resp, http.StatusOK)
	wantBody(t, resp, "v1", 0, 300_000)
	// Stored under slice 0's key: a range that starts there is a hit.
	resp = e.fetch("GET", "/small", "Range", "bytes=1000-1099")
	wantStatus(t, resp, http.StatusPartialContent)
	wantCS(t, resp, "hit")
	wantBody(t, resp, "v1", 1000, 100)
	// One that starts in another slice asks for that slice; the 200 is
	// served through, not kept once more.
	for range 2 {
		resp = e.fetch("GET", "/small", "Range", "bytes=100000-100099")
		wantStatus(t, resp, http.StatusPartialContent)
		wantBody(t, resp, "v1", 100000, 100)
	}
	if got := rangeCounts(e.lo.Requests(), "/small"); got[sliceRange(s, 0)] != 1 || got[sliceRange(s, 1)] != 2 || len(got) != 2 {
		t.Errorf("/small: the origin got %v", got)
	}
	if n, _, _ := e.edge.StoreStats(); n != 1 {
		t.Errorf("%d entries stored", n)
	}

	for i := range 3 {
		resp = e.fetch("GET", "/large", "Range", "bytes=2000000-2000999")
		wantStatus(t, resp, http.StatusPartialContent)
		wantBody(t, resp, "v1", 2000000, 1000)
		if got := rangeCounts(e.lo.Requests(), "/large"); got[sliceRange(s, 30)] != i+1 || len(got) != 1 {
			t.Fatalf("after %d range requests the origin got %v", i+1, got)
		}
	}
	resp = e.fetch("GET", "/large")
	wantStatus(t, resp, http.StatusOK)
	wantBody(t, resp, "v1", 0, 3<<20)
}

// TestSliceEmptyObject: the origin answers slice 0 of an empty object
// with 416 (bytes */0); the client, who asked for the whole object,
// gets a 200 with no body.
func TestSliceEmptyObject(t *testing.T) {
	e := newSliceEnv(t, 64<<10)
	e.lo.Set("/empty", cdntest.LargeObject{Size: 0, Version: "v1", CacheControl: "max-age=600"})
	resp := e.fetch("GET", "/empty")
	wantStatus(t, resp, http.StatusOK)
	wantBody(t, resp, "v1", 0, 0)
	resp = e.fetch("GET", "/empty", "Range", "bytes=0-10")
	wantStatus(t, resp, http.StatusRequestedRangeNotSatisfiable)
	resp.Body.Close()
}

// TestSliceLyingOrigin: an origin whose 206 is not the range asked for
// (another range, another length) is not stored, and the client gets a
// clear 502 rather than the wrong bytes.
func TestSliceLyingOrigin(t *testing.T) {
	for _, cr := range []string{"bytes 0-99/1000", "bytes 0-65535/*", "bytes 5-65540/1000000"} {
		t.Run(cr, func(t *testing.T) {
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=600")
				w.Header().Set("Content-Range", cr)
				w.WriteHeader(http.StatusPartialContent)
				io.WriteString(w, strings.Repeat("x", 100))
			}, func(c *edge.Config) { c.Sites[0].SliceBytes = 64 << 10 })
			for range 2 {
				resp, _ := e.get("/lie")
				wantStatus(t, resp, http.StatusBadGateway)
			}
			if n, _, _ := e.edge.StoreStats(); n != 0 || e.origin.count("/lie") != 2 {
				t.Errorf("%d stored, %d origin requests", n, e.origin.count("/lie"))
			}
		})
	}
}

// TestSliceClientLeavingStopsTheChain: a client asks a 100 GiB object
// whole, reads a few slices and leaves: the slices it no longer waits for
// are called off, and the origin is asked nothing more.
func TestSliceClientLeavingStopsTheChain(t *testing.T) {
	const s = 1 << 20
	e := newSliceEnv(t, s, func(c *edge.Config) { c.Cache.FinishAbandoned = 1 })
	e.lo.Set("/huge", cdntest.LargeObject{Size: 100 << 30, Version: "v1", CacheControl: "max-age=600"})
	resp := e.fetch("GET", "/huge", "Range", "bytes=0-")
	wantStatus(t, resp, http.StatusPartialContent)
	if _, err := io.CopyN(io.Discard, resp.Body, 3*s+s/2); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	sent, asked := e.afterLeaving(0)
	// What the edge sent (the client read 3.5 slices; socket buffers
	// hold more) spans sent/s slices; one more was being sent, one was
	// fetched ahead: no more.
	if max := int(sent)/s + 2; asked > max {
		t.Errorf("the origin got %d requests for a client that was sent %.0f bytes (%d slices at most)", asked, sent, max)
	}
	if got := e.lo.BodyBytes(); got > int64(asked)*s {
		t.Errorf("the origin sent %d bytes for %d slices", got, asked)
	}
}

// afterLeaving waits until a client that left early costs nothing more:
// the edge has booked its answer (the body bytes it wrote, which socket
// buffers took beyond what the client read) and the origin is asked
// nothing more. It returns the bytes written since bytesBefore (the
// body bytes counter then) and the origin's requests.
func (e *sliceEnv) afterLeaving(bytesBefore float64) (sent float64, asked int) {
	e.t.Helper()
	e.client.Transport.(*http.Transport).CloseIdleConnections()
	last, stable := -1, 0
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		sent = e.counter("meridian_edge_response_body_bytes_total") - bytesBefore
		n := len(e.lo.Requests())
		if n == last && sent > 0 {
			stable++
		} else {
			last, stable = n, 0
		}
		if stable == 20 {
			return sent, n
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the origin is still being asked (%d requests), or the answer was not booked", n)
		}
	}
}

// TestSliceHostileRanges: many ranges, overlapping ranges and ranges far
// apart are bounded: more than byterange.MaxRanges is served whole (the
// client reads what it wants), overlapping ones are coalesced, and the
// slices fetched are only those holding bytes asked for.
func TestSliceHostileRanges(t *testing.T) {
	const s, size = 64 << 10, 1 << 30
	e := newSliceEnv(t, s)
	e.lo.Set("/r", cdntest.LargeObject{Size: size, Version: "v1", CacheControl: "max-age=600"})

	// 16 ranges one byte long, far apart: 16 slices, no more.
	var specs []string
	for i := range 16 {
		off := i * (size / 16)
		specs = append(specs, fmt.Sprintf("%d-%d", off, off))
	}
	field := "bytes=" + strings.Join(specs, ",")
	resp := e.fetch("GET", "/r", "Range", field)
	wantStatus(t, resp, http.StatusPartialContent)
	if got := parts(t, resp.Header.Get("Content-Type"), readAll(t, resp)); len(got) != 16 {
		t.Errorf("%d parts", len(got))
	}
	if n := len(e.lo.Requests()); n != 16 {
		t.Errorf("16 one-byte ranges cost %d origin requests", n)
	}

	// The same byte a thousand times over: coalesced into one range.
	resp = e.fetch("GET", "/r", "Range", "bytes="+strings.Repeat("0-0,", 15)+"0-0")
	wantStatus(t, resp, http.StatusPartialContent)
	if resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 0-0/%d", size) {
		t.Errorf("Content-Range %q", resp.Header.Get("Content-Range"))
	}
	wantBody(t, resp, "v1", 0, 1)

	// Too many ranges: the field is ignored, the whole object streams;
	// a client that reads a little and leaves costs the slices the edge
	// could send it, and one more.
	e.lo.Reset()
	before := e.counter("meridian_edge_response_body_bytes_total")
	resp = e.fetch("GET", "/r", "Range", "bytes="+strings.Repeat("1-1,", 16)+"1-1")
	wantStatus(t, resp, http.StatusOK)
	if resp.ContentLength != size {
		t.Errorf("Content-Length %d", resp.ContentLength)
	}
	io.CopyN(io.Discard, resp.Body, 2*s)
	resp.Body.Close()
	sent, asked := e.afterLeaving(before)
	if max := int(sent)/s + 2; asked > max {
		t.Errorf("a whole answer of which %.0f bytes were sent cost %d origin requests (%d slices at most)", sent, asked, max)
	}
}

// TestSliceLimitsAdmitOnce: under per-client limits, a sliced download
// of many slices is one request, as it would be unsliced.
func TestSliceLimitsAdmitOnce(t *testing.T) {
	const s, size = 64 << 10, 20 * (64 << 10)
	e := newSliceEnv(t, s, func(c *edge.Config) {
		c.Sites[0].Limits.RequestsPerSecond = 1
		c.Sites[0].Limits.Burst = 1
	})
	e.lo.Set("/l", cdntest.LargeObject{Size: size, Version: "v1", CacheControl: "max-age=600"})
	resp := e.fetch("GET", "/l")
	wantStatus(t, resp, http.StatusOK)
	wantBody(t, resp, "v1", 0, size)
	// The client's one token is spent: another miss is refused.
	e.lo.Set("/m", cdntest.LargeObject{Size: 10, Version: "v1", CacheControl: "max-age=600"})
	resp = e.fetch("GET", "/m")
	wantStatus(t, resp, http.StatusTooManyRequests)
	resp.Body.Close()
	// Hits are not limited.
	resp = e.fetch("GET", "/l")
	wantStatus(t, resp, http.StatusOK)
	wantBody(t, resp, "v1", 0, size)
}

func TestSliceConfig(t *testing.T) {
	base := func() edge.Config {
		return edge.Config{Sites: []edge.SiteConfig{{Hosts: []string{"a.test"}, Origin: "http://127.0.0.1:1"}}}
	}
	for _, tc := range []struct {
		bytes int64
		err   string
	}{
		{0, ""},
		{64 << 10, ""},
		{8 << 20, ""},
		{-1, "sites[0].slice_bytes: negative"},
		{1000, "sites[0].slice_bytes: 1000 is below the minimum"},
		{8<<20 + 1, "sites[0].slice_bytes: 8388609 exceeds cache.max_object_bytes"},
	} {
		c := base()
		c.Sites[0].SliceBytes = tc.bytes
		err := c.WithDefaults().Validate()
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("slice_bytes %d: %v, want %q", tc.bytes, err, tc.err)
		}
	}
	// Slices are ranges of the identity body: a sliced site does not
	// compress, and says so rather than ignore the setting.
	c := base()
	c.Sites[0].SliceBytes = 2 << 20
	c.Sites[0].Compression.Enabled = true
	if err := c.WithDefaults().Validate(); err == nil || !strings.Contains(err.Error(), "sites[0].slice_bytes: not with compression.enabled") {
		t.Errorf("slicing and compression: %v", err)
	}
	c, err := edge.ParseConfig([]byte("sites: [{hosts: [a.test], origin: 'http://127.0.0.1:1', slice_bytes: 2097152}]"))
	if err != nil || c.Sites[0].SliceBytes != 2<<20 {
		t.Errorf("parsed %d, %v", c.Sites[0].SliceBytes, err)
	}
}
