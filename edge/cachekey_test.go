package edge

import (
	"strings"
	"testing"
)

func TestCacheKeyTarget(t *testing.T) {
	utm := []string{"utm_*", "gclid"}
	for _, tc := range []struct {
		cfg      CacheKeyConfig
		in, want string
	}{
		{CacheKeyConfig{}, "/p?b=2&a=1", "/p?b=2&a=1"},
		{CacheKeyConfig{}, "/p?", "/p?"},
		{CacheKeyConfig{Query: KeyQuerySorted}, "/p?b=2&a=1&a=0", "/p?a=0&a=1&b=2"},
		{CacheKeyConfig{Query: KeyQuerySorted}, "/p", "/p"},
		{CacheKeyConfig{Query: KeyQueryIgnore}, "/p?b=2&a=1", "/p"},
		{CacheKeyConfig{Query: KeyQueryAsSent, IgnoreParams: utm}, "/p?b=2&utm_source=x&a=1&gclid=9", "/p?b=2&a=1"},
		{CacheKeyConfig{Query: KeyQuerySorted, IgnoreParams: utm}, "/p?utm_medium=y&b=2&&a=1", "/p?a=1&b=2"},
		{CacheKeyConfig{Query: KeyQueryAsSent, IgnoreParams: utm}, "/p?utm_source=x", "/p"},
		{CacheKeyConfig{Query: KeyQueryAsSent, IgnoreParams: utm}, "/p?gclidx=1&utm=2", "/p?gclidx=1&utm=2"},
		{CacheKeyConfig{Query: KeyQueryAsSent, IgnoreParams: []string{"*"}}, "/p?a=1", "/p"},
		{CacheKeyConfig{Query: KeyQuerySorted}, "/a%2Fb?x=%26&y=1", "/a%2Fb?x=%26&y=1"},
	} {
		if got := tc.cfg.withDefaults().target(tc.in); got != tc.want {
			t.Errorf("%+v target(%q) = %q, want %q", tc.cfg, tc.in, got, tc.want)
		}
	}
}

func TestCacheKeyConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  CacheKeyConfig
		want string
	}{
		{CacheKeyConfig{Query: "drop"}, `cache_key.query: "drop"`},
		{CacheKeyConfig{Query: KeyQueryAsSent, IgnoreParams: []string{"utm_*", ""}}, "cache_key.ignore_params[1]"},
		{CacheKeyConfig{Query: KeyQueryAsSent, IgnoreParams: []string{"a*b"}}, "cache_key.ignore_params[0]"},
		{CacheKeyConfig{Query: KeyQueryAsSent, IgnoreParams: []string{"a=b"}}, "cache_key.ignore_params[0]"},
	} {
		err := tc.cfg.validate("cache_key")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if err := (CacheKeyConfig{IgnoreParams: []string{"utm_*", "fbclid", "*"}}).withDefaults().validate("k"); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}

func FuzzCacheKeyTarget(f *testing.F) {
	f.Add("/p?b=2&utm_source=x&a=1", "utm_*")
	f.Add("/p?", "")
	f.Add("/?&&=&", "*")
	f.Fuzz(func(t *testing.T, target, pattern string) {
		for _, q := range []string{KeyQueryAsSent, KeyQuerySorted, KeyQueryIgnore} {
			c := CacheKeyConfig{Query: q, IgnoreParams: []string{pattern}}
			if c.validate("k") != nil {
				c.IgnoreParams = nil
			}
			got := c.target(target)
			path, _, _ := strings.Cut(target, "?")
			if !strings.HasPrefix(got, path) {
				t.Fatalf("%+v target(%q) = %q lost the path", c, target, got)
			}
			if again := c.target(got); again != got && c.rewrites() {
				t.Fatalf("%+v: target(%q) = %q, then %q", c, target, got, again)
			}
		}
	})
}
