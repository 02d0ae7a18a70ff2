package origin

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/meridiancdn/meridian/internal/benchcpu"
)

// requestLine is the request line writeRequest writes for u, and whether
// plainTarget lets u through; the old plainTarget's verdict and line (from
// url.URL.RequestURI, checked whole) come with it.
func requestLine(t *testing.T, u *url.URL) (got string, gotOK bool, want string, wantOK bool) {
	t.Helper()
	req := &http.Request{Method: http.MethodGet, URL: u, Host: "h.test", Header: http.Header{}}
	uri := u.RequestURI()
	wantOK = !strings.ContainsFunc(uri, func(r rune) bool { return r <= ' ' || r == 0x7f })
	want = "GET " + uri + " HTTP/1.1"
	_, target, gotOK := plainTarget(req)
	if !gotOK {
		return "", false, want, wantOK
	}
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	writeRequest(w, req, "h.test", target)
	w.Flush()
	got, _, _ = strings.Cut(buf.String(), "\r\n")
	return got, true, want, wantOK
}

// TestRequestLineAsRequestURI: the lean client writes the request target
// as url.URL.RequestURI composes it (Opaque, with its scheme when it
// starts with "//"; RawPath when it is a valid encoding of Path, else
// Path escaped; "/" for an empty path; '?' for ForceQuery or a query),
// and refuses it when RequestURI's string has a control byte, a blank or
// DEL, as before it was written in parts.
func TestRequestLineAsRequestURI(t *testing.T) {
	for _, u := range []*url.URL{
		{Path: "/obj", RawQuery: "size=1024&cc=max-age%3D3600"},
		{Path: ""},
		{Path: "", RawQuery: "q"},
		{Path: "", ForceQuery: true},
		{Path: "/a", ForceQuery: true},
		{Path: "/a", ForceQuery: true, RawQuery: "b"},
		{Path: "/a?", RawQuery: "?"},
		{Path: "*"},
		{Path: "/a b"},
		{Path: "/caf\u00e9#x"},
		{Path: "/a/b", RawPath: "/a%2Fb"},      // a valid RawPath, not Path's default escaping
		{Path: "/a/b", RawPath: "/a%2Fc"},      // RawPath not an encoding of Path: ignored
		{Path: "/a b", RawPath: "/a b"},        // RawPath invalid: ignored
		{Path: "/a\nb"},                        // escaped: %0A
		{Path: "/a", RawPath: "/a\r\nX: y"},    // invalid RawPath: ignored
		{Scheme: "http", Opaque: "//h.test/p"}, // scheme kept
		{Scheme: "http", Opaque: "/p", RawQuery: "q"},
		{Opaque: "//h.test/p"},                    // no scheme: ":" first, as RequestURI
		{Opaque: "x y"},                           // a blank: refused
		{Opaque: "/p\r\nX: y"},                    // a CRLF: refused
		{Path: "/p", RawQuery: "a b"},             // refused
		{Path: "/p", RawQuery: "a\r\nHost: evil"}, // refused
		{Path: "/p", RawQuery: "a\x7f"},           // refused
		{Path: "/p", RawQuery: "a\x00"},           // refused
		{Path: "/p", RawQuery: "\u00e9"},          // non-ASCII query: as it is
		{Scheme: "http", Host: "h.test", Path: "/p", RawQuery: "q", Fragment: "f"},
	} {
		got, gotOK, want, wantOK := requestLine(t, u)
		if gotOK != wantOK || (gotOK && got != want) {
			t.Errorf("%#v: wrote %q (%v); RequestURI %q (%v)", u, got, gotOK, want, wantOK)
		}
	}
}

// FuzzRequestTarget: for any URL fields, the lean client's request line
// and verdict are RequestURI's.
func FuzzRequestTarget(f *testing.F) {
	f.Add("", "", "/a", "", "q", false)
	f.Add("http", "//h/p", "", "", "", true)
	f.Add("", "", "/a/b", "/a%2Fb", "", true)
	f.Add("", "", "/a b", "/a b", "x y", false)
	f.Add("", "", "", "", "", true)
	f.Fuzz(func(t *testing.T, scheme, opaque, path, rawPath, rawQuery string, force bool) {
		u := &url.URL{Scheme: scheme, Opaque: opaque, Path: path, RawPath: rawPath, RawQuery: rawQuery, ForceQuery: force}
		got, gotOK, want, wantOK := requestLine(t, u)
		if gotOK != wantOK || (gotOK && got != want) {
			t.Fatalf("%#v: wrote %q (%v); RequestURI %q (%v)", u, got, gotOK, want, wantOK)
		}
	})
}

// BenchmarkRequestTarget: the lean client's check and write of a miss's
// request line and head (the all-miss benchmark's target).
func BenchmarkRequestTarget(b *testing.B) {
	u, err := url.ParseRequestURI("/miss/m1-1234567/000042?size=1024&cc=max-age%3D3600")
	if err != nil {
		b.Fatal(err)
	}
	req := &http.Request{Method: http.MethodGet, URL: u, Host: "bench.test", Header: http.Header{}}
	w := bufio.NewWriter(io.Discard)
	b.ReportAllocs()
	cpu := benchcpu.Start()
	defer cpu.Report(b)
	for b.Loop() {
		host, target, ok := plainTarget(req)
		if !ok {
			b.Fatal("refused")
		}
		writeRequest(w, req, host, target)
		w.Flush()
	}
}
