package origin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/internal/poll"
)

var demoNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// newDemo starts a Demo on 127.0.0.1 with a fixed clock and returns it with a
// client that does not follow redirects.
func newDemo(t *testing.T) (*Demo, *httptest.Server, *http.Client) {
	t.Helper()
	d := NewDemo(func() time.Time { return demoNow })
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	t.Cleanup(d.Close) // runs first: releases hanging handlers
	c := srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return d, srv, c
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, c *http.Client, method, u string, hdr map[string]string, body io.Reader) reply {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, u, err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

func get(t *testing.T, c *http.Client, u string) reply {
	t.Helper()
	return do(t, c, http.MethodGet, u, nil, nil)
}

func TestDemoBodySize(t *testing.T) {
	_, srv, c := newDemo(t)
	for _, tc := range []struct {
		query string
		path  string
		size  int64
	}{
		{"", "/a", 1024},
		{"size=0", "/a", 0},
		{"size=1", "/x/y", 1},
		{"size=7", "/", 7},
		{"size=100003", "/big/object.bin", 100003},
		{"size=1024&bodydelay=1ms", "/slow", 1024},
	} {
		t.Run(tc.path+"?"+tc.query, func(t *testing.T) {
			r := get(t, c, srv.URL+tc.path+"?"+tc.query)
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if !bytes.Equal(r.body, DemoBody(tc.path, tc.size)) {
				t.Fatalf("body (%d bytes) differs from DemoBody(%q, %d)", len(r.body), tc.path, tc.size)
			}
			if got := r.header.Get("Content-Length"); got != strconv.FormatInt(tc.size, 10) {
				t.Errorf("Content-Length %q, want %d", got, tc.size)
			}
		})
	}
	if a, b := DemoBody("/a", 100), DemoBody("/b", 100); bytes.Equal(a, b) {
		t.Error("bodies of different paths are equal")
	}
	if a, b := DemoBody("/a", 100), DemoBody("/a", 101); bytes.Equal(a, b[:100]) {
		t.Error("bodies of different sizes share a prefix")
	}
}

func TestDemoBadParams(t *testing.T) {
	_, srv, c := newDemo(t)
	for _, q := range []string{
		"size=-1", "size=abc", "size=" + strconv.Itoa(DemoMaxSize+1),
		"status=99", "status=600", "status=x", "status=103",
		"delay=forever", "delay=-1s", "bodydelay=11m",
		"expires=soon", "etag=yes", "fail=explode",
		"cc=" + url.QueryEscape("a\r\nX-Evil: 1"),
	} {
		t.Run(q, func(t *testing.T) {
			r := get(t, c, srv.URL+"/p?"+q)
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", r.status)
			}
			name, _, _ := strings.Cut(q, "=")
			if !strings.Contains(string(r.body), name+"=") {
				t.Errorf("error %q does not name %s", r.body, name)
			}
		})
	}
	// Unknown parameters are ignored, so cache-busting works.
	if r := get(t, c, srv.URL+"/p?bust=123&size=3"); r.status != 200 || len(r.body) != 3 {
		t.Errorf("unknown parameter: status %d, %d bytes", r.status, len(r.body))
	}
}

func TestDemoHeaders(t *testing.T) {
	_, srv, c := newDemo(t)
	q := url.Values{
		"cc":      {"public, max-age=60"},
		"cdncc":   {"max-age=600"},
		"expires": {"90"},
		"vary":    {"Accept-Language"},
		"sk":      {"a b c"},
	}
	r := do(t, c, "GET", srv.URL+"/h?"+q.Encode(), map[string]string{"Accept-Language": "fr"}, nil)
	want := map[string]string{
		"Cache-Control":     "public, max-age=60",
		"Cdn-Cache-Control": "max-age=600",
		"Expires":           demoNow.Add(90 * time.Second).Format(http.TimeFormat),
		"Date":              demoNow.Format(http.TimeFormat),
		"Vary":              "Accept-Language",
		"X-Demo-Varied":     "fr",
		"Surrogate-Key":     "a b c",
		"X-Demo-Count":      "1",
	}
	for k, v := range want {
		if got := r.header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	// Absent parameters send no header.
	r = get(t, c, srv.URL+"/plain")
	for _, k := range []string{"Cache-Control", "CDN-Cache-Control", "Expires", "Vary", "Surrogate-Key", "ETag", "Last-Modified"} {
		if v := r.header.Get(k); v != "" {
			t.Errorf("%s sent without asking: %q", k, v)
		}
	}
	// Negative expires is in the past.
	r = get(t, c, srv.URL+"/h?expires=-30")
	if got, want := r.header.Get("Expires"), demoNow.Add(-30*time.Second).Format(http.TimeFormat); got != want {
		t.Errorf("Expires %q, want %q", got, want)
	}
}

func TestDemoStatus(t *testing.T) {
	_, srv, c := newDemo(t)
	for _, tc := range []struct {
		query    string
		status   int
		location string
		bodyLen  int
	}{
		{"status=404&size=10", 404, "", 10},
		{"status=500", 500, "", 1024},
		{"status=503&size=0", 503, "", 0},
		{"status=302&location=" + url.QueryEscape("/elsewhere?x=1"), 302, "/elsewhere?x=1", 1024},
		{"status=204", 204, "", 0},
		{"status=304", 304, "", 0},
	} {
		t.Run(tc.query, func(t *testing.T) {
			r := get(t, c, srv.URL+"/s?"+tc.query)
			if r.status != tc.status || r.header.Get("Location") != tc.location || len(r.body) != tc.bodyLen {
				t.Errorf("got %d Location=%q %d bytes, want %d %q %d bytes",
					r.status, r.header.Get("Location"), len(r.body), tc.status, tc.location, tc.bodyLen)
			}
		})
	}
}

func TestDemoHead(t *testing.T) {
	_, srv, c := newDemo(t)
	r := do(t, c, http.MethodHead, srv.URL+"/h?size=5000&etag=1", nil, nil)
	if r.status != 200 || r.header.Get("Content-Length") != "5000" || len(r.body) != 0 || r.header.Get("ETag") == "" {
		t.Errorf("HEAD: %d, Content-Length %q, %d body bytes, ETag %q",
			r.status, r.header.Get("Content-Length"), len(r.body), r.header.Get("ETag"))
	}
}

func TestDemoConditional(t *testing.T) {
	d, srv, c := newDemo(t)
	base := srv.URL + "/c?etag=1&lm=1&size=100"
	first := get(t, c, base)
	etag, lm := first.header.Get("ETag"), first.header.Get("Last-Modified")
	if !strings.HasPrefix(etag, `"`) || lm == "" {
		t.Fatalf("ETag %q Last-Modified %q", etag, lm)
	}
	lmTime, err := http.ParseTime(lm)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		hdr    map[string]string
		status int
	}{
		{"inm same", map[string]string{"If-None-Match": etag}, 304},
		{"inm weak", map[string]string{"If-None-Match": "W/" + etag}, 304},
		{"inm list", map[string]string{"If-None-Match": `"x", "a,b", ` + etag}, 304},
		{"inm star", map[string]string{"If-None-Match": "*"}, 304},
		{"inm other", map[string]string{"If-None-Match": `"nope"`}, 200},
		{"ims equal", map[string]string{"If-Modified-Since": lm}, 304},
		{"ims later", map[string]string{"If-Modified-Since": lmTime.Add(time.Hour).Format(http.TimeFormat)}, 304},
		{"ims earlier", map[string]string{"If-Modified-Since": lmTime.Add(-time.Second).Format(http.TimeFormat)}, 200},
		{"ims garbage", map[string]string{"If-Modified-Since": "yesterday"}, 200},
		{"inm overrides ims", map[string]string{"If-None-Match": `"nope"`, "If-Modified-Since": lm}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, c, "GET", base, tc.hdr, nil)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d", r.status, tc.status)
			}
			if r.header.Get("ETag") != etag {
				t.Errorf("ETag %q, want %q", r.header.Get("ETag"), etag)
			}
			if tc.status == 304 && len(r.body) != 0 {
				t.Errorf("304 with %d body bytes", len(r.body))
			}
		})
	}
	if got := d.RequestsFor("/c?etag=1&lm=1&size=100"); got != 11 {
		t.Errorf("RequestsFor = %d, want 11 (304s count)", got)
	}

	// A new version has a new ETag and a later Last-Modified; the old ETag
	// no longer matches.
	v2 := do(t, c, "GET", base+"&v=2", map[string]string{"If-None-Match": etag}, nil)
	if v2.status != 200 || v2.header.Get("ETag") == etag {
		t.Errorf("v=2: status %d ETag %q (old %q)", v2.status, v2.header.Get("ETag"), etag)
	}
	if t2, _ := http.ParseTime(v2.header.Get("Last-Modified")); !t2.After(lmTime) {
		t.Errorf("v=2 Last-Modified %v not after %v", t2, lmTime)
	}
	// Same path and version, other size: other ETag.
	if r := get(t, c, srv.URL+"/c?etag=1&size=101"); r.header.Get("ETag") == etag {
		t.Error("ETag does not depend on size")
	}
	// Conditionals only apply to GET/HEAD 200s.
	if r := do(t, c, "GET", base+"&status=404", map[string]string{"If-None-Match": etag}, nil); r.status != 404 {
		t.Errorf("status=404 with matching If-None-Match: %d", r.status)
	}
}

func TestDemoLastModifiedNotInFuture(t *testing.T) {
	d := NewDemo(func() time.Time { return time.Unix(demoEpochUnix, 0).Add(-time.Hour) })
	srv := httptest.NewServer(d)
	defer srv.Close()
	r := get(t, srv.Client(), srv.URL+"/x?lm=1&v=1000")
	lm, err := http.ParseTime(r.header.Get("Last-Modified"))
	if err != nil || lm.After(time.Unix(demoEpochUnix, 0).Add(-time.Hour)) {
		t.Errorf("Last-Modified %v (%v) is after the clock", lm, err)
	}
}

func TestDemoEarlyHints(t *testing.T) {
	_, srv, c := newDemo(t)
	var hints []textproto.MIMEHeader
	var codes []int
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		codes, hints = append(codes, code), append(hints, h)
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", srv.URL+"/e?early=1&size=10", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if len(codes) != 1 || codes[0] != 103 || hints[0].Get("Link") != demoEarlyLink {
		t.Fatalf("1xx responses %v %v", codes, hints)
	}
	if resp.StatusCode != 200 {
		t.Errorf("final status %d", resp.StatusCode)
	}
}

func TestDemoEcho(t *testing.T) {
	_, srv, c := newDemo(t)
	body := []byte("hello, origin")
	sum := sha256.Sum256(body)
	for _, tc := range []struct {
		method, target string
		body           []byte
		status         int
	}{
		{"GET", "/e/a%2Fb?echo=1&x=%zz&y", nil, 200},
		{"POST", "/form?a=1", body, 200},
		{"PUT", "/obj?status=201", body, 201},
		{"DELETE", "/obj", nil, 200},
		{"OPTIONS", "/obj", nil, 200},
		{"PATCH", "/obj?status=409", body, 409},
	} {
		t.Run(tc.method+tc.target, func(t *testing.T) {
			r := do(t, c, tc.method, srv.URL+tc.target, map[string]string{"X-Test": "v1"}, bytes.NewReader(tc.body))
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			var e Echo
			if err := json.Unmarshal(r.body, &e); err != nil {
				t.Fatalf("echo %q: %v", r.body, err)
			}
			u, _ := url.Parse(tc.target)
			if e.Method != tc.method || e.Path != u.Path || e.RawQuery != u.RawQuery || e.RawPath != u.RawPath ||
				e.Header.Get("X-Test") != "v1" || e.BodyLength != int64(len(tc.body)) || e.Proto != "HTTP/1.1" {
				t.Errorf("echo %+v", e)
			}
			if len(tc.body) > 0 && e.BodySHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("body sha256 %s", e.BodySHA256)
			}
			if !strings.HasPrefix(e.Host, "127.0.0.1:") {
				t.Errorf("host %q", e.Host)
			}
		})
	}
}

func TestDemoStats(t *testing.T) {
	d, srv, c := newDemo(t)
	get(t, c, srv.URL+"/a")
	get(t, c, srv.URL+"/a")
	get(t, c, srv.URL+"/a?size=1&x")
	get(t, c, srv.URL+"/b%20c?status=500")
	get(t, c, srv.URL+"/healthz")
	r := get(t, c, srv.URL+"/_stats")
	var s DemoStats
	if err := json.Unmarshal(r.body, &s); err != nil {
		t.Fatalf("stats %q: %v", r.body, err)
	}
	want := map[string]int64{"/a": 2, "/a?size=1&x": 1, "/b%20c?status=500": 1}
	if s.Total != 4 || len(s.Requests) != len(want) {
		t.Fatalf("stats %+v, want total 4 and %v", s, want)
	}
	for k, v := range want {
		if s.Requests[k] != v || d.RequestsFor(k) != v {
			t.Errorf("%s: stats %d, RequestsFor %d, want %d", k, s.Requests[k], d.RequestsFor(k), v)
		}
	}
	if d.Requests() != 4 {
		t.Errorf("Requests() = %d", d.Requests())
	}
	if r := get(t, c, srv.URL+"/_stats/reset"); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET reset: %d", r.status)
	}
	if r := do(t, c, "POST", srv.URL+"/_stats/reset", nil, nil); r.status != http.StatusNoContent {
		t.Errorf("POST reset: %d", r.status)
	}
	if d.Requests() != 0 || d.RequestsFor("/a") != 0 {
		t.Errorf("after reset: %d, %d", d.Requests(), d.RequestsFor("/a"))
	}
	if r := get(t, c, srv.URL+"/a"); r.header.Get("X-Demo-Count") != "1" {
		t.Errorf("X-Demo-Count after reset %q", r.header.Get("X-Demo-Count"))
	}
}

// waitCount waits (bounded) until the demo has counted n requests for key.
func waitCount(t *testing.T, d *Demo, key string, n int64) {
	t.Helper()
	poll.Until(t, 5*time.Second, fmt.Sprintf("the demo counts %d requests for %s", n, key), func() bool { return d.RequestsFor(key) >= n })
}

// cancelWhenCounted sends GET target and cancels it once the demo has seen
// it; it returns the client's error.
func cancelWhenCounted(t *testing.T, d *Demo, c *http.Client, base, target string) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+target, nil)
		resp, err := c.Do(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	waitCount(t, d, target, 1)
	cancel()
	return <-errc
}

func TestDemoHangAndDelayObeyCancel(t *testing.T) {
	d, srv, c := newDemo(t)
	for _, target := range []string{"/h?fail=hang", "/d?delay=10m"} {
		if err := cancelWhenCounted(t, d, c, srv.URL, target); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: error %v, want context.Canceled", target, err)
		}
	}
	// A short delay just answers.
	if r := get(t, c, srv.URL+"/d?delay=1ms&size=3"); r.status != 200 || len(r.body) != 3 {
		t.Errorf("delay=1ms: %d, %d bytes", r.status, len(r.body))
	}
}

func TestDemoCloseReleasesHang(t *testing.T) {
	d, srv, c := newDemo(t)
	errc := make(chan error, 1)
	go func() {
		resp, err := c.Get(srv.URL + "/h?fail=hang")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitCount(t, d, "/h?fail=hang", 1)
	d.Close()
	if err := <-errc; err == nil {
		t.Error("hanging request answered after Close, want the connection closed")
	}
	d.Close() // twice is fine
}

func TestDemoBodyDelayStreams(t *testing.T) {
	_, srv, c := newDemo(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/s?size=1000&bodydelay=10m", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	half := make([]byte, 500)
	if _, err := io.ReadFull(resp.Body, half); err != nil {
		t.Fatalf("first half: %v", err)
	}
	if !bytes.Equal(half, DemoBody("/s", 1000)[:500]) {
		t.Error("first half differs")
	}
	cancel() // the second half would take ten minutes
}

func TestDemoFailures(t *testing.T) {
	_, srv, c := newDemo(t)
	t.Run("reset", func(t *testing.T) {
		_, err := c.Get(srv.URL + "/r?fail=reset")
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
			t.Errorf("error %v, want connection reset", err)
		}
	})
	t.Run("truncate", func(t *testing.T) {
		resp, err := c.Get(srv.URL + "/t?fail=truncate&size=1000")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.ContentLength != 1000 || len(b) != 500 || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("Content-Length %d, read %d bytes, error %v", resp.ContentLength, len(b), err)
		}
		if !bytes.Equal(b, DemoBody("/t", 1000)[:500]) {
			t.Error("truncated body is not the first half")
		}
	})
	t.Run("badstatus", func(t *testing.T) {
		_, err := c.Get(srv.URL + "/b?fail=badstatus")
		if err == nil || !strings.Contains(err.Error(), "malformed HTTP status code") {
			t.Errorf("error %v, want malformed status", err)
		}
	})
}

func TestDemoSetFailing(t *testing.T) {
	d, srv, c := newDemo(t)
	if err := d.SetFailing("bogus"); err == nil {
		t.Error("SetFailing(bogus) accepted")
	}
	if err := d.SetFailing("500"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/healthz", "/x"} {
		if r := get(t, c, srv.URL+p); r.status != 500 {
			t.Errorf("%s while failing: %d", p, r.status)
		}
	}
	if r := get(t, c, srv.URL+"/_stats"); r.status != 200 {
		t.Errorf("/_stats while failing: %d", r.status)
	}
	d.SetFailing("reset")
	if _, err := c.Get(srv.URL + "/x"); err == nil {
		t.Error("reset mode answered")
	}
	d.SetFailing("hang")
	if err := cancelWhenCounted(t, d, c, srv.URL, "/y"); !errors.Is(err, context.Canceled) {
		t.Errorf("hang mode: %v", err)
	}
	d.SetFailing("")
	if r := get(t, c, srv.URL+"/healthz"); r.status != 200 {
		t.Errorf("/healthz after recovery: %d", r.status)
	}
	// The client may replay the GET that met a reset on a reused connection.
	if got := d.RequestsFor("/x"); got < 2 {
		t.Errorf("failed requests counted %d, want at least 2", got)
	}
}

func TestWriteDemoBodySplit(t *testing.T) {
	for _, size := range []int64{0, 1, 5, 64 << 10, 100_000} {
		full := DemoBody("/p/q", size)
		for _, split := range []int64{0, 1, size / 3, size / 2, size} {
			if split > size {
				continue
			}
			var b bytes.Buffer
			writeDemoBody(&b, "/p/q", size, 0, split)
			writeDemoBody(&b, "/p/q", size, split, size)
			if !bytes.Equal(b.Bytes(), full) {
				t.Errorf("size %d split %d differs", size, split)
			}
		}
	}
}

func FuzzDemoParams(f *testing.F) {
	for _, s := range []string{
		"", "size=10", "size=-1", "cc=max-age%3D60&etag=1&lm=1&v=3", "delay=1ms&bodydelay=2ms",
		"status=302&location=/x", "fail=truncate", "expires=-30", "echo=1&early=1", "size=%zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := url.ParseQuery(raw)
		p, err := parseDemoParams(q)
		if err != nil {
			return
		}
		if p.size < 0 || p.size > DemoMaxSize || p.status < 200 || p.status > 599 ||
			p.delay < 0 || p.delay > DemoMaxDelay || p.bodyDelay < 0 || p.bodyDelay > DemoMaxDelay {
			t.Fatalf("accepted out of range %+v", p)
		}
		for _, v := range []string{p.cc, p.cdncc, p.vary, p.sk, p.location, p.version} {
			if !validHeaderValue(v) {
				t.Fatalf("accepted header value %q", v)
			}
		}
	})
}

func FuzzETagMatch(f *testing.F) {
	for _, s := range [][2]string{
		{`"a"`, `"a"`}, {`W/"a"`, `"a"`}, {`"x", "a,b"`, `"a,b"`}, {"*", `"q"`}, {`"unterminated`, `"u"`}, {"", `"a"`},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, list, tag string) {
		etagMatch(list, tag)
		// A well-formed strong tag always matches itself, alone or last in a list.
		if strings.Count(tag, `"`) == 2 && strings.HasPrefix(tag, `"`) && strings.HasSuffix(tag, `"`) {
			if !etagMatch(tag, tag) || !etagMatch(`"zz", W/`+tag, tag) {
				t.Fatalf("%s does not match itself", tag)
			}
		}
	})
}
