package yamlconf_test

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/origin/yamlconf"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"1048576", 1 << 20}, {"512B", 512}, {"512 b", 512},
		{"64k", 64 << 10}, {"64K", 64 << 10}, {"64KiB", 64 << 10}, {"64kib", 64 << 10}, {"64KB", 64000}, {"64kB", 64000},
		{"256MiB", 256 << 20}, {"256m", 256 << 20}, {"256MB", 256e6},
		{"1GB", 1e9}, {"1GiB", 1 << 30}, {"10g", 10 << 30}, {"1.5GiB", 3 << 29}, {"1.5 GiB", 3 << 29}, {" 2TiB ", 2 << 40},
		{"1TB", 1e12}, {"1PiB", 1 << 50}, {"1EiB", 1 << 60}, {"7.5EiB", 15 << 59},
		{"9223372036854775807", math.MaxInt64}, {"1.", 1},
	} {
		got, err := yamlconf.ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", `"" is not a size`}, {"lots", `"lots" is not a size (want e.g.`}, {"1 GiB extra", "is not a size"},
		{"-1", `"-1" is negative`}, {"-1GB", "is negative"}, {"1e9", "is not a size"}, {"1/2k", "is not a size"},
		{".5k", "is not a size"}, {"1.2.3k", "is not a size"}, {"1ZiB", "is not a size"}, {"GiB", "is not a size"},
		{"0.5", "is not a whole number of bytes"}, {"1.0001k", "is not a whole number of bytes"},
		{"8EiB", "is out of range (at most 8EiB)"}, {"9223372036854775808", "is out of range"},
		{"99999999999999999999999999999999GiB", "is out of range"},
	} {
		if _, err := yamlconf.ParseSize(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSize(%q): %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	day := 24 * time.Hour
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"0", 0}, {"-0", 0}, {"30s", 30 * time.Second}, {"500ms", 500 * time.Millisecond}, {"1h30m", 90 * time.Minute},
		{"1d", day}, {"7d", 7 * day}, {"1d12h", 36 * time.Hour}, {"1.5d", 36 * time.Hour}, {"-2d", -2 * day},
		{"+1d1s", day + time.Second}, {"2d3d", 5 * day}, {"1µs", time.Microsecond}, {"1μs", time.Microsecond},
		{"106751d", 106751 * day},
	} {
		got, err := yamlconf.ParseDuration(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", `"" is not a duration (want e.g. 500ms, 30s, 5m, 2h, 1d)`}, {"5 seconds", "is not a duration"},
		{"30", "is not a duration"}, {"1w", "is not a duration"}, {"d", "is not a duration"}, {".d", "is not a duration"},
		{"1D", "is not a duration"}, {"106752d", "is out of range (at most about 106751d)"},
		{"9999999999999999999999d", "is out of range"},
	} {
		if _, err := yamlconf.ParseDuration(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseDuration(%q): %v, want %q", tc.in, err, tc.want)
		}
	}
}

// FuzzParseSize: a size is never negative; a plain number reads as
// strconv does; a size written back with a binary unit reads the same.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "1048576", "256MiB", "1GB", "64k", "1.5 GiB", "-1", "8EiB", "0.5", "1e9", ".5k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := yamlconf.ParseSize(s)
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Fatalf("the error does not quote the value: %v", err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
		if p, perr := strconv.ParseInt(strings.TrimSpace(s), 10, 64); perr == nil && p != n {
			t.Fatalf("ParseSize(%q) = %d, strconv says %d", s, n, p)
		}
		for _, u := range []struct {
			suffix string
			shift  uint
		}{{"EiB", 60}, {"PiB", 50}, {"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"k", 10}} {
			if n != 0 && n%(1<<u.shift) == 0 {
				back, err := yamlconf.ParseSize(strconv.FormatInt(n>>u.shift, 10) + u.suffix)
				if err != nil || back != n {
					t.Fatalf("%d written back as %d%s reads %d, %v", n, n>>u.shift, u.suffix, back, err)
				}
				break
			}
		}
	})
}

// FuzzParseDuration: without d it is time.ParseDuration, value and
// refusal; with d, a duration written back with days reads the same.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"0", "30s", "1h30m", "-1.5s", "7d", "1d12h", "1.5d", ".5d", "106751d", "-2562047h47m16.854775808s", "1d-1h", "µs"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := yamlconf.ParseDuration(s)
		if !strings.Contains(s, "d") {
			want, werr := time.ParseDuration(s)
			if (err == nil) != (werr == nil) || got != want {
				t.Fatalf("ParseDuration(%q) = %v, %v; time.ParseDuration: %v, %v", s, got, err, want, werr)
			}
			return
		}
		if err != nil {
			return
		}
		days, rest := got/(24*time.Hour), got%(24*time.Hour)
		written := strconv.FormatInt(int64(days), 10) + "d"
		if rest != 0 {
			if rest < 0 && days == 0 {
				written = "-0d"
			}
			r := rest
			if r < 0 {
				r = -r
			}
			written += r.String()
		}
		back, err := yamlconf.ParseDuration(written)
		if err != nil || back != got {
			t.Fatalf("%q = %v written back as %q reads %v, %v", s, got, written, back, err)
		}
	})
}
