package yamlconf

import (
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"
)

// sizeUnits are the units ParseSize reads, by their lower-case spelling.
// One letter is binary, as nginx, Varnish and systemd read it ("64k" is
// 64 KiB, "10g" 10 GiB); "KB", "MB", ... are SI (1000s), as the IEC
// prefixes say and as disk vendors, Kubernetes and go-humanize read them;
// "KiB", "MiB", ... are binary.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
	"p": 1 << 50, "pib": 1 << 50, "pb": 1e15,
	"e": 1 << 60, "eib": 1 << 60, "eb": 1e18,
}

// sizeWant is what a size looks like, for error messages.
const sizeWant = "want e.g. 1048576, 64KiB, 256MiB, 1GB or 10g"

// ParseSize reads a byte count: a whole number ("1048576"), or a number
// and a unit ("256MiB", "1GB", "64k", "1.5 GiB"), case-insensitive, with
// or without a space between. K, M, G, T, P and E alone and KiB, MiB, ...
// are powers of 1024; KB, MB, ... powers of 1000. The result is a whole
// number of bytes from 0 to math.MaxInt64: a fraction of a byte, a
// negative size or a larger one is an error that quotes s.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("%q is negative (want a size of 0 or more)", s)
	}
	mult, ok := sizeUnits[unit]
	if !ok || !validDecimal(num) {
		return 0, fmt.Errorf("%q is not a size (%s)", s, sizeWant)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("%q is not a size (%s)", s, sizeWant)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("%q is not a whole number of bytes", s)
	}
	n := r.Num()
	if !n.IsInt64() {
		return 0, fmt.Errorf("%q is out of range (at most 8EiB)", s)
	}
	return n.Int64(), nil
}

// validDecimal reports whether s is digits with at most one '.' inside
// or at the end ("1", "1.5", "1."), not ".5" nor "" nor "1.2.3": big.Rat
// alone would also take exponents and fractions ("1e3", "1/2").
func validDecimal(s string) bool {
	if s == "" || s[0] == '.' || strings.Count(s, ".") > 1 {
		return false
	}
	return strings.Trim(s, "0123456789.") == ""
}

// durationUnits are the units ParseDuration reads: Go's, and d for days.
var durationUnits = map[string]uint64{
	"ns": uint64(time.Nanosecond),
	"us": uint64(time.Microsecond),
	"µs": uint64(time.Microsecond), // U+00B5 micro sign
	"μs": uint64(time.Microsecond), // U+03BC Greek mu
	"ms": uint64(time.Millisecond),
	"s":  uint64(time.Second),
	"m":  uint64(time.Minute),
	"h":  uint64(time.Hour),
	"d":  uint64(24 * time.Hour),
}

// durationWant is what a duration looks like, for error messages.
const durationWant = "want e.g. 500ms, 30s, 5m, 2h, 1d"

// ParseDuration reads a duration as time.ParseDuration does ("1h30m",
// "-1.5s", "0"), and also with d for a day of 24 hours ("7d", "1d12h").
// It accepts what time.ParseDuration accepts, with the same value. The
// error quotes s and gives examples.
func ParseDuration(s string) (time.Duration, error) {
	bad := func() (time.Duration, error) {
		return 0, fmt.Errorf("%q is not a duration (%s)", s, durationWant)
	}
	t := s
	neg := false
	if t != "" && (t[0] == '-' || t[0] == '+') {
		neg = t[0] == '-'
		t = t[1:]
	}
	if t == "0" {
		return 0, nil
	}
	if t == "" {
		return bad()
	}
	// The total in nanoseconds, up to 1<<63 (math.MinInt64 negated).
	const limit = uint64(1) << 63
	var total uint64
	for t != "" {
		// A number: digits, an optional fraction.
		i := 0
		for i < len(t) && t[i] >= '0' && t[i] <= '9' {
			i++
		}
		whole, t1 := t[:i], t[i:]
		frac := ""
		if t1 != "" && t1[0] == '.' {
			j := 1
			for j < len(t1) && t1[j] >= '0' && t1[j] <= '9' {
				j++
			}
			frac, t1 = t1[1:j], t1[j:]
			if whole == "" && frac == "" {
				return bad()
			}
		} else if whole == "" {
			return bad()
		}
		// A unit: everything up to the next digit or '.'.
		j := 0
		for j < len(t1) && t1[j] != '.' && (t1[j] < '0' || t1[j] > '9') {
			j++
		}
		unit, ok := durationUnits[t1[:j]]
		if !ok {
			return bad()
		}
		t = t1[j:]
		v, ok := scaled(whole, frac, unit)
		if !ok || v > limit-total {
			return 0, fmt.Errorf("%q is out of range (at most about 106751d)", s)
		}
		total += v
	}
	if neg {
		return -time.Duration(total), nil // -(1<<63) wraps to math.MinInt64, as wanted
	}
	if total > math.MaxInt64 {
		return 0, fmt.Errorf("%q is out of range (at most about 106751d)", s)
	}
	return time.Duration(total), nil
}

// scaled is whole.frac times unit nanoseconds, rounded down, as
// time.ParseDuration computes it; false when above 1<<63.
func scaled(whole, frac string, unit uint64) (uint64, bool) {
	const limit = uint64(1) << 63
	var w uint64
	for i := 0; i < len(whole); i++ {
		if w > (limit-uint64(whole[i]-'0'))/10 {
			return 0, false
		}
		w = w*10 + uint64(whole[i]-'0')
	}
	if w > limit/unit {
		return 0, false
	}
	v := w * unit
	if frac == "" {
		return v, true
	}
	// The fraction's digits, as many as fit in f without overflow (the
	// rest can no longer change the result by a nanosecond's share).
	var f uint64
	scale := 1.0
	for i := 0; i < len(frac); i++ {
		if f > (limit-1)/10 {
			break
		}
		y := f*10 + uint64(frac[i]-'0')
		if y > limit {
			break
		}
		f, scale = y, scale*10
	}
	add := uint64(float64(f) * (float64(unit) / scale))
	if v > limit-add {
		return 0, false
	}
	return v + add, true
}
