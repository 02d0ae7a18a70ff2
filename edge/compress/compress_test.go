package compress_test

import (
	"bytes"
	stdgzip "compress/gzip"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"

	"github.com/meridiancdn/meridian/edge/compress"
)

func newCoder(t testing.TB, cfg compress.Config) *compress.Coder {
	t.Helper()
	c, err := compress.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var negotiateCases = []struct {
	ae   []string // nil: no field
	want compress.Coding
}{
	{nil, compress.Identity},
	{[]string{""}, compress.Identity},
	{[]string{"gzip"}, compress.Gzip},
	{[]string{"gzip, deflate, br, zstd"}, compress.Brotli}, // Chromium: the edge's order wins
	{[]string{"gzip, deflate, br"}, compress.Brotli},
	{[]string{"gzip, zstd"}, compress.Zstd},
	{[]string{"deflate"}, compress.Identity},
	{[]string{"x-gzip"}, compress.Gzip},
	{[]string{"GZIP;Q=0.5"}, compress.Gzip},
	{[]string{"br;q=0, gzip"}, compress.Gzip},
	{[]string{"br;q=0.000, gzip;q=0.001"}, compress.Gzip},
	{[]string{"br;q=1.0"}, compress.Brotli},
	{[]string{"br;q=1.5"}, compress.Identity},   // malformed: not accepted
	{[]string{"br;q=abc, gzip"}, compress.Gzip}, // malformed br only
	{[]string{"*"}, compress.Brotli},
	{[]string{"*;q=0"}, compress.Identity},
	{[]string{"br;q=0, *"}, compress.Zstd},
	{[]string{"identity"}, compress.Identity},
	{[]string{"identity;q=0"}, compress.Identity}, // nothing better to give
	{[]string{"gzip", "br"}, compress.Brotli},     // two field lines
	{[]string{" , ,br ,"}, compress.Brotli},
	{[]string{"brotli"}, compress.Identity},
}

func TestNegotiate(t *testing.T) {
	c := newCoder(t, compress.Config{Enabled: true})
	for _, tc := range negotiateCases {
		if got := c.Negotiate(tc.ae); got != tc.want {
			t.Errorf("Negotiate(%q) = %s, want %s", tc.ae, got, tc.want)
		}
		if len(tc.ae) == 1 {
			if got := c.NegotiateBytes([]byte(tc.ae[0])); got != tc.want {
				t.Errorf("NegotiateBytes(%q) = %s, want %s", tc.ae[0], got, tc.want)
			}
		}
	}
	// The configured order is the preference.
	g := newCoder(t, compress.Config{Encodings: []string{"gzip", "br"}})
	if got := g.Negotiate([]string{"br, gzip, zstd"}); got != compress.Gzip {
		t.Errorf("gzip-first coder chose %s", got)
	}
	if got := g.Negotiate([]string{"zstd"}); got != compress.Identity {
		t.Errorf("a coding not offered was chosen: %s", got)
	}
}

func TestNegotiateBytesDoesNotAllocate(t *testing.T) {
	c := newCoder(t, compress.Config{})
	line := []byte("gzip, deflate, br, zstd")
	if n := testing.AllocsPerRun(100, func() { c.NegotiateBytes(line) }); n != 0 {
		t.Fatalf("NegotiateBytes allocates %v times", n)
	}
}

func TestCompressible(t *testing.T) {
	c := newCoder(t, compress.Config{Types: []string{"text/*", "application/json", "image/png", "image/svg+xml"}, MinBytes: 100, MaxBytes: 1000})
	for _, tc := range []struct {
		ct   string
		n    int64
		want bool
	}{
		{"text/html; charset=utf-8", 500, true},
		{"TEXT/CSS", 500, true},
		{"application/json", -1, true}, // unknown length: compressed
		{"application/json", 99, false},
		{"application/json", 1001, false},
		{"application/json", 1000, true},
		{"image/png", 500, false}, // compressed already, even when listed
		{"image/svg+xml", 500, true},
		{"application/octet-stream", 500, false},
		{"", 500, false},
		{"application/javascript", 500, false}, // not listed
	} {
		if got := c.Compressible(tc.ct, tc.n); got != tc.want {
			t.Errorf("Compressible(%q, %d) = %v, want %v", tc.ct, tc.n, got, tc.want)
		}
	}
	d := newCoder(t, compress.Config{})
	for _, ct := range []string{"text/html", "text/css", "application/javascript", "application/json", "image/svg+xml", "text/javascript; charset=utf-8"} {
		if !d.Compressible(ct, 4096) {
			t.Errorf("default types leave out %s", ct)
		}
	}
	for _, ct := range []string{"image/jpeg", "video/mp4", "application/zip", "font/woff2"} {
		if d.Compressible(ct, 4096) {
			t.Errorf("default types compress %s", ct)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  compress.Config
		want string
	}{
		{compress.Config{Encodings: []string{"br", "lzma"}}, "encodings[1]"},
		{compress.Config{Encodings: []string{"br", "BR"}}, "encodings[1]"},
		{compress.Config{Encodings: []string{"identity"}}, "encodings[0]"},
		{compress.Config{Types: []string{"text/html", "nonsense"}}, "types[1]"},
		{compress.Config{Types: []string{"text/html; charset=utf-8"}}, "types[0]"},
		{compress.Config{MinBytes: -1}, "min_bytes"},
		{compress.Config{MaxBytes: -1}, "max_bytes"},
		{compress.Config{MinBytes: 10, MaxBytes: 5}, "max_bytes"},
		{compress.Config{GzipLevel: 10}, "gzip_level"},
		{compress.Config{BrotliLevel: 12}, "brotli_level"},
		{compress.Config{ZstdLevel: 23}, "zstd_level"},
	} {
		err := tc.cfg.WithDefaults().Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want+":") {
			t.Errorf("%+v: error %v, want one naming %s", tc.cfg, err, tc.want)
		}
	}
	if err := (compress.Config{}).WithDefaults().Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

// decodeStd decodes with a decoder that is not the edge's own writer's
// package where there is one (the standard library's gzip).
func decodeStd(t *testing.T, cd compress.Coding, b []byte) []byte {
	t.Helper()
	var r io.Reader
	switch cd {
	case compress.Gzip:
		zr, err := stdgzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case compress.Brotli:
		r = brotli.NewReader(bytes.NewReader(b))
	case compress.Zstd:
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	default:
		return b
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", cd, err)
	}
	return out
}

// trickle returns its bytes a few at a time, as a slow origin.
type trickle struct {
	b      []byte
	closed bool
}

func (t *trickle) Read(p []byte) (int, error) {
	if len(t.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 7)], t.b)
	t.b = t.b[n:]
	return n, nil
}

func (t *trickle) Close() error { t.closed = true; return nil }

func TestEncodeDecodeRoundTrip(t *testing.T) {
	c := newCoder(t, compress.Config{})
	body := bytes.Repeat([]byte("<p>hello, compressed world</p>\n"), 4000)
	for _, cd := range []compress.Coding{compress.Gzip, compress.Brotli, compress.Zstd} {
		for round := range 2 { // the second reuses a pooled encoder
			src := &trickle{b: body}
			r, err := c.Encode(cd, src)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("%s: %v", cd, err)
			}
			r.Close()
			if !src.closed {
				t.Fatalf("%s: Close did not close the source", cd)
			}
			if len(enc) >= len(body)/10 {
				t.Errorf("%s round %d: %d bytes from %d", cd, round, len(enc), len(body))
			}
			if got := decodeStd(t, cd, enc); !bytes.Equal(got, body) {
				t.Fatalf("%s round %d: decoded body differs", cd, round)
			}
			// And the edge's own decoder reads it back.
			d, err := compress.Decode(cd, io.NopCloser(bytes.NewReader(enc)))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(d)
			d.Close()
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("%s: Decode: %v, equal %v", cd, err, bytes.Equal(got, body))
			}
		}
	}
}

func TestDecodeMalformed(t *testing.T) {
	for _, cd := range []compress.Coding{compress.Gzip, compress.Brotli, compress.Zstd} {
		d, err := compress.Decode(cd, io.NopCloser(strings.NewReader("this is not compressed at all, not in any coding")))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(d); err == nil {
			t.Errorf("%s: garbage decoded without error", cd)
		}
		d.Close()
	}
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("origin reset") }
func (failing) Close() error             { return nil }

func TestEncodeSourceError(t *testing.T) {
	c := newCoder(t, compress.Config{})
	r, _ := c.Encode(compress.Brotli, failing{})
	if _, err := io.ReadAll(r); err == nil || !strings.Contains(err.Error(), "origin reset") {
		t.Fatalf("err %v, want the source's", err)
	}
	r.Close()
	r.Close() // twice is fine
}

func FuzzNegotiate(f *testing.F) {
	for _, tc := range negotiateCases {
		f.Add(strings.Join(tc.ae, ","))
	}
	c := newCoder(f, compress.Config{})
	f.Fuzz(func(t *testing.T, ae string) {
		got := c.Negotiate([]string{ae})
		if b := c.NegotiateBytes([]byte(ae)); b != got {
			t.Fatalf("Negotiate %s, NegotiateBytes %s", got, b)
		}
		if got != compress.Identity {
			l := strings.ToLower(ae)
			if !strings.Contains(l, got.String()) && !strings.Contains(l, "*") && !(got == compress.Gzip && strings.Contains(l, "x-gzip")) {
				t.Fatalf("%q: chose %s, which it does not name", ae, got)
			}
		}
	})
}

// A decompression bomb (10 MiB of zeros, in each coding) fails decoding
// with ErrDecodeLimit, by the ratio and by the absolute cap, while a
// body that compresses as text does decodes whole; the package's Decode
// has no bounds.
func TestDecodeLimits(t *testing.T) {
	// A page of text as text goes: words drawn at random from a small
	// vocabulary compress some 3 to 6 times.
	words := strings.Fields("the edge cache serves fresh objects from memory and fills misses from the origin pool while peers share keys on a ring of virtual nodes")
	rnd := rand.New(rand.NewPCG(1, 2))
	var tb strings.Builder
	for tb.Len() < 1200<<10 {
		tb.WriteString(words[rnd.IntN(len(words))])
		tb.WriteByte(" \n"[rnd.IntN(2)])
	}
	text := []byte(tb.String())
	c, err := compress.New(compress.Config{})
	if err != nil {
		t.Fatal(err)
	}
	small, err := compress.New(compress.Config{MaxDecodedBytes: 1 << 20, MaxDecodeRatio: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, cd := range []compress.Coding{compress.Gzip, compress.Brotli, compress.Zstd} {
		zeros := make([]byte, 10<<20) // gzip: the classic 10 MiB bomb
		if cd != compress.Gzip {
			zeros = zeros[:2<<20] // enough, and brotli is slow to make it under -race
		}
		encode := func(b []byte) []byte {
			r, err := c.Encode(cd, io.NopCloser(bytes.NewReader(b)))
			if err != nil {
				t.Fatal(err)
			}
			out, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
		bomb, page := encode(zeros), encode(text)
		t.Logf("%s: bomb %d bytes (%d:1), page %d bytes (%d:1)", cd, len(bomb), len(zeros)/len(bomb), len(page), len(text)/len(page))
		read := func(c *compress.Coder, b []byte) (int, error) {
			d, err := c.Decode(cd, io.NopCloser(bytes.NewReader(b)))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			n, err := io.Copy(io.Discard, d)
			return int(n), err
		}
		if n, err := read(c, bomb); !errors.Is(err, compress.ErrDecodeLimit) || n > 2<<20 {
			t.Errorf("%s bomb: %d bytes, %v; want ErrDecodeLimit within about 1 MiB", cd, n, err)
		} else {
			t.Logf("%s bomb: %v", cd, err)
		}
		if n, err := read(c, page); err != nil || n != len(text) {
			t.Errorf("%s page: %d bytes, %v; want %d", cd, n, err, len(text))
		}
		if n, err := read(small, page); !errors.Is(err, compress.ErrDecodeLimit) || n > 1<<20 {
			t.Errorf("%s page past max_decoded_bytes 1 MiB: %d bytes, %v", cd, n, err)
		}
		d, _ := compress.Decode(cd, io.NopCloser(bytes.NewReader(bomb)))
		if n, err := io.Copy(io.Discard, d); err != nil || n != int64(len(zeros)) {
			t.Errorf("%s: unbounded Decode: %d, %v", cd, n, err)
		}
	}
	for _, tc := range []struct {
		cfg  compress.Config
		want string
	}{
		{compress.Config{MaxDecodedBytes: -1}, "max_decoded_bytes: negative"},
		{compress.Config{MaxDecodeRatio: -1}, "max_decode_ratio: negative"},
	} {
		if _, err := compress.New(tc.cfg); err == nil || err.Error() != tc.want {
			t.Errorf("New(%+v): %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
