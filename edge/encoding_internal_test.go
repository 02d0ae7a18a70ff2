package edge

import (
	"net/http"
	"testing"

	"github.com/meridiancdn/meridian/edge/compress"
	"github.com/meridiancdn/meridian/edge/policy"
)

// The fast front's variant key must be the one the store holds the
// variant under (put: variantKey of the secondary key).
func TestCodingVariantKeyAgreesWithVariantKey(t *testing.T) {
	for _, c := range []compress.Coding{compress.Identity, compress.Gzip, compress.Brotli, compress.Zstd} {
		sk, ok := policy.SecondaryKey([]string{"Accept-Encoding"}, http.Header{"Accept-Encoding": {c.String()}})
		if !ok {
			t.Fatal("no secondary key")
		}
		want := variantKey("https://site.test/a?b", 42, sk)
		if got := string(appendCodingVariantKey(nil, "https://site.test/a?b", 42, c)); got != want {
			t.Fatalf("%s: %q, want %q", c, got, want)
		}
	}
}

func TestSuffixETag(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{`"abc"`, `"abc-br"`, true},
		{`W/"abc"`, `W/"abc-br"`, true},
		{`""`, `"-br"`, true},
		{`abc`, "", false},
		{`"a"b"`, "", false},
		{`"`, "", false},
	} {
		got, ok := suffixETag(tc.in, compress.Brotli)
		if got != tc.want || ok != tc.ok {
			t.Errorf("suffixETag(%s) = %s, %v; want %s, %v", tc.in, got, ok, tc.want, tc.ok)
		}
		if ok && unsuffixETag(got, compress.Brotli) != tc.in {
			t.Errorf("unsuffixETag(%s) = %s, want %s", got, unsuffixETag(got, compress.Brotli), tc.in)
		}
	}
}

// isCodingVariantKey knows a coding's variant key under a vary index on
// Accept-Encoding alone, and no other key.
func TestIsCodingVariantKey(t *testing.T) {
	const primary = "site.test/a"
	br := string(appendCodingVariantKey(nil, primary, 7, compress.Brotli))
	if !isCodingVariantKey(br, compress.Brotli) {
		t.Errorf("%q: br's variant not known", br)
	}
	for _, k := range []struct {
		key string
		c   compress.Coding
	}{
		{br, compress.Gzip},
		{br, compress.Identity},
		{primary, compress.Brotli},
		{variantKey(primary, 7, "Accept-Encoding:br\nAccept-Language:en\n"), compress.Brotli},
		{variantKey(primary, 7, "Accept-Language:en\n"), compress.Brotli},
		{"Accept-Encoding:br\n", compress.Brotli},
	} {
		if isCodingVariantKey(k.key, k.c) {
			t.Errorf("%q taken for %s's variant", k.key, k.c)
		}
	}
}
