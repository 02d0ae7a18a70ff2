package edge_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/meridiancdn/meridian/edge"
)

// sizedUpstream answers /<kind>/<size>/<name> with objectBody(path, size),
// fresh for ten minutes; kind "notype" sends no Content-Type.
type sizedUpstream struct{ calls atomic.Int64 }

func (u *sizedUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	u.calls.Add(1)
	parts := strings.Split(r.URL.Path, "/")
	size, _ := strconv.Atoi(parts[2])
	hdr := http.Header{"Cache-Control": {"max-age=600"}, "Etag": {`"` + parts[3] + `"`}}
	if parts[1] != "notype" {
		hdr.Set("Content-Type", "application/octet-stream")
	}
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: hdr,
		Body: io.NopCloser(strings.NewReader(objectBody(r.URL.Path, size))), Request: r, ContentLength: int64(size)}, nil
}

// The hit contract serves entries of the disk tier too: LookupHit finds
// them, the body comes from the file (read behind the header for a small
// one, written out for a large one), and the answer is what ServeHTTP
// writes for the same hit, but for Date. A body without Content-Type
// (which net/http sniffs) is left to ServeHTTP.
func TestHitContractFromDisk(t *testing.T) {
	up := &sizedUpstream{}
	cfg := edge.Config{Sites: []edge.SiteConfig{{Hosts: []string{testHost}, Origin: "http://127.0.0.1:1"}}}
	cfg.Cache.MaxBytes = 512 << 10
	cfg.Cache.MaxObjectBytes = 256 << 10
	cfg.Cache.MaxInflightBytes = 8 << 20
	cfg.Cache.Disk = edge.DiskConfig{Path: t.TempDir(), MaxBytes: 64 << 20}
	h, err := edge.New(cfg, edge.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Upstream: func(edge.SiteConfig) http.RoundTripper { return up }})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	get := func(method, path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, "http://"+testHost+path, nil))
		return w
	}
	paths := []string{"/obj/5000/small", "/obj/204800/large", "/obj/0/empty", "/notype/5000/sniffed"}
	for _, p := range paths {
		if w := get("GET", p); w.Code != 200 {
			t.Fatalf("%s: %d", p, w.Code)
		}
	}
	for i := range 40 { // pushes the first ones out of memory, onto disk
		get("GET", fmt.Sprintf("/obj/40000/fill%d", i))
	}
	eventually(t, "the first objects written to disk", func() bool {
		st, _ := h.DiskStats()
		return st.Objects >= 20
	})
	fills := up.calls.Load()

	var x edge.Hit
	dateLine := func() []byte { return []byte("Date: Sat, 01 Jan 2000 00:00:00 GMT\r\n") }
	for _, p := range paths[:3] {
		name := p[strings.LastIndexByte(p, '/')+1:]
		want := get("GET", p)
		req := edge.HitRequest{Host: []byte(testHost), Target: []byte(p), Remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4711}}
		if !h.LookupHit(req, &x) {
			t.Fatalf("%s: no hit", p)
		}
		if !x.BodyOnDisk() || x.Body() != nil || x.BodySize() != int64(want.Body.Len()) {
			t.Fatalf("%s: not a hit on disk (on disk %v, size %d)", p, x.BodyOnDisk(), x.BodySize())
		}
		wire := append(x.AppendHead(nil, dateLine), "\r\n"...)
		var sent int64
		if name == "large" {
			var buf bytes.Buffer
			sent, err = x.WriteBody(&buf)
			wire = append(wire, buf.Bytes()...)
		} else {
			n := len(wire)
			wire, err = x.AppendBody(wire)
			sent = int64(len(wire) - n)
		}
		h.Delivered(&x, int(sent))
		if err != nil || sent != int64(want.Body.Len()) {
			t.Fatalf("%s: sent %d: %v", p, sent, err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(wire)), nil)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want.Code || !bytes.Equal(body, want.Body.Bytes()) || string(body) != objectBody(p, len(body)) {
			t.Fatalf("%s: hit %d (%d bytes), ServeHTTP %d (%d bytes)", p, resp.StatusCode, len(body), want.Code, want.Body.Len())
		}
		wh := want.Result().Header
		for _, hd := range []http.Header{resp.Header, wh} {
			hd.Del("Date")
		}
		for k := range wh {
			if resp.Header.Get(k) != wh.Get(k) {
				t.Errorf("%s %s: hit %q, ServeHTTP %q", p, k, resp.Header[k], wh[k])
			}
		}
		for k := range resp.Header {
			if _, ok := wh[k]; !ok {
				t.Errorf("%s %s: only the hit has it (%q)", p, k, resp.Header[k])
			}
		}

		// A HEAD is a hit with no body to send.
		req.Head = true
		if !h.LookupHit(req, &x) || x.BodyOnDisk() || x.BodySize() != 0 {
			t.Fatalf("%s: HEAD is no bodiless hit", p)
		}
		h.Delivered(&x, 0)
	}
	sniffed := edge.HitRequest{Host: []byte(testHost), Target: []byte(paths[3])}
	if h.LookupHit(sniffed, &x) {
		t.Fatal("a body on disk without Content-Type was a contract hit")
	}
	if w := get("GET", paths[3]); w.Code != 200 || w.Body.String() != objectBody(paths[3], 5000) {
		t.Fatalf("object without Content-Type from disk: %d, %d bytes", w.Code, w.Body.Len())
	}
	if n := up.calls.Load(); n != fills {
		t.Fatalf("the origin was asked %d more times", n-fills)
	}
}
