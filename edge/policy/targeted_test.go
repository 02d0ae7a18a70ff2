package policy

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dunglas/httpsfv"
)

func TestParseTargeted(t *testing.T) {
	with := func(f func(*Directives)) Directives {
		d := NoDirectives()
		f(&d)
		return d
	}
	tests := []struct {
		name  string
		lines []string
		ok    bool
		want  Directives // when ok
	}{
		{"absent", nil, false, Directives{}},
		{"empty", []string{""}, false, Directives{}},
		{"only commas", []string{" , "}, false, Directives{}},
		{"max-age", []string{"max-age=3600"}, true, with(func(d *Directives) { d.MaxAge = time.Hour })},
		{"all durations", []string{"max-age=1, s-maxage=2, stale-while-revalidate=3, stale-if-error=4"}, true,
			with(func(d *Directives) {
				d.MaxAge, d.SMaxAge, d.StaleWhileRevalidate, d.StaleIfError = sec, 2*sec, 3*sec, 4*sec
			})},
		{"max-age 0", []string{"max-age=0"}, true, with(func(d *Directives) { d.MaxAge = 0 })},
		{"max-age clamps", []string{"max-age=99999999999"}, true, with(func(d *Directives) { d.MaxAge = maxDelta })},
		{"booleans", []string{"no-store, public, must-revalidate, proxy-revalidate, immutable, must-understand, no-transform"}, true,
			with(func(d *Directives) {
				d.NoStore, d.Public, d.MustRevalidate, d.ProxyRevalidate, d.Immutable, d.MustUnderstand, d.NoTransform = true, true, true, true, true, true, true
			})},
		{"explicit true", []string{"no-store=?1"}, true, with(func(d *Directives) { d.NoStore = true })},
		{"unqualified no-cache and private", []string{"no-cache, private"}, true, with(func(d *Directives) { d.NoCache, d.Private = true, true })},
		{"qualified as String", []string{`no-cache="set-cookie, X-A", private="x-b"`}, true,
			with(func(d *Directives) { d.NoCacheFields, d.PrivateFields = []string{"Set-Cookie", "X-A"}, []string{"X-B"} })},
		{"qualified as Token", []string{"private=Set-Cookie"}, true, with(func(d *Directives) { d.PrivateFields = []string{"Set-Cookie"} })},
		{"malformed list is unqualified", []string{`private="a b"`}, true, with(func(d *Directives) { d.Private = true })},
		{"empty list is unqualified", []string{`no-cache=""`}, true, with(func(d *Directives) { d.NoCache = true })},
		{"extension only", []string{"none"}, true, NoDirectives()},
		{"extension of any type", []string{`foobar="x", max-age=60, ext=(1 2);a=?0, other=@1659578233`}, true, with(func(d *Directives) { d.MaxAge = time.Minute })},
		{"request directives are extensions here", []string{`max-stale="x", min-fresh=1.5, only-if-cached=?0`}, true, NoDirectives()},
		{"parameters ignored", []string{"max-age=60;foo=bar, no-store;x"}, true, with(func(d *Directives) { d.MaxAge, d.NoStore = time.Minute, true })},
		{"lines are one field", []string{"max-age=60", "no-store"}, true, with(func(d *Directives) { d.MaxAge, d.NoStore = time.Minute, true })},
		{"last duplicate wins", []string{"max-age=60, max-age=5"}, true, with(func(d *Directives) { d.MaxAge = 5 * sec })},
		{"tabs around commas", []string{"max-age=60,\tno-store"}, true, with(func(d *Directives) { d.MaxAge, d.NoStore = time.Minute, true })},

		// Not an sf-dictionary: the field is ignored.
		{"garbage member", []string{"max-age=10000, &&&&&"}, false, Directives{}},
		{"upper-case key", []string{"MaX-aGe=3600"}, false, Directives{}},
		{"space before =", []string{"max-age =100"}, false, Directives{}},
		{"space after =", []string{"max-age= 100"}, false, Directives{}},
		{"trailing comma", []string{"max-age=60,"}, false, Directives{}},
		{"unterminated string", []string{`private="a`}, false, Directives{}},
		{"integer too long", []string{"max-age=9999999999999999"}, false, Directives{}},
		{"an empty line joins as a trailing comma", []string{"max-age=60", ""}, false, Directives{}},
		{"Cache-Control quoting", []string{`max-age=60, no-cache=Set-Cookie, X-A`}, false, Directives{}},

		// A known directive of the wrong type: the field is ignored.
		{"max-age as String", []string{`max-age="10000"`}, false, Directives{}},
		{"max-age as Decimal", []string{"max-age=1.5"}, false, Directives{}},
		{"max-age negative", []string{"max-age=-1"}, false, Directives{}},
		{"max-age as Token", []string{"max-age=abc"}, false, Directives{}},
		{"max-age as Boolean", []string{"max-age"}, false, Directives{}},
		{"s-maxage as Inner List", []string{"s-maxage=(1 2)"}, false, Directives{}},
		{"stale-if-error as Byte Sequence", []string{"stale-if-error=:AQ==:"}, false, Directives{}},
		{"no-store false", []string{"no-store=?0, max-age=600"}, false, Directives{}},
		{"no-store with a value", []string{"no-store=1, max-age=600"}, false, Directives{}},
		{"private as Integer", []string{"private=1"}, false, Directives{}},
		{"no-cache as Inner List", []string{`no-cache=("a" "b")`}, false, Directives{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, ok := parseTargeted(tt.lines)
			if ok != tt.ok {
				t.Fatalf("parseTargeted(%q) ok = %v, want %v (%+v)", tt.lines, ok, tt.ok, d)
			}
			if !ok {
				tt.want = NoDirectives()
			}
			if !reflect.DeepEqual(d, tt.want) {
				t.Fatalf("parseTargeted(%q)\n got %+v\nwant %+v", tt.lines, d, tt.want)
			}
		})
	}
}

// simpleDirectives matches fields that Cache-Control and CDN-Cache-Control
// syntax read alike: lower-case names, Integer or no values, one SP after
// each comma.
var simpleDirectives = regexp.MustCompile(`^[a-z][a-z-]*(=[0-9]{1,15})?(, [a-z][a-z-]*(=[0-9]{1,15})?)*$`)

// targetedSeeds are CDN-Cache-Control values from the tests, the RFC 9213
// examples and a public conformance suite.
var targetedSeeds = []string{
	"max-age=3600", "max-age=10000, &&&&&", `max-age="10000"`, "MaX-aGe=3600", "max-age =100",
	"max-age= 100", "foobar, max-age=3600", "none", "no-store", "private", `no-cache="Set-Cookie"`,
	"max-age=99999999999", "max-age=1.5", "max-age=-1", "no-store=?0", "s-maxage=60;foo=bar",
	"max-age=(1 2)", "max-age=60\nno-store", "max-age=60, stale-while-revalidate=30, stale-if-error=600",
}

func FuzzParseTargeted(f *testing.F) {
	for _, s := range targetedSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lines := strings.Split(s, "\n")
		d, ok := parseTargeted(lines)
		if !ok {
			if !reflect.DeepEqual(d, NoDirectives()) {
				t.Fatalf("ignored field %q gave directives %+v", s, d)
			}
			if dict, err := httpsfv.UnmarshalDictionary(lines); err == nil && len(dict.Names()) > 0 {
				// A valid dictionary is only refused for a known
				// directive of the wrong type.
				bad := false
				for _, n := range dict.Names() {
					bad = bad || knownTargeted(n)
				}
				if !bad {
					t.Fatalf("refused %q, a dictionary of extensions only", s)
				}
			}
			return
		}
		if d2, ok2 := parseTargeted(lines); !ok2 || !reflect.DeepEqual(d, d2) {
			t.Fatalf("not deterministic on %q", s)
		}
		for _, v := range []time.Duration{d.MaxAge, d.SMaxAge, d.StaleWhileRevalidate, d.StaleIfError} {
			if v < -1 || v > maxDelta || (v > 0 && v%time.Second != 0) {
				t.Fatalf("duration out of range: %v in %+v", v, d)
			}
		}
		if d.MaxStale != -1 || d.MinFresh != -1 || d.MaxStaleAny || d.OnlyIfCached {
			t.Fatalf("request directives set from %q: %+v", s, d)
		}
		// The accepted field serialises to an equivalent one.
		dict, err := httpsfv.UnmarshalDictionary(lines)
		if err != nil {
			t.Fatalf("accepted %q, which is not an sf-dictionary: %v", s, err)
		}
		out, err := httpsfv.Marshal(dict)
		if err != nil {
			t.Fatalf("cannot serialise %q: %v", s, err)
		}
		if d2, ok2 := parseTargeted([]string{out}); !ok2 || !reflect.DeepEqual(d, d2) {
			t.Fatalf("%q serialised as %q reads differently:\n%+v\n%+v", s, out, d, d2)
		}
		// Where both syntaxes read the text alike, so do both parsers.
		if simpleDirectives.MatchString(s) && len(dict.Names()) == strings.Count(s, ",")+1 { // no duplicates
			cc := ParseCacheControl(lines)
			if cc.MaxAge != d.MaxAge || cc.SMaxAge != d.SMaxAge || cc.NoStore != d.NoStore || cc.Public != d.Public ||
				cc.StaleIfError != d.StaleIfError || cc.StaleWhileRevalidate != d.StaleWhileRevalidate {
				t.Fatalf("%q: Cache-Control reads %+v, CDN-Cache-Control %+v", s, cc, d)
			}
		}
	})
}
