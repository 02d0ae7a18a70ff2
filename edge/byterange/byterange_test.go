package byterange

import (
	"bytes"
	"errors"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name   string
		header string
		size   int64
		want   []Range
		err    error
	}{
		{"first-last", "bytes=0-99", 1000, []Range{{0, 100}}, nil},
		{"open-ended", "bytes=900-", 1000, []Range{{900, 100}}, nil},
		{"suffix", "bytes=-100", 1000, []Range{{900, 100}}, nil},
		{"suffix longer than size", "bytes=-5000", 1000, []Range{{0, 1000}}, nil},
		{"last clamped", "bytes=990-5000", 1000, []Range{{990, 10}}, nil},
		{"single byte", "bytes=0-0", 1000, []Range{{0, 1}}, nil},
		{"last byte", "bytes=999-999", 1000, []Range{{999, 1}}, nil},
		{"unit case-insensitive", "Bytes=0-9", 1000, []Range{{0, 10}}, nil},
		{"whitespace around specs", " bytes= 0-9 ,\t20-29 ", 1000, []Range{{0, 10}, {20, 10}}, nil},
		{"empty list elements", "bytes=,0-9,,", 1000, []Range{{0, 10}}, nil},
		{"multiple sorted", "bytes=500-599,0-99", 1000, []Range{{0, 100}, {500, 100}}, nil},
		{"overlapping coalesced", "bytes=0-99,50-149", 1000, []Range{{0, 150}}, nil},
		{"adjacent coalesced", "bytes=0-99,100-199", 1000, []Range{{0, 200}}, nil},
		{"contained coalesced", "bytes=0-199,50-59", 1000, []Range{{0, 200}}, nil},
		{"suffix and first overlap", "bytes=-10,85-94", 100, []Range{{85, 15}}, nil},
		{"overlap summing past size", "bytes=0-9,-10", 15, nil, ErrInvalid},
		{"unsatisfiable dropped", "bytes=0-9,2000-3000", 1000, []Range{{0, 10}}, nil},
		{"first at size", "bytes=1000-", 1000, nil, ErrUnsatisfiable},
		{"suffix zero", "bytes=-0", 1000, nil, ErrUnsatisfiable},
		{"all unsatisfiable", "bytes=2000-,-0", 1000, nil, ErrUnsatisfiable},
		{"empty representation, first-last", "bytes=0-0", 0, nil, ErrUnsatisfiable},
		{"empty representation, suffix serves whole", "bytes=-5", 0, nil, ErrInvalid},
		{"huge first", "bytes=99999999999999999999-", 1000, nil, ErrUnsatisfiable},
		{"huge last", "bytes=0-99999999999999999999", 1000, []Range{{0, 1000}}, nil},
		{"huge suffix", "bytes=-99999999999999999999", 1000, []Range{{0, 1000}}, nil},
		{"max int64 size", "bytes=9223372036854775806-", math.MaxInt64, []Range{{math.MaxInt64 - 1, 1}}, nil},
		{"reversed", "bytes=5-2", 1000, nil, ErrInvalid},
		{"other unit", "items=0-5", 1000, nil, ErrInvalid},
		{"no equals", "bytes 0-5", 1000, nil, ErrInvalid},
		{"space before equals", "bytes =0-5", 1000, nil, ErrInvalid},
		{"empty", "", 1000, nil, ErrInvalid},
		{"no specs", "bytes=", 1000, nil, ErrInvalid},
		{"only commas", "bytes=,,", 1000, nil, ErrInvalid},
		{"no dash", "bytes=5", 1000, nil, ErrInvalid},
		{"lone dash", "bytes=-", 1000, nil, ErrInvalid},
		{"sign", "bytes=+5-10", 1000, nil, ErrInvalid},
		{"negative suffix", "bytes=--5", 1000, nil, ErrInvalid},
		{"two dashes", "bytes=1-2-3", 1000, nil, ErrInvalid},
		{"inner space", "bytes=1 -2", 1000, nil, ErrInvalid},
		{"garbage after valid", "bytes=0-1,x", 1000, nil, ErrInvalid},
		{"sum exceeds size", "bytes=0-,0-", 1000, nil, ErrInvalid},
		{"overlap within size", "bytes=0-499,250-749", 1000, []Range{{0, 750}}, nil},
		{"sum exactly size", "bytes=0-499,-500", 1000, []Range{{0, 1000}}, nil},
		{"16 ranges allowed", "bytes=" + strings.TrimSuffix(strings.Repeat("0-0,", 16), ","), 1000, []Range{{0, 1}}, nil},
		{"17 ranges rejected", strings.TrimSuffix("bytes="+strings.Repeat("0-0,", 17), ","), 1000, nil, ErrInvalid},
		{"0-0 x1000", "bytes=" + strings.TrimSuffix(strings.Repeat("0-0,", 1000), ","), 1 << 20, nil, ErrInvalid},
		{"10 KB of commas", "bytes=" + strings.Repeat(",", 10<<10) + "0-1", 1000, []Range{{0, 2}}, nil},
		{"negative size", "bytes=0-1", -1, nil, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.header, tt.size)
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("Parse(%.60q, %d) error = %v, want %v", tt.header, tt.size, err, tt.err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%.60q, %d) = %v, want %v", tt.header, tt.size, got, tt.want)
			}
		})
	}
}

func TestContentRange(t *testing.T) {
	tests := []struct {
		r    Range
		size int64
		want string
	}{
		{Range{0, 100}, 1000, "bytes 0-99/1000"},
		{Range{999, 1}, 1000, "bytes 999-999/1000"},
		{Range{math.MaxInt64 - 1, 1}, math.MaxInt64, "bytes 9223372036854775806-9223372036854775806/9223372036854775807"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.r.ContentRange(tt.size); got != tt.want {
				t.Errorf("ContentRange = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestIfRange(t *testing.T) {
	lm := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	date := lm.Format(http.TimeFormat)
	tests := []struct {
		name    string
		ifRange string
		etag    string
		lm      time.Time
		want    bool
	}{
		{"empty", "", `"a"`, lm, true},
		{"strong match", `"a"`, `"a"`, lm, true},
		{"whitespace", ` "a" `, `"a"`, lm, true},
		{"mismatch", `"b"`, `"a"`, lm, false},
		{"weak request", `W/"a"`, `"a"`, lm, false},
		{"weak stored", `"a"`, `W/"a"`, lm, false},
		{"no stored etag", `"a"`, "", lm, false},
		{"malformed tag", `"a`, `"a`, lm, false},
		{"date equal", date, `"a"`, lm, true},
		{"date RFC 850", "Wednesday, 01-May-24 12:00:00 GMT", "", lm, true},
		{"date earlier", lm.Add(-time.Second).Format(http.TimeFormat), `"a"`, lm, false},
		{"date later", lm.Add(time.Second).Format(http.TimeFormat), `"a"`, lm, false},
		{"date without Last-Modified", date, `"a"`, time.Time{}, false},
		{"garbage", "yesterday", `"a"`, lm, false},
		{"date asctime", "Wed May  1 12:00:00 2024", `"a"`, lm, true},
		{"date with double spaces", "Wed, 01  May  2024 12:00:00 GMT", `"a"`, lm, false},
		{"date with one-digit hour", "Wed, 01 May 2024 12:0:00 GMT", `"a"`, lm, false},
		{"date in lower case", "wed, 01 may 2024 12:00:00 gmt", `"a"`, lm, false},
		{"date with wrong weekday", "Thu, 01 May 2024 12:00:00 GMT", `"a"`, lm, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IfRange(tt.ifRange, tt.etag, tt.lm); got != tt.want {
				t.Errorf("IfRange(%q, %q) = %v, want %v", tt.ifRange, tt.etag, got, tt.want)
			}
		})
	}
}

// body is a test representation of n bytes.
func body(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

func TestMultipart(t *testing.T) {
	data := body(1000)
	tests := []struct {
		name string
		m    Multipart
		ct   string // expected part Content-Type
	}{
		{"two parts", Multipart{Ranges: []Range{{0, 10}, {500, 100}}, Size: 1000, ContentType: "text/plain", Boundary: "b0undary"}, "text/plain"},
		{"no content type", Multipart{Ranges: []Range{{0, 1}, {999, 1}}, Size: 1000, Boundary: "x"}, ""},
		{"control chars in content type dropped", Multipart{Ranges: []Range{{0, 1}, {5, 1}}, Size: 1000, ContentType: "text/plain\r\nX-Evil: 1", Boundary: "x"}, ""},
		{"empty boundary uses default", Multipart{Ranges: []Range{{0, 1}, {5, 1}}, Size: 1000, ContentType: "a/b"}, "a/b"},
		{"boundary needing quotes", Multipart{Ranges: []Range{{0, 1}, {5, 1}}, Size: 1000, ContentType: "a/b", Boundary: "a b:c"}, "a/b"},
		{"invalid boundary uses default", Multipart{Ranges: []Range{{0, 1}, {5, 1}}, Size: 1000, Boundary: "bad\"quote"}, ""},
		{"one part", Multipart{Ranges: []Range{{3, 4}}, Size: 1000, Boundary: "x"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			n, err := tt.m.WriteTo(&buf, bytes.NewReader(data))
			if err != nil {
				t.Fatalf("WriteTo: %v", err)
			}
			if n != int64(buf.Len()) || n != tt.m.ContentLength() {
				t.Fatalf("WriteTo wrote %d (counted %d), ContentLength %d", buf.Len(), n, tt.m.ContentLength())
			}
			mt, params, err := mime.ParseMediaType(tt.m.ContentTypeHeader())
			if err != nil || mt != "multipart/byteranges" {
				t.Fatalf("ContentTypeHeader %q: %v", tt.m.ContentTypeHeader(), err)
			}
			mr := multipart.NewReader(&buf, params["boundary"])
			for i, r := range tt.m.Ranges {
				p, err := mr.NextPart()
				if err != nil {
					t.Fatalf("part %d: %v", i, err)
				}
				if got := p.Header.Get("Content-Range"); got != r.ContentRange(tt.m.Size) {
					t.Errorf("part %d Content-Range %q", i, got)
				}
				if got := p.Header.Get("Content-Type"); got != tt.ct {
					t.Errorf("part %d Content-Type %q, want %q", i, got, tt.ct)
				}
				got, _ := io.ReadAll(p)
				if !bytes.Equal(got, data[r.Start:r.Start+r.Length]) {
					t.Errorf("part %d body %q", i, got)
				}
			}
			if _, err := mr.NextPart(); err != io.EOF {
				t.Errorf("after last part: %v", err)
			}
		})
	}
}

func TestMultipartShortBody(t *testing.T) {
	m := Multipart{Ranges: []Range{{0, 5}, {90, 20}}, Size: 110, Boundary: "x"}
	_, err := m.WriteTo(io.Discard, bytes.NewReader(body(100)))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short body: %v, want ErrUnexpectedEOF", err)
	}
}

// failWriter fails after n bytes.
type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		n := w.n
		w.n = 0
		return n, errors.New("broken pipe")
	}
	w.n -= len(p)
	return len(p), nil
}

func TestMultipartWriteError(t *testing.T) {
	m := Multipart{Ranges: []Range{{0, 50}, {60, 20}}, Size: 100, Boundary: "x"}
	total := m.ContentLength()
	for limit := range int(total) {
		w := &failWriter{n: limit}
		n, err := m.WriteTo(w, bytes.NewReader(body(100)))
		if err == nil {
			t.Fatalf("limit %d: no error", limit)
		}
		if n != int64(limit) {
			t.Fatalf("limit %d: reported %d bytes", limit, n)
		}
	}
}

func TestParseThenMultipart(t *testing.T) {
	data := body(300)
	rs, err := Parse("bytes=-50,0-9,100-149,140-199", int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	want := []Range{{0, 10}, {100, 100}, {250, 50}}
	if !reflect.DeepEqual(rs, want) {
		t.Fatalf("Parse = %v, want %v", rs, want)
	}
	m := Multipart{Ranges: rs, Size: int64(len(data)), ContentType: "text/plain", Boundary: "B"}
	var buf bytes.Buffer
	if _, err := m.WriteTo(&buf, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if got := strconv.Itoa(buf.Len()); got != strconv.FormatInt(m.ContentLength(), 10) {
		t.Errorf("length %s, ContentLength %d", got, m.ContentLength())
	}
}

func TestParseAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _, _ = Parse("bytes=0-1023", 1<<20) }); n > 1 {
		t.Errorf("Parse of one range: %v allocs, want ≤ 1", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = Parse("items=0-5", 1<<20) }); n != 0 {
		t.Errorf("Parse of an invalid range: %v allocs, want 0", n)
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, _ = Parse("bytes=0-1023", 1<<20)
	}
}
