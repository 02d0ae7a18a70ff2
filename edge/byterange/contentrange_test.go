package byterange

import (
	"fmt"
	"testing"
)

// The Content-Range of 206 answers, as slicing (edge) and resumed peer
// bodies (edge/cluster) read them.
func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in      string
		a, z, n int64
		ok      bool
	}{
		{"bytes 0-9/10", 0, 9, 10, true},
		{"bytes 5-9/10", 5, 9, 10, true},
		{"bytes 5-9/*", 0, 0, 0, false},
		{"bytes */10", 0, 0, 0, false},
		{"bytes 9-5/10", 0, 0, 0, false},
		{"bytes 0-10/10", 0, 0, 0, false},
		{"bytes +1-9/10", 0, 0, 0, false},
		{"bits 0-9/10", 0, 0, 0, false},
		{"bytes 0-9/1000000000000000000000", 0, 0, 0, false},
	} {
		a, z, n, ok := ParseContentRange(tc.in)
		if ok != tc.ok || ok && (a != tc.a || z != tc.z || n != tc.n) {
			t.Errorf("%q: %d %d %d %v", tc.in, a, z, n, ok)
		}
	}
}

func TestParseContentRangeSlices(t *testing.T) {
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
		a, b, total, ok := ParseContentRange(tc.v)
		if ok != tc.ok || ok && (a != tc.a || b != tc.b || total != tc.total) {
			t.Errorf("%q: %d %d %d %v", tc.v, a, b, total, ok)
		}
	}
}

// FuzzParseContentRange: never a panic, and what is accepted is a range
// inside its length that reads back the same once written.
func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-9/10", "bytes 5-9/*", "bytes */10", "bytes -1-2/3", "bytes 0-0/1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, z, n, ok := ParseContentRange(s)
		if !ok {
			return
		}
		if a < 0 || z < a || n <= z {
			t.Fatalf("%q: accepted %d-%d/%d", s, a, z, n)
		}
		a2, z2, n2, ok2 := ParseContentRange(fmt.Sprintf("bytes %d-%d/%d", a, z, n))
		if !ok2 || a2 != a || z2 != z || n2 != n {
			t.Fatalf("%q read as %d-%d/%d, which does not read back", s, a, z, n)
		}
	})
}
