package listen

import (
	"net/http"
	"net/url"
	"reflect"
	"testing"

	"github.com/meridiancdn/meridian/internal/benchcpu"
)

// FuzzParseOriginForm: where parseOriginForm builds a URL, it is the one
// url.ParseRequestURI makes of the same target (every field, by
// reflect.DeepEqual), and ParseRequestURI does not refuse the target;
// where it does not, it leaves the URL untouched. The seed corpus
// (testdata/fuzz/FuzzParseOriginForm) has '%', '#', '?' ("/a?", "/a??",
// "?"), "//x", "*", the empty target, absolute-form, non-ASCII, control
// bytes, ';' and the bytes net/url escapes in a path.
func FuzzParseOriginForm(f *testing.F) {
	f.Add("/miss/m1-1/00001?size=1024&cc=max-age%3D3600")
	f.Fuzz(func(t *testing.T, target string) {
		want, err := url.ParseRequestURI(target)
		var got url.URL
		if !parseOriginForm(target, &got) {
			if got != (url.URL{}) {
				t.Fatalf("%q: declined but wrote %#v", target, got)
			}
			return
		}
		if err != nil {
			t.Fatalf("%q: built %#v; ParseRequestURI refuses it: %v", target, got, err)
		}
		if !reflect.DeepEqual(&got, want) {
			t.Fatalf("%q: built %#v; ParseRequestURI %#v", target, got, *want)
		}
	})
}

// TestParseOriginFormTakesCommonTargets: the targets a miss usually has
// are built here, not left to url.ParseRequestURI (else the fuzz test
// above would pass with a parseOriginForm that declines everything).
func TestParseOriginFormTakesCommonTargets(t *testing.T) {
	for _, target := range []string{
		"/", "/obj", "/miss/m1-123/00001?size=1024&cc=max-age%3D3600", "/a?", "/a??", "//x/y?z",
		"/a;b=1", "/caf\u00e9", "/a!b", "/a?b c%zz\u00e9",
	} {
		var got url.URL
		if !parseOriginForm(target, &got) {
			t.Errorf("%q declined", target)
			continue
		}
		want, err := url.ParseRequestURI(target)
		if err != nil || !reflect.DeepEqual(&got, want) {
			t.Errorf("%q: built %#v; ParseRequestURI %#v, %v", target, got, want, err)
		}
	}
	for _, target := range []string{"", "*", "http://h/p", "/a%20b", "/a\x00", "/a?\x7f", "a/b"} {
		if parseOriginForm(target, new(url.URL)) {
			t.Errorf("%q built; ParseRequestURI's to make", target)
		}
	}
}

// TestPathByteAsNetURL: pathByte holds exactly the bytes whose one-byte
// path net/url keeps as it is (no RawPath), for every byte
// parseOriginForm lets into a path.
func TestPathByteAsNetURL(t *testing.T) {
	for c := 0; c < 256; c++ {
		if c < ' ' || c == 0x7f || c == '%' || c == '?' {
			continue
		}
		u, err := url.ParseRequestURI("/" + string([]byte{byte(c)}))
		if err != nil {
			t.Fatalf("%#x: %v", c, err)
		}
		if kept := u.RawPath == ""; kept != pathByte[c] {
			t.Errorf("%q: pathByte %v, net/url keeps it %v", byte(c), pathByte[c], kept)
		}
	}
}

// BenchmarkNewRequest builds a miss's request as the all-miss benchmark's
// look (wrk's bench.lua): its context, then newRequest.
func BenchmarkNewRequest(b *testing.B) {
	p := []byte("GET /miss/m1-1234567/000042?size=1024&cc=max-age%3D3600 HTTP/1.1\r\nHost: bench.test\r\n\r\n")
	c := &fastConn{f: &fastFront{inner: &http.Server{}}, nc: fakeAddrConn{}}
	b.ReportAllocs()
	cpu := benchcpu.Start()
	defer cpu.Report(b)
	for b.Loop() {
		var req request
		if parseHead(p, &req) != headDone {
			b.Fatal("not parsed")
		}
		if c.newRequest(p, &req, newReqContext(c.missContext())) == nil {
			b.Fatal("no request")
		}
	}
}
