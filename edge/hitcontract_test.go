package edge_test

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/meridiancdn/meridian/edge"
)

// The hit contract as a front uses it (LookupHit, AppendHead, Body,
// Delivered) allocates nothing once the connection's Hit has seen the
// key, and writes what ServeHTTP answers for the same request: the same
// status, fields but Date, and body.
func TestHitContract(t *testing.T) {
	up := &countingUpstream{}
	h, err := edge.New(edge.Config{Sites: []edge.SiteConfig{{Hosts: []string{testHost}, Origin: "http://127.0.0.1:1"}}},
		edge.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Upstream: func(edge.SiteConfig) http.RoundTripper { return up }})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "http://"+testHost+"/obj?x=1", nil)) // fill
	want := httptest.NewRecorder()
	h.ServeHTTP(want, httptest.NewRequest("GET", "http://"+testHost+"/obj?x=1", nil))

	req := edge.HitRequest{Host: []byte("Site.Test:80"), Target: []byte("/obj?x=1"),
		Remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4711}}
	var x edge.Hit
	buf := make([]byte, 0, 4096)
	date := []byte("Date: Sat, 01 Jan 2000 00:00:00 GMT\r\n") // the upstream sends no Date
	dateLine := func() []byte { return date }
	var head, body []byte
	serve := func() {
		if !h.LookupHit(req, &x) {
			t.Fatal("no hit")
		}
		head = append(x.AppendHead(buf[:0], dateLine), "\r\n"...)
		body = x.Body()
		h.Delivered(&x, len(body))
	}
	serve()
	if n := testing.AllocsPerRun(200, serve); n != 0 {
		t.Fatalf("%v allocations per hit", n)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(append(head, body...))), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want.Code || string(got) != want.Body.String() {
		t.Fatalf("hit %d %q, ServeHTTP %d %q", resp.StatusCode, got, want.Code, want.Body.String())
	}
	resp.Header.Del("Date")
	wh := want.Result().Header
	wh.Del("Date")
	for k := range wh {
		if resp.Header.Get(k) != wh.Get(k) {
			t.Errorf("%s: hit %q, ServeHTTP %q", k, resp.Header[k], wh[k])
		}
	}
	for k := range resp.Header {
		if _, ok := wh[k]; !ok {
			t.Errorf("%s: only the hit has it (%q)", k, resp.Header[k])
		}
	}
	if up.calls.Load() != 1 {
		t.Fatalf("%d fills", up.calls.Load())
	}
	// A HEAD's answer has no body; a request that is no plain hit is none.
	req.Head = true
	if !h.LookupHit(req, &x) || x.Body() != nil {
		t.Fatal("HEAD: no hit, or a body")
	}
	h.Delivered(&x, 0)
	// A miss (the request goes on to ServeHTTP, which looks again)
	// allocates nothing here either, though its key is new each time.
	miss := []edge.HitRequest{
		{Host: []byte("site.test"), Target: []byte("/missing?a")},
		{Host: []byte("site.test"), Target: []byte("/missing?b")},
	}
	i := 0
	if n := testing.AllocsPerRun(200, func() {
		i++
		if h.LookupHit(miss[i%2], &x) {
			t.Fatal("a miss is a hit")
		}
	}); n != 0 {
		t.Errorf("%v allocations per miss", n)
	}
	// The hit is found again after the misses wrote their keys where
	// its key was derived.
	req.Head = false
	if !h.LookupHit(req, &x) {
		t.Fatal("no hit after misses")
	}
	h.Delivered(&x, len(x.Body()))
	for _, r := range []edge.HitRequest{
		{Host: []byte("other.test"), Target: []byte("/obj?x=1")},
		{Host: []byte("site.test"), Target: []byte("/missing")},
		{Host: []byte("site test"), Target: []byte("/obj?x=1")},
	} {
		if h.LookupHit(r, &x) {
			t.Errorf("%q %q: a hit", r.Host, r.Target)
		}
	}
}
