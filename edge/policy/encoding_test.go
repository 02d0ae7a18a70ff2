package policy

import (
	"strings"
	"testing"
)

func TestNormalizeAcceptEncoding(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
		ok   bool
	}{
		{[]string{"gzip, deflate, br, zstd"}, "br, gzip, zstd", true}, // Chrome, Firefox
		{[]string{"br, gzip, deflate"}, "br, gzip", true},             // Safari
		{[]string{"gzip"}, "gzip", true},                              // Go
		{[]string{"br;q=1.0, gzip;q=0.8, *;q=0.1"}, "br, gzip, zstd", true},
		{[]string{"gzip", "br"}, "br, gzip", true},
		{[]string{"GZIP, X-Gzip"}, "gzip", true},
		{[]string{"gzip;q=0, br"}, "br", true},
		{[]string{"gzip;Q=0.000, deflate"}, "identity", true},
		{[]string{"deflate"}, "identity", true},
		{[]string{""}, "identity", true}, // empty: no coding wanted
		{[]string{"identity"}, "identity", true},
		{[]string{"*"}, "br, gzip, zstd", true},
		{[]string{"*, br;q=0"}, "gzip, zstd", true},
		{[]string{" gzip ;q=0.5 , , br"}, "br, gzip", true},
		{[]string{"gzip, identity;q=0"}, "", false}, // refuses identity
		{[]string{"gzip, *;q=0"}, "", false},
		{[]string{"gzip;q=2"}, "", false},
		{[]string{"gzip;q=0.5000"}, "", false},
		{[]string{"gzip;level=9"}, "", false},
		{[]string{"gzip;q=1.5"}, "", false},
		{[]string{"gzip;q="}, "", false},
	} {
		got, ok := NormalizeAcceptEncoding(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("NormalizeAcceptEncoding(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// acceptable reports whether coding is acceptable under Accept-Encoding
// lines, as RFC 9110 §12.5.3 reads them (a simple reference reading).
func acceptable(lines []string, coding string) bool {
	var star *bool
	for _, l := range lines {
		for _, item := range strings.Split(l, ",") {
			name, w, _ := strings.Cut(strings.TrimSpace(item), ";")
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "x-gzip" {
				name = "gzip"
			}
			pos, _ := parseWeight(w)
			if w == "" {
				pos = true
			}
			switch name {
			case coding:
				return pos
			case "*":
				star = &pos
			}
		}
	}
	if coding == "identity" {
		return true
	}
	return star != nil && *star
}

func FuzzNormalizeAcceptEncoding(f *testing.F) {
	for _, s := range []string{"gzip, deflate, br, zstd", "br;q=1.0, gzip;q=0.8, *;q=0.1", "*, br;q=0", "gzip;q=0", "x-gzip", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		in := []string{s}
		got, ok := NormalizeAcceptEncoding(in)
		if !ok {
			return
		}
		// Idempotent, and never asks for a coding the client refuses.
		if again, ok2 := NormalizeAcceptEncoding([]string{got}); !ok2 || again != got {
			t.Fatalf("normalize(%q) = %q, then %q, %v", s, got, again, ok2)
		}
		if got == "identity" {
			return
		}
		for _, c := range strings.Split(got, ", ") {
			if !acceptable(in, c) {
				t.Fatalf("normalize(%q) = %q asks for %s, which the client does not accept", s, got, c)
			}
		}
	})
}
