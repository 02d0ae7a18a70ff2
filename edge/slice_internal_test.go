package edge

import (
	"math"
	"strconv"
	"testing"

	"github.com/meridiancdn/meridian/edge/byterange"
)

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
		if a, b, total, ok := byterange.ParseContentRange(v); ok {
			if a < 0 || b < a || total <= b {
				t.Fatalf("%q: %d-%d/%d", v, a, b, total)
			}
			canon := "bytes " + strconv.FormatInt(a, 10) + "-" + strconv.FormatInt(b, 10) + "/" + strconv.FormatInt(total, 10)
			if a2, b2, t2, ok2 := byterange.ParseContentRange(canon); !ok2 || a2 != a || b2 != b || t2 != total {
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
