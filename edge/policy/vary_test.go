package policy

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestVaryFields(t *testing.T) {
	tests := []struct {
		name   string
		vary   []string
		fields []string
		ok     bool
	}{
		{"none", nil, nil, true},
		{"empty", []string{" , "}, nil, true},
		{"one", []string{"accept-encoding"}, []string{"Accept-Encoding"}, true},
		{"sorted and deduplicated", []string{"User-Agent, accept-encoding", "ACCEPT-ENCODING,Accept"}, []string{"Accept", "Accept-Encoding", "User-Agent"}, true},
		{"star", []string{"Accept, *"}, nil, false},
		{"star alone", []string{"*"}, nil, false},
		{"invalid names skipped", []string{`a"b, X y, Accept`}, []string{"Accept"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fields, ok := VaryFields(tt.vary)
			if ok != tt.ok || !reflect.DeepEqual(fields, tt.fields) {
				t.Errorf("VaryFields(%q) = %q, %v; want %q, %v", tt.vary, fields, ok, tt.fields, tt.ok)
			}
		})
	}
}

func TestSecondaryKey(t *testing.T) {
	same := []struct {
		name   string
		vary1  []string
		req1   http.Header
		vary2  []string
		req2   http.Header
		differ bool
	}{
		{"order and case of Vary", []string{"Accept-Encoding, User-Agent"}, hdr("Accept-Encoding", "gzip", "User-Agent", "x"),
			[]string{"user-agent", "ACCEPT-ENCODING"}, hdr("User-Agent", "x", "Accept-Encoding", "gzip"), false},
		{"VaryFields result equals raw", []string{"accept-encoding,accept"}, hdr("Accept", "a", "Accept-Encoding", "b"),
			[]string{"Accept", "Accept-Encoding"}, hdr("Accept", "a", "Accept-Encoding", "b"), false},
		{"whitespace trimmed", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "  gzip , br "),
			[]string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip,br"), false},
		{"lines joined", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip", "Accept-Encoding", "br"),
			[]string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip, br"), false},
		{"different values", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip"),
			[]string{"Accept-Encoding"}, hdr("Accept-Encoding", "br"), true},
		{"value case matters", []string{"X-A"}, hdr("X-A", "v"),
			[]string{"X-A"}, hdr("X-A", "V"), true},
		{"absent differs from empty", []string{"Accept-Encoding"}, hdr(),
			[]string{"Accept-Encoding"}, hdr("Accept-Encoding", ""), true},
		{"value cannot forge another field", []string{"A, B"}, hdr("A", "x\nB:y"),
			[]string{"A, B"}, hdr("A", "x", "B", "y"), true},
		{"comma escaping", []string{"A"}, hdr("A", "x%2Cy"),
			[]string{"A"}, hdr("A", "x,y"), true},
		{"unrelated fields ignored", []string{"Accept"}, hdr("Accept", "a", "Cookie", "1"),
			[]string{"Accept"}, hdr("Accept", "a", "Cookie", "2"), false},
	}
	for _, tt := range same {
		t.Run(tt.name, func(t *testing.T) {
			k1, ok1 := SecondaryKey(tt.vary1, tt.req1)
			k2, ok2 := SecondaryKey(tt.vary2, tt.req2)
			if !ok1 || !ok2 {
				t.Fatalf("ok = %v, %v", ok1, ok2)
			}
			if (k1 != k2) != tt.differ {
				t.Errorf("keys %q and %q: differ=%v, want %v", k1, k2, k1 != k2, tt.differ)
			}
		})
	}
	t.Run("star", func(t *testing.T) {
		if k, ok := SecondaryKey([]string{"accept, *"}, hdr("Accept", "a")); ok || k != "" {
			t.Errorf("SecondaryKey with * = %q, %v", k, ok)
		}
	})
	t.Run("no vary", func(t *testing.T) {
		if k, ok := SecondaryKey(nil, hdr("Accept", "a")); !ok || k != "" {
			t.Errorf("SecondaryKey without Vary = %q, %v", k, ok)
		}
	})
	t.Run("many fields", func(t *testing.T) {
		var names []string
		h := http.Header{}
		for i := range 40 {
			n := "X-F" + strings.Repeat("a", i)
			names = append(names, n)
			h.Set(n, "v")
		}
		k, ok := SecondaryKey([]string{strings.Join(names, ",")}, h)
		if !ok || strings.Count(k, "\n") != 40 {
			t.Errorf("SecondaryKey with 40 fields = %q, %v", k, ok)
		}
	})
}

func TestSecondaryKeyAllocs(t *testing.T) {
	vary := []string{"Accept-Encoding"}
	req := hdr("Accept-Encoding", "gzip, deflate, br", "User-Agent", "test")
	if n := testing.AllocsPerRun(100, func() { _, _ = SecondaryKey(vary, req) }); n > 1 {
		t.Errorf("SecondaryKey: %v allocs, want ≤ 1 (the key)", n)
	}
}

func BenchmarkSecondaryKey(b *testing.B) {
	vary := []string{"Accept-Encoding, Accept-Language"}
	req := hdr("Accept-Encoding", "gzip, deflate, br", "Accept-Language", "en-GB,en;q=0.9")
	b.ReportAllocs()
	for b.Loop() {
		_, _ = SecondaryKey(vary, req)
	}
}
