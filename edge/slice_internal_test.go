package edge

import (
	"math"
	"strconv"
	"testing"

	"github.com/meridiancdn/meridian/edge/byterange"
)

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		v           string
		a, b, total int64
		ok          bool
	}{
		{"bytes 0-99/1000", 0, 99, 1000, true},
		{"bytes 999-999/1000", 999, 999, 1000, true},
		{"bytes 0-0/1", 0, 0, 1, true},
		{"bytes 0-99/*", 0, 0, 0, false}, // length unknown: no slice
		{"bytes */1000", 0, 0, 0, false}, // a 416's
		{"bytes 0-1000/1000", 0, 0, 0, false},
		{"bytes 5-4/1000", 0, 0, 0, false},
		{"bytes -1-5/1000", 0, 0, 0, false},
		{"bytes 0-9/9223372036854775808", 0, 0, 0, false},
		{"Bytes 0-9/10", 0, 0, 0, false},
		{"bytes 0-9/10 ", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	} {
		a, b, total, ok := parseContentRange(tc.v)
		if ok != tc.ok || ok && (a != tc.a || b != tc.b || total != tc.total) {
			t.Errorf("%q: %d %d %d %v", tc.v, a, b, total, ok)
		}
	}
}

func TestFirstByteOf(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want int64
	}{
		{"", 0},
		{"bytes=100-200", 100},
		{"bytes=500-600, 100-200", 100},
		{"bytes=100-", 100},
		{"bytes=-100", 0},
		{"bytes=100-200,-5", 0},
		{"BYTES=7-8", 7},
		{"pages=7-8", 0},
		{"bytes=x-8", 0},
		{"bytes=99999999999999999999-", 0},
	} {
		if got := firstByteOf(tc.v); got != tc.want {
			t.Errorf("%q: %d, want %d", tc.v, got, tc.want)
		}
	}
}

// FuzzSliceFields checks the slicing layer's two parsers: a Content-Range
// it accepts describes a range within a known length, and the first byte
// it reads from a Range field is never after the first byte that
// byterange.Parse finds (the first slice fetched is never past the first
// one needed).
func FuzzSliceFields(f *testing.F) {
	for _, s := range []string{"bytes 0-99/1000", "bytes */0", "bytes 5-4/9", "bytes=0-99", "bytes=-5",
		"bytes=500-600,100-200", "bytes= 3-4 ,\t1-2", "bytes=+5-6", "bytes=1-2,,3-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if a, b, total, ok := parseContentRange(v); ok {
			if a < 0 || b < a || total <= b {
				t.Fatalf("%q: %d-%d/%d", v, a, b, total)
			}
			canon := "bytes " + strconv.FormatInt(a, 10) + "-" + strconv.FormatInt(b, 10) + "/" + strconv.FormatInt(total, 10)
			if a2, b2, t2, ok2 := parseContentRange(canon); !ok2 || a2 != a || b2 != b || t2 != total {
				t.Fatalf("%q: its canonical form %q does not parse back", v, canon)
			}
		}
		first := firstByteOf(v)
		if first < 0 {
			t.Fatalf("%q: first byte %d", v, first)
		}
		if ranges, err := byterange.Parse(v, math.MaxInt64/2); err == nil && first > ranges[0].Start {
			t.Fatalf("%q: first byte %d after the first range's %d", v, first, ranges[0].Start)
		}
	})
}
