package edge_test

import (
	"bufio"
	"bytes"
	stdgzip "compress/gzip"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/compress"
)

// compressing turns the test site's compression on.
func compressing(c *edge.Config) { c.Sites[0].Compression.Enabled = true }

// page is a compressible body well above min_bytes.
var page = strings.Repeat("<p>Meridian compresses this paragraph once per coding.</p>\n", 1000)

// decodeBody decodes b of Content-Encoding ce with Go's decoders (the
// standard library's gzip; brotli and zstd from their packages).
func decodeBody(t *testing.T, ce string, b []byte) string {
	t.Helper()
	var r io.Reader
	switch ce {
	case "":
		return string(b)
	case "gzip":
		zr, err := stdgzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		r = zr
	case "br":
		r = brotli.NewReader(bytes.NewReader(b))
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	default:
		t.Fatalf("unexpected Content-Encoding %q", ce)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", ce, err)
	}
	return string(out)
}

func varies(resp *http.Response) bool {
	for _, v := range resp.Header.Values("Vary") {
		for item := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(item), "Accept-Encoding") {
				return true
			}
		}
	}
	return false
}

// TestCompressionVariants: each coding is compressed once, stored as its
// own variant and then served as a hit; Vary, ETag, conditionals and
// Range hold per variant; the origin is asked once per coding, for
// exactly that coding.
func TestCompressionVariants(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, strings.Join(r.Header.Values("Accept-Encoding"), "|"))
		mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Content-Length", fmt.Sprint(len(page)))
		io.WriteString(w, page)
	}, compressing)

	cases := []struct {
		ae, ce, etag string
	}{
		{"gzip, deflate, br, zstd", "br", `"v1-br"`}, // Chromium's
		{"gzip", "gzip", `"v1-gzip"`},
		{"zstd, gzip;q=0.5", "zstd", `"v1-zstd"`},
		{"", "", `"v1"`},
		{"br;q=0, gzip", "gzip", `"v1-gzip"`},
	}
	for round := range 2 {
		for _, tc := range cases {
			hdr := http.Header{}
			if tc.ae != "" {
				hdr.Set("Accept-Encoding", tc.ae)
			}
			resp, body := e.do("GET", "/page", hdr, nil)
			wantStatus(t, resp, 200)
			if got := resp.Header.Get("Content-Encoding"); got != tc.ce {
				t.Fatalf("AE %q: Content-Encoding %q, want %q", tc.ae, got, tc.ce)
			}
			if !varies(resp) {
				t.Fatalf("AE %q: Vary %q lacks Accept-Encoding", tc.ae, resp.Header.Values("Vary"))
			}
			if got := resp.Header.Get("ETag"); got != tc.etag {
				t.Fatalf("AE %q: ETag %s, want %s", tc.ae, got, tc.etag)
			}
			if got := decodeBody(t, tc.ce, []byte(body)); got != page {
				t.Fatalf("AE %q: decoded body differs (%d bytes)", tc.ae, len(got))
			}
			if tc.ce != "" && len(body) > len(page)/10 {
				t.Fatalf("AE %q: %d bytes for %d", tc.ae, len(body), len(page))
			}
			if round == 1 {
				wantCS(t, resp, "hit")
			}
		}
	}
	mu.Lock()
	got := strings.Join(asked, ",")
	mu.Unlock()
	if got != "br,gzip,zstd,identity" {
		t.Fatalf("origin was asked for %q, want one request per coding (br,gzip,zstd,identity)", got)
	}

	// Conditionals per variant.
	resp, _ := e.get("/page", "Accept-Encoding", "br", "If-None-Match", `"v1-br"`)
	wantStatus(t, resp, 304)
	if resp.Header.Get("ETag") != `"v1-br"` {
		t.Fatalf("304 ETag %q", resp.Header.Get("ETag"))
	}
	resp, _ = e.get("/page", "Accept-Encoding", "br", "If-None-Match", `"v1"`)
	wantStatus(t, resp, 200) // the identity variant's tag is not the br variant's
	resp, _ = e.get("/page", "If-None-Match", `"v1"`)
	wantStatus(t, resp, 304)

	// Range is served from the identity variant.
	resp, body := e.get("/page", "Accept-Encoding", "gzip, br", "Range", "bytes=10-109")
	wantStatus(t, resp, 206)
	if ce := resp.Header.Get("Content-Encoding"); ce != "" || body != page[10:110] {
		t.Fatalf("range: Content-Encoding %q, body %q", ce, body)
	}
	if n := e.origin.count("/page"); n != 4 {
		t.Fatalf("origin requests %d, want 4", n)
	}
}

// TestCompressionLeavesAlone: what must not be compressed is not, nor
// does it get variants.
func TestCompressionLeavesAlone(t *testing.T) {
	png := strings.Repeat("\x89PNG not really", 400)
	cases := []struct {
		path string
		h    http.HandlerFunc
		want string // the body the client must get
	}{
		{"/image.png", respond(200, png, "Content-Type", "image/png", "Cache-Control", "max-age=60"), png},
		{"/small.html", respond(200, "<p>tiny</p>", "Content-Type", "text/html", "Cache-Control", "max-age=60"), "<p>tiny</p>"},
		{"/nt.html", respond(200, page, "Content-Type", "text/html", "Cache-Control", "max-age=60, no-transform"), page},
		{"/unlisted", respond(200, page, "Content-Type", "application/x-custom", "Cache-Control", "max-age=60"), page},
		{"/404.html", respond(404, page, "Content-Type", "text/html", "Cache-Control", "max-age=60"), page},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			e := newEnv(t, tc.h, compressing)
			for range 2 {
				resp, body := e.get(tc.path, "Accept-Encoding", "gzip, br, zstd")
				if ce := resp.Header.Get("Content-Encoding"); ce != "" {
					t.Fatalf("Content-Encoding %q", ce)
				}
				if body != tc.want {
					t.Fatalf("body changed: %d bytes", len(body))
				}
				if varies(resp) {
					t.Fatalf("Vary: %q for a body that does not vary", resp.Header.Values("Vary"))
				}
			}
			// One entry for every client: an identity client hits it.
			resp, _ := e.get(tc.path)
			if tc.h != nil && resp.StatusCode == 200 {
				wantCS(t, resp, "hit")
			}
		})
	}
	// And nothing is compressed on a site that does not compress.
	e := newEnv(t, respond(200, page, "Content-Type", "text/html", "Cache-Control", "max-age=60"))
	resp, body := e.get("/p", "Accept-Encoding", "br")
	if resp.Header.Get("Content-Encoding") != "" || body != page {
		t.Fatal("compressed without compression enabled")
	}
}

// TestCompressionDecodesForClients: a gzip-only origin (gzip whatever it
// is asked, no Vary) reaches a client that sent no Accept-Encoding
// decoded, a gzip client as sent, a br client re-encoded.
func TestCompressionDecodesForClients(t *testing.T) {
	var gz bytes.Buffer
	zw := stdgzip.NewWriter(&gz)
	io.WriteString(zw, page)
	zw.Close()
	e := newEnv(t, respond(200, gz.String(), "Content-Type", "text/html", "Content-Encoding", "gzip",
		"ETag", `"g1"`, "Cache-Control", "max-age=60"), compressing)
	for _, tc := range []struct{ ae, ce, etag string }{
		{"", "", `"g1-identity"`},
		{"gzip", "gzip", `"g1"`},
		{"br, gzip", "br", `"g1-br"`},
		{"", "", `"g1-identity"`},
	} {
		resp, body := e.get("/gz", "Accept-Encoding", tc.ae)
		if got := resp.Header.Get("Content-Encoding"); got != tc.ce {
			t.Fatalf("AE %q: Content-Encoding %q, want %q", tc.ae, got, tc.ce)
		}
		if got := decodeBody(t, tc.ce, []byte(body)); got != page {
			t.Fatalf("AE %q: body differs", tc.ae)
		}
		if !varies(resp) || resp.Header.Get("ETag") != tc.etag {
			t.Fatalf("AE %q: Vary %q ETag %q", tc.ae, resp.Header.Values("Vary"), resp.Header.Get("ETag"))
		}
	}
	// A body that is not what its Content-Encoding says fails cleanly:
	// no garbage to the client, nothing stored.
	e.origin.setHandler(respond(200, "not gzip at all, honestly", "Content-Type", "text/html", "Content-Encoding", "gzip", "Cache-Control", "max-age=60"))
	req, _ := http.NewRequest("GET", e.base+"/liar", nil)
	req.Host = testHost
	resp, err := e.client.Do(req)
	if err == nil {
		b, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr == nil && resp.StatusCode == 200 {
			t.Fatalf("a broken gzip body was served as identity: %q", b)
		}
	}
}

// TestCompressionRevalidatesWithOriginTag: a stale compressed variant is
// revalidated with the origin's own tag, and the 304 keeps the
// variant's suffix.
func TestCompressionRevalidatesWithOriginTag(t *testing.T) {
	var mu sync.Mutex
	var inm []string
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inm = append(inm, r.Header.Get("If-None-Match"))
		mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("ETag", `"v7"`)
		if r.Header.Get("If-None-Match") == `"v7"` {
			w.WriteHeader(304)
			return
		}
		w.Header().Set("Content-Type", "text/css")
		io.WriteString(w, page)
	}, compressing)
	resp, _ := e.get("/s.css", "Accept-Encoding", "br")
	if resp.Header.Get("ETag") != `"v7-br"` {
		t.Fatalf("ETag %q", resp.Header.Get("ETag"))
	}
	e.clock.Advance(20e9)
	resp, body := e.get("/s.css", "Accept-Encoding", "br")
	wantStatus(t, resp, 200)
	if resp.Header.Get("ETag") != `"v7-br"` || resp.Header.Get("Content-Encoding") != "br" || decodeBody(t, "br", []byte(body)) != page {
		t.Fatalf("after 304: ETag %q CE %q", resp.Header.Get("ETag"), resp.Header.Get("Content-Encoding"))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(inm) != 2 || inm[1] != `"v7"` {
		t.Fatalf("origin saw If-None-Match %q, want its own tag on the revalidation", inm)
	}
	resp, _ = e.get("/s.css", "Accept-Encoding", "br")
	wantCS(t, resp, "hit")
}

// TestCompressionCoalesced: concurrent cold requests make one origin
// request (and one compression) per coding, not one per client: br
// clients share one fill, identity clients another.
func TestCompressionCoalesced(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, page)
	}, compressing)
	const n = 8
	bodies := make([]string, n)
	ces := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		ae := "gzip, br"
		if i%2 == 1 {
			ae = "identity"
		}
		wg.Go(func() {
			var resp *http.Response
			resp, bodies[i] = e.get("/api", "Accept-Encoding", ae)
			ces[i] = resp.Header.Get("Content-Encoding")
		})
	}
	// Both codings' fills reach the origin while it holds them.
	defer wg.Wait()
	defer open() // a failing test must not hold the origin (and runs before the Wait)
	waitFor(t, func() bool { return e.origin.total.Load() >= 2 })
	open()
	wg.Wait()
	if got := e.origin.count("/api"); got != 2 {
		t.Fatalf("origin requests %d, want 2 (one per coding)", got)
	}
	for i := range n {
		want := map[bool]string{false: "br", true: ""}[i%2 == 1]
		if ces[i] != want || decodeBody(t, ces[i], []byte(bodies[i])) != page {
			t.Fatalf("client %d: Content-Encoding %q, or other bytes", i, ces[i])
		}
	}
}

// pageUpstream answers every fill with the compressible page.
type pageUpstream struct{ calls atomic.Int64 }

func (u *pageUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	u.calls.Add(1)
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Cache-Control": {"max-age=60"}, "Content-Type": {"text/html"}, "Etag": {`"p"`}},
		Body:   io.NopCloser(strings.NewReader(page)), Request: r, ContentLength: int64(len(page))}, nil
}

// TestHitContractCompressed: the fast front's hit contract serves a
// stored coding variant itself, chosen by the request's Accept-Encoding,
// without allocating, as ServeHTTP does.
func TestHitContractCompressed(t *testing.T) {
	up := &pageUpstream{}
	h, err := edge.New(edge.Config{Sites: []edge.SiteConfig{{Hosts: []string{testHost}, Origin: "http://127.0.0.1:1",
		Compression: compress.Config{Enabled: true}}}},
		edge.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Upstream: func(edge.SiteConfig) http.RoundTripper { return up }})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, ae := range []string{"br", "gzip", ""} {
		r := httptest.NewRequest("GET", "http://"+testHost+"/p", nil)
		r.Header.Set("Accept-Encoding", ae)
		h.ServeHTTP(httptest.NewRecorder(), r) // fill
	}
	for _, tc := range []struct{ ae, ce string }{{"gzip, deflate, br, zstd", "br"}, {"gzip", "gzip"}, {"", ""}} {
		r := httptest.NewRequest("GET", "http://"+testHost+"/p", nil)
		if tc.ae != "" {
			r.Header.Set("Accept-Encoding", tc.ae)
		}
		want := httptest.NewRecorder()
		h.ServeHTTP(want, r)
		req := edge.HitRequest{Host: []byte(testHost), Target: []byte("/p"), Remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}}
		if tc.ae != "" {
			req.AcceptEncoding = []byte(tc.ae)
		}
		var x edge.Hit
		var head, body []byte
		date := []byte("Date: Sat, 01 Jan 2000 00:00:00 GMT\r\n")
		dateLine := func() []byte { return date }
		serve := func() {
			if !h.LookupHit(req, &x) {
				t.Fatalf("AE %q: no hit", tc.ae)
			}
			head = append(x.AppendHead(nil, dateLine), "\r\n"...)
			body = x.Body()
			h.Delivered(&x, len(body))
		}
		serve()
		head = head[:0:0]
		buf := make([]byte, 0, 4096)
		if n := testing.AllocsPerRun(100, func() {
			if !h.LookupHit(req, &x) {
				t.Fatal("no hit")
			}
			buf = x.AppendHead(buf[:0], dateLine)
			h.Delivered(&x, 0)
		}); n != 0 {
			t.Errorf("AE %q: %v allocations per hit", tc.ae, n)
		}
		serve()
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(append(head, body...))), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("Content-Encoding"); got != tc.ce || got != want.Header().Get("Content-Encoding") {
			t.Fatalf("AE %q: hit Content-Encoding %q, ServeHTTP %q, want %q", tc.ae, got, want.Header().Get("Content-Encoding"), tc.ce)
		}
		if !bytes.Equal(body, want.Body.Bytes()) || decodeBody(t, tc.ce, body) != page {
			t.Fatalf("AE %q: hit body differs from ServeHTTP's", tc.ae)
		}
		if !varies(resp) || resp.Header.Get("Etag") != want.Header().Get("Etag") {
			t.Fatalf("AE %q: Vary %q, ETag %q vs %q", tc.ae, resp.Header["Vary"], resp.Header.Get("Etag"), want.Header().Get("Etag"))
		}
	}
	if up.calls.Load() != 3 {
		t.Fatalf("%d fills, want 3", up.calls.Load())
	}
}

// TestCompressionAndUpgradeConfigNamesTheField: a bad compression or
// upgrade setting is refused naming its field.
func TestCompressionAndUpgradeConfigNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*edge.Config)
		want   string
	}{
		{func(c *edge.Config) { c.Sites[0].Compression.GzipLevel = 11 }, "sites[0].compression.gzip_level:"},
		{func(c *edge.Config) { c.Sites[0].Compression.Encodings = []string{"br", "deflate"} }, "sites[0].compression.encodings[1]:"},
		{func(c *edge.Config) { c.Sites[0].Compression.Types = []string{"html"} }, "sites[0].compression.types[0]:"},
		{func(c *edge.Config) {
			c.Sites[0].Compression.Enabled = true
			c.Sites[0].AcceptEncoding = edge.AcceptEncodingAsSent
		}, "sites[0].compression.enabled:"},
		{func(c *edge.Config) { c.Sites[0].Upgrade.Protocols = []string{"web socket"} }, "sites[0].upgrade.protocols[0]:"},
		{func(c *edge.Config) { c.Sites[0].Upgrade.IdleTimeout = -1 }, "sites[0].upgrade.idle_timeout:"},
		{func(c *edge.Config) { c.Server.MaxUpgraded = -2 }, "server.max_upgraded:"},
	} {
		cfg := edge.Config{Sites: []edge.SiteConfig{{Hosts: []string{testHost}, Origin: "http://127.0.0.1:1"}}}
		tc.mutate(&cfg)
		err := cfg.WithDefaults().Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("error %v, want one starting %q", err, tc.want)
		}
	}
}

// TestCompressionTruncatedOrigin: an origin that breaks off its body
// mid-way never gets a compressed variant stored, and the client is not
// told the short body is whole.
func TestCompressionTruncatedOrigin(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", fmt.Sprint(len(page)))
		io.WriteString(w, page[:len(page)/3]) // then the handler returns: net/http closes the connection
	}, compressing)
	for range 2 {
		req, _ := http.NewRequest("GET", e.base+"/cut", nil)
		req.Host = testHost
		req.Header.Set("Accept-Encoding", "br")
		resp, err := e.client.Do(req)
		if err != nil {
			continue // the edge aborted the response: fine
		}
		b, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr == nil && resp.StatusCode == 200 {
			if got := decodeBody(t, resp.Header.Get("Content-Encoding"), b); got == page {
				t.Fatal("a whole page from a truncated origin body")
			}
			t.Fatalf("a truncated body served as complete (%d bytes, Cache-Status %q)", len(b), resp.Header.Get("Cache-Status"))
		}
	}
	if n := e.origin.count("/cut"); n != 2 {
		t.Fatalf("origin requests %d, want 2 (nothing stored)", n)
	}
}

// TestCompressionBombRefused: an origin's gzip body that decodes to 10
// MiB of zeros, for a client that does not accept gzip, is cut off at
// the decoding limits (max_decode_ratio): the client never gets a
// complete 200, the edge does not store it (the next request asks the
// origin again), and a gzip client still gets the body as sent.
func TestCompressionBombRefused(t *testing.T) {
	var gz bytes.Buffer
	zw := stdgzip.NewWriter(&gz)
	zw.Write(make([]byte, 10<<20))
	zw.Close()
	e := newEnv(t, respond(200, gz.String(), "Content-Type", "text/html", "Content-Encoding", "gzip", "Cache-Control", "max-age=60"), compressing)
	for range 2 {
		req, _ := http.NewRequest("GET", e.base+"/bomb", nil)
		req.Host = testHost
		resp, err := e.client.Do(req)
		if err != nil {
			continue // the edge aborted the response: fine
		}
		n, rerr := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if rerr == nil && resp.StatusCode == 200 {
			t.Fatalf("a bomb was decoded and served whole: %d bytes", n)
		}
		if n > 2<<20 {
			t.Fatalf("%d decoded bytes reached the client before the cut, want about 1 MiB at most", n)
		}
	}
	if n := e.origin.count("/bomb"); n != 2 {
		t.Fatalf("origin requests %d, want 2 (nothing stored)", n)
	}
	resp, body := e.get("/bomb", "Accept-Encoding", "gzip")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" || body != gz.String() {
		t.Fatalf("gzip client: %d, Content-Encoding %q, %d bytes; want the origin's %d", resp.StatusCode, resp.Header.Get("Content-Encoding"), len(body), gz.Len())
	}
}

// TestCompressionNoTransformRequest: a client that asks for no
// transformation (request Cache-Control: no-transform, RFC 9111
// §5.2.1.6) gets the origin's identity body, never one the edge
// compressed, whether the compressed variant is cached already (a hit
// the fast front would otherwise answer) or the object is cold; the
// origin is not asked again for it.
func TestCompressionNoTransformRequest(t *testing.T) {
	e := newEnv(t, respond(200, page, "Content-Type", "text/html", "Cache-Control", "max-age=60", "ETag", `"p1"`), compressing)
	check := func(name, cc string) {
		t.Helper()
		resp, body := e.get("/p", "Accept-Encoding", "br, gzip", "Cache-Control", cc)
		if ce := resp.Header.Get("Content-Encoding"); ce != "" || body != page {
			t.Fatalf("%s: Content-Encoding %q, %d bytes; want the origin's identity body", name, ce, len(body))
		}
		if tag := resp.Header.Get("ETag"); tag != `"p1"` {
			t.Fatalf("%s: ETag %q, want the origin's", name, tag)
		}
	}
	check("cold", "no-transform")
	resp, body := e.get("/p", "Accept-Encoding", "br, gzip")
	if resp.Header.Get("Content-Encoding") != "br" || decodeBody(t, "br", []byte(body)) != page {
		t.Fatalf("a br client: Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
	resp, _ = e.get("/p", "Accept-Encoding", "br, gzip")
	wantCS(t, resp, "hit")
	check("br variant cached", "no-transform")
	check("among other directives", "max-stale=10, No-Transform")
	if n := e.origin.count("/p"); n != 2 {
		t.Fatalf("origin asked %d times, want 2 (identity and br, each once)", n)
	}
}
