package policy

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

const sec = time.Second

// dirs builds expected Directives from NoDirectives.
func dirs(f func(d *Directives)) Directives {
	d := NoDirectives()
	f(&d)
	return d
}

func TestParseCacheControl(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want Directives
	}{
		{"nil", nil, NoDirectives()},
		{"empty", []string{""}, NoDirectives()},
		{"only commas and spaces", []string{" , ,\t,, "}, NoDirectives()},
		{"typical", []string{"public, max-age=60, s-maxage=120"}, dirs(func(d *Directives) {
			d.Public, d.MaxAge, d.SMaxAge = true, 60*sec, 120*sec
		})},
		{"case-insensitive names", []string{"No-Store, MAX-AGE=5, Must-Revalidate"}, dirs(func(d *Directives) {
			d.NoStore, d.MaxAge, d.MustRevalidate = true, 5*sec, true
		})},
		{"all booleans", []string{"no-store,no-cache,private,public,must-revalidate,proxy-revalidate,immutable,only-if-cached,no-transform,must-understand"}, dirs(func(d *Directives) {
			d.NoStore, d.NoCache, d.Private, d.Public, d.MustRevalidate, d.ProxyRevalidate = true, true, true, true, true, true
			d.Immutable, d.OnlyIfCached, d.NoTransform, d.MustUnderstand = true, true, true, true
		})},
		{"quoted value", []string{`max-age="60"`}, dirs(func(d *Directives) { d.MaxAge = 60 * sec })},
		{"quoted value with escape", []string{`max-age="6\0"`}, dirs(func(d *Directives) { d.MaxAge = 60 * sec })},
		{"whitespace around =", []string{"max-age = 60"}, dirs(func(d *Directives) { d.MaxAge = 60 * sec })},
		{"huge max-age clamps to 2^31", []string{"max-age=99999999999999999999"}, dirs(func(d *Directives) { d.MaxAge = maxDelta })},
		{"exactly 2^31", []string{"max-age=2147483648"}, dirs(func(d *Directives) { d.MaxAge = maxDelta })},
		{"just below 2^31", []string{"max-age=2147483647"}, dirs(func(d *Directives) { d.MaxAge = maxDelta - sec })},
		{"negative max-age is stale", []string{"max-age=-5"}, dirs(func(d *Directives) { d.MaxAge = 0 })},
		{"non-numeric max-age is stale", []string{"max-age=abc"}, dirs(func(d *Directives) { d.MaxAge = 0 })},
		{"empty max-age is stale", []string{"max-age="}, dirs(func(d *Directives) { d.MaxAge = 0 })},
		{"valueless max-age is stale", []string{"max-age"}, dirs(func(d *Directives) { d.MaxAge = 0 })},
		{"decimal max-age is stale", []string{"max-age=1.5"}, dirs(func(d *Directives) { d.MaxAge = 0 })},
		{"trailing garbage spoils value", []string{"max-age=60 x"}, dirs(func(d *Directives) { d.MaxAge = 0 })},
		{"unterminated quote is stale", []string{`max-age="60`}, dirs(func(d *Directives) { d.MaxAge = 0 })},
		{"duplicate equal max-age", []string{"max-age=60", "max-age=60"}, dirs(func(d *Directives) { d.MaxAge = 60 * sec })},
		{"duplicate conflicting max-age", []string{"max-age=60, max-age=120"}, dirs(func(d *Directives) { d.MaxAge = 0 })},
		{"conflict is sticky", []string{"max-age=60, max-age=120, max-age=60"}, dirs(func(d *Directives) { d.MaxAge = 0 })},
		{"duplicate conflicting s-maxage across lines", []string{"s-maxage=1", "s-maxage=2"}, dirs(func(d *Directives) { d.SMaxAge = 0 })},
		{"stale extensions", []string{"stale-while-revalidate=30, stale-if-error=600"}, dirs(func(d *Directives) {
			d.StaleWhileRevalidate, d.StaleIfError = 30*sec, 600*sec
		})},
		{"duplicate stale takes smallest", []string{"stale-if-error=600, stale-if-error=60"}, dirs(func(d *Directives) { d.StaleIfError = 60 * sec })},
		{"invalid stale is zero", []string{"stale-while-revalidate=soon"}, dirs(func(d *Directives) { d.StaleWhileRevalidate = 0 })},
		{"max-stale without value", []string{"max-stale"}, dirs(func(d *Directives) { d.MaxStaleAny = true })},
		{"max-stale with value", []string{"max-stale=10"}, dirs(func(d *Directives) { d.MaxStale = 10 * sec })},
		{"min-fresh", []string{"min-fresh=5, min-fresh=9"}, dirs(func(d *Directives) { d.MinFresh = 9 * sec })},
		{"invalid min-fresh ignored", []string{"min-fresh=x"}, NoDirectives()},
		{"qualified no-cache", []string{`no-cache="set-cookie, X-Foo"`}, dirs(func(d *Directives) {
			d.NoCacheFields = []string{"Set-Cookie", "X-Foo"}
		})},
		{"qualified no-cache token form", []string{`no-cache=Set-Cookie`}, dirs(func(d *Directives) {
			d.NoCacheFields = []string{"Set-Cookie"}
		})},
		{"qualified private deduplicated", []string{`private="x-b,x-a"`, `private="X-A"`}, dirs(func(d *Directives) {
			d.PrivateFields = []string{"X-A", "X-B"}
		})},
		{"comma inside quoted string", []string{`private="a, b", max-age=5`}, dirs(func(d *Directives) {
			d.PrivateFields, d.MaxAge = []string{"A", "B"}, 5*sec
		})},
		{"empty qualified no-cache is unqualified", []string{`no-cache=""`}, dirs(func(d *Directives) { d.NoCache = true })},
		{"malformed qualified private is unqualified", []string{`private="a b"`}, dirs(func(d *Directives) { d.Private = true })},
		{"unterminated qualified private is unqualified", []string{`private="a, no-store`}, dirs(func(d *Directives) { d.Private = true })},
		{"qualified and unqualified", []string{`no-cache, no-cache="A"`}, dirs(func(d *Directives) {
			d.NoCache, d.NoCacheFields = true, []string{"A"}
		})},
		{"unknown extensions ignored", []string{`community="UCI", foo=bar, max-age=3, baz`}, dirs(func(d *Directives) { d.MaxAge = 3 * sec })},
		{"quoted unknown with comma", []string{`ext="a,max-age=9,b", max-age=1`}, dirs(func(d *Directives) { d.MaxAge = 1 * sec })},
		{"garbage", []string{`=;"\,==,"no-store`}, NoDirectives()},
		{"non-ASCII fold does not match", []string{"max-age=1, no-ſtore"}, dirs(func(d *Directives) { d.MaxAge = 1 * sec })},
		{"lines combine", []string{"no-store", "max-age=1"}, dirs(func(d *Directives) { d.NoStore, d.MaxAge = true, 1*sec })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseCacheControl(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseCacheControl(%q)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseCacheControlHostileSizes(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Directives
	}{
		{"10 KB of commas", strings.Repeat(",", 10<<10), NoDirectives()},
		{"10 KB of commas then max-age", strings.Repeat(",", 10<<10) + "max-age=7", dirs(func(d *Directives) { d.MaxAge = 7 * sec })},
		{"long unterminated quote", `x="` + strings.Repeat(`\"`, 50<<10), NoDirectives()},
		{"many directives", strings.Repeat("no-store,", 20<<10), dirs(func(d *Directives) { d.NoStore = true })},
		{"too many qualified fields", `private="` + strings.Repeat("a,", 100<<10) + `"`, dirs(func(d *Directives) {
			d.Private = true
			d.PrivateFields = []string{"A"}
		})},
		{"long digits", "max-age=" + strings.Repeat("9", 100<<10), dirs(func(d *Directives) { d.MaxAge = maxDelta })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseCacheControl([]string{tt.in})
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNoDirectivesEqualsParseNil(t *testing.T) {
	if got := ParseCacheControl(nil); !reflect.DeepEqual(got, NoDirectives()) {
		t.Fatalf("ParseCacheControl(nil) = %+v", got)
	}
}

func TestParseCacheControlAllocs(t *testing.T) {
	in := []string{"public, max-age=3600, s-maxage=7200, stale-while-revalidate=60, stale-if-error=86400"}
	if n := testing.AllocsPerRun(100, func() { _ = ParseCacheControl(in) }); n != 0 {
		t.Errorf("ParseCacheControl of a typical value: %v allocs, want 0", n)
	}
	q := []string{`private="Set-Cookie", max-age=60`}
	if n := testing.AllocsPerRun(100, func() { _ = ParseCacheControl(q) }); n > 1 {
		t.Errorf("ParseCacheControl of a qualified value: %v allocs, want ≤ 1 (the slice)", n)
	}
}

func BenchmarkParseCacheControl(b *testing.B) {
	in := []string{"public, max-age=3600, s-maxage=7200, stale-while-revalidate=60, stale-if-error=86400"}
	b.ReportAllocs()
	for b.Loop() {
		_ = ParseCacheControl(in)
	}
}
