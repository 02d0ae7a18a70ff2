package byterange

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/policy"
)

// patternAt is an io.ReaderAt of any size that stores nothing.
type patternAt struct{ size int64 }

func (p patternAt) ReadAt(b []byte, off int64) (int, error) {
	if off >= p.size {
		return 0, io.EOF
	}
	n := len(b)
	if rem := p.size - off; int64(n) > rem {
		n = int(rem)
	}
	for i := range n {
		b[i] = byte(off + int64(i))
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

// countWriter counts bytes.
type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

func FuzzParseRange(f *testing.F) {
	seeds := []struct {
		h    string
		size int64
	}{
		{"bytes=0-99", 1000}, {"bytes=-100", 1000}, {"bytes=900-", 1000},
		{"bytes=0-99,50-149,-10", 1000}, {"bytes=5-2", 1000}, {"bytes=-0", 1000},
		{"bytes=99999999999999999999-", 1000}, {"items=0-5", 1000}, {"bytes=-5", 0},
		{"bytes=" + strings.Repeat("0-0,", 20), 1000}, {"Bytes= 1-2 ,, 4-5", 10},
		{"bytes=0-", 1 << 62}, {"bytes=0-0", -1},
	}
	for _, s := range seeds {
		f.Add(s.h, s.size, "text/plain", "BOUNDARY")
	}
	f.Fuzz(func(t *testing.T, h string, size int64, ct, boundary string) {
		rs, err := Parse(h, size)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsatisfiable) {
				t.Fatalf("unexpected error %v", err)
			}
			if rs != nil {
				t.Fatalf("ranges %v with error %v", rs, err)
			}
			return
		}
		if len(rs) == 0 || len(rs) > MaxRanges {
			t.Fatalf("%d ranges", len(rs))
		}
		var sum int64
		for i, r := range rs {
			if r.Start < 0 || r.Length <= 0 || r.Start >= size || r.Length > size-r.Start {
				t.Fatalf("range %v outside [0,%d)", r, size)
			}
			if i > 0 && rs[i-1].Start+rs[i-1].Length >= r.Start {
				t.Fatalf("ranges not sorted, disjoint and non-adjacent: %v", rs)
			}
			sum += r.Length
		}
		if sum > size {
			t.Fatalf("ranges sum to %d > %d", sum, size)
		}
		m := Multipart{Ranges: rs, Size: size, ContentType: ct, Boundary: boundary}
		if !strings.HasPrefix(m.ContentTypeHeader(), "multipart/byteranges; boundary=") {
			t.Fatalf("Content-Type %q", m.ContentTypeHeader())
		}
		if sum > 1<<20 {
			return // too big to write out here
		}
		var w countWriter
		n, err := m.WriteTo(&w, patternAt{size})
		if err != nil {
			t.Fatalf("WriteTo: %v", err)
		}
		if n != w.n || n != m.ContentLength() {
			t.Fatalf("WriteTo wrote %d (reported %d), ContentLength %d", w.n, n, m.ContentLength())
		}
	})
}

func FuzzIfRange(f *testing.F) {
	f.Add(`"a"`, `"a"`, int64(0))
	f.Add(`W/"a"`, `W/"a"`, int64(0))
	f.Add("Wed, 01 May 2024 12:00:00 GMT", "", int64(1714564800))
	f.Add("", "", int64(0))
	f.Fuzz(func(t *testing.T, ifRange, etag string, lmUnix int64) {
		var lm time.Time
		if lmUnix != 0 {
			lm = time.Unix(lmUnix, 0)
		}
		got := IfRange(ifRange, etag, lm)
		if trimOWS(ifRange) == "" && !got {
			t.Fatalf("empty If-Range did not match")
		}
		if got && strings.HasPrefix(trimOWS(ifRange), "W/") {
			t.Fatalf("weak If-Range %q matched", ifRange)
		}
		if v := trimOWS(ifRange); got && v != "" && v[0] != '"' {
			if _, ok := policy.ParseHTTPDate(v, lm); !ok {
				t.Fatalf("If-Range %q matched, but it is not a valid HTTP-date", ifRange)
			}
		}
	})
}
