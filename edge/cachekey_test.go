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
		// Parameter cloaking: with '&' alone as the separator, a parameter
		// holding ';' is kept whatever its name, since an origin that also
		// splits on ';' would find id=EVIL in it.
		{CacheKeyConfig{Query: KeyQueryAsSent, IgnoreParams: utm}, "/p?id=1&utm_source=x;id=EVIL", "/p?id=1&utm_source=x;id=EVIL"},
		{CacheKeyConfig{Query: KeyQuerySorted, IgnoreParams: utm}, "/p?utm_source=x;id=EVIL&id=1", "/p?id=1&utm_source=x;id=EVIL"},
		// With "&;" the origin's split is the key's: the ignored part goes,
		// id=EVIL stays (and reaches the origin as its own parameter).
		{CacheKeyConfig{Query: KeyQueryAsSent, IgnoreParams: utm, Separators: "&;"}, "/p?id=1&utm_source=x;id=EVIL", "/p?id=1&id=EVIL"},
		{CacheKeyConfig{Query: KeyQueryAsSent, IgnoreParams: utm, Separators: "&;"}, "/p?utm_source=x;gclid=1", "/p"},
		{CacheKeyConfig{Query: KeyQueryIgnore, Separators: "&;"}, "/p?a=1;b=2", "/p"},
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
		{CacheKeyConfig{Query: KeyQueryAsSent, Separators: ";"}, `cache_key.separators: ";"`},
		{CacheKeyConfig{Query: KeyQueryAsSent, Separators: "&,"}, `cache_key.separators: "&,"`},
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
	f.Add("/p?id=1&utm_source=x;id=EVIL", "utm_*")
	f.Fuzz(func(t *testing.T, target, pattern string) {
		for _, q := range []string{KeyQueryAsSent, KeyQuerySorted, KeyQueryIgnore} {
			for _, seps := range []string{"&", "&;"} {
				c := CacheKeyConfig{Query: q, IgnoreParams: []string{pattern}, Separators: seps}
				if c.validate("k") != nil {
					c.IgnoreParams = nil
				}
				checkTarget(t, c, target)
			}
		}
	})
}

// checkTarget checks c.target(target) keeps the path, is stable, and
// leaves no ignored parameter an origin splitting on '&' and ';' would
// find, unless it shares its piece with one that is kept.
func checkTarget(t *testing.T, c CacheKeyConfig, target string) {
	t.Helper()
	got := c.target(target)
	path, _, _ := strings.Cut(target, "?")
	if !strings.HasPrefix(got, path) {
		t.Fatalf("%+v target(%q) = %q lost the path", c, target, got)
	}
	if again := c.target(got); again != got && c.rewrites() {
		t.Fatalf("%+v: target(%q) = %q, then %q", c, target, got, again)
	}
	if !c.rewrites() {
		return
	}
	_, kq, _ := strings.Cut(got, "?")
	for _, piece := range strings.Split(kq, "&") {
		if strings.Contains(c.Separators, ";") && strings.Contains(piece, ";") {
			t.Fatalf("%+v: target(%q) = %q kept a ';' although it separates", c, target, got)
		}
		if !strings.Contains(piece, ";") && piece != "" && c.ignored(piece) {
			t.Fatalf("%+v: target(%q) = %q kept ignored %q", c, target, got, piece)
		}
	}
}
