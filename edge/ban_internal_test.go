package edge

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/policy"
	"github.com/meridiancdn/meridian/edge/store"
)

// banSeeds are the parser table's expressions, good and bad; they seed
// FuzzParseBan (with testdata/fuzz/FuzzParseBan).
var banSeeds = []struct {
	expr string
	ok   bool
}{
	{`req.url ~ ^/a/`, true},
	{`req.http.host == Example.COM. && req.url ~ "^/img/.*\.png$"`, true},
	{`obj.http.X-Magento-Tags ~ "((^|,)cat_p_1(,|$))"`, true},
	{`obj.http.content-type !~ image && req.url != "/x y"`, true},
	{`req.url == "a\"b\\c"`, true},
	{`req.url ~ "a\"b\\."`, true},
	{`req.url ~ ""`, true},
	{`req.url==/a&&req.url!=/b`, true}, // one condition: a bare argument runs to white space
	{`req.url == /a && req.url != /b`, true},
	{``, false},
	{`&&`, false},
	{`req.url ~ a &&`, false},
	{`req.url ~ (a`, false},
	{`req.url = a`, false},
	{`req.body ~ a`, false},
	{`obj.http. ~ a`, false},
	{`obj.http.a:b ~ a`, false},
	{`req.url ~ "a`, false},
	{`req.url ~ a"b`, false},
	{`req.url ~`, false},
	{"req.url ~ \"a\nb\"", false},
	{strings.Repeat("req.url ~ a && ", 8) + "req.url ~ a", false},
	{`req.url ~ ` + strings.Repeat("a", maxBanBytes), false},
	{`req.url ~ a{1001}`, false},
}

func TestParseBan(t *testing.T) {
	for _, c := range banSeeds {
		conds, err := parseBan(c.expr)
		if (err == nil) != c.ok {
			t.Errorf("parseBan(%q) = %v, want ok %v", c.expr, err, c.ok)
			continue
		}
		if err != nil && !strings.HasPrefix(err.Error(), "ban: ") {
			t.Errorf("parseBan(%q): error %q does not say it is the ban", c.expr, err)
		}
		if err == nil {
			checkRoundTrip(t, c.expr, conds)
		}
	}
	conds, _ := parseBan(`req.http.host == Example.COM. && req.url ~ "^/img/.*\.png$"`)
	if conds[0].arg != "example.com" || conds[1].arg != `^/img/.*\.png$` {
		t.Fatalf("conds %+v", conds)
	}
}

// checkRoundTrip checks that conds print as an expression that parses
// back to the same conditions.
func checkRoundTrip(t *testing.T, expr string, conds []banCond) {
	t.Helper()
	parts := make([]string, len(conds))
	for i, c := range conds {
		parts[i] = c.String()
	}
	// Quotes and escapes may make it longer than the bound: what a
	// node propagates is the expression as sent, not as printed.
	again, err := parseBanConds(strings.Join(parts, " && "))
	if err != nil {
		t.Fatalf("%q prints as %q, which does not parse: %v", expr, parts, err)
	}
	if len(again) != len(conds) {
		t.Fatalf("%q: %d conditions, printed and parsed %d", expr, len(conds), len(again))
	}
	for i := range conds {
		a, b := conds[i], again[i]
		if a.field != b.field || a.header != b.header || a.op != b.op || a.arg != b.arg {
			t.Fatalf("%q: condition %d %+v printed and parsed is %+v", expr, i, a, b)
		}
	}
}

// FuzzParseBan: any input is parsed or refused with a "ban: " error,
// never a panic; what parses prints back to the same conditions, and
// matching it against an entry does not panic.
func FuzzParseBan(f *testing.F) {
	for _, c := range banSeeds {
		f.Add(c.expr)
	}
	e := store.NewFilling(200, http.Header{"Content-Type": {"image/png"}, "X-Magento-Tags": {"cat_p_1"}}, policy.Policy{}, time.Unix(1, 0))
	f.Fuzz(func(t *testing.T, expr string) {
		conds, err := parseBan(expr)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "ban: ") {
				t.Fatalf("error %q", err)
			}
			return
		}
		if len(conds) == 0 || len(conds) > maxBanConds {
			t.Fatalf("%d conditions", len(conds))
		}
		checkRoundTrip(t, expr, conds)
		b := newBan(conds, nil, false, time.Unix(2, 0))
		b.matches("https://site.test/img/a.png?x=1", e)
		verdict([]*ban{b}, "site.test/a", e)
	})
}

// purgeRequestSeeds seed FuzzPurgeOfRequest: a target and a header.
var purgeRequestSeeds = []struct{ target, name, value string }{
	{"/a/1", "", ""},
	{"/a/.*", "X-Purge-Method", "regex"},
	{"/", "X-Purge-Regex", `\.png$`},
	{"/", "Xkey-Purge", "a b"},
	{"/", "Xkey-Softpurge", "a"},
	{"/", "X-Magento-Tags-Pattern", `((^|,)cat_p_1(,|$))`},
	{"/", "X-Magento-Tags-Pattern", `"quoted\" && req.url ~ .`},
	{"/", "Soft-Purge", "1"},
	{"*", "", ""},
	{"/(", "X-Purge-Method", "REGEX"},
}

// FuzzPurgeOfRequest: whatever a PURGE request carries, it maps to a
// valid purge or a clear error; a regular expression a client sends is
// one condition (it cannot smuggle in more), and the purge stays within
// the site.
func FuzzPurgeOfRequest(f *testing.F) {
	for _, s := range purgeRequestSeeds {
		f.Add(s.target, s.name, s.value)
	}
	site := []string{"site.test", "www.site.test"}
	f.Fuzz(func(t *testing.T, target, name, value string) {
		hdr := http.Header{}
		if name != "" {
			hdr.Set(name, value)
		}
		p, err := purgeOfRequest("http", "site.test", target, hdr, site)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "purge: ") {
				t.Fatalf("error %q", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("invalid purge %+v: %v", p, err)
		}
		for _, expr := range p.Bans {
			conds, _ := parseBan(expr)
			if len(conds) != 1 {
				t.Fatalf("header %s: %q made %d conditions", name, value, len(conds))
			}
		}
		if len(p.Keys)+len(p.Bans) > 0 && len(p.Scope) == 0 {
			t.Fatalf("unscoped purge %+v", p)
		}
		for _, u := range p.URLs {
			if !strings.HasPrefix(u, "http://site.test/") {
				t.Fatalf("URL %q outside the request's host", u)
			}
		}
	})
}

// Bans added out of time order (two purges stamped in one order and
// added in the other) are still all checked against an entry.
func TestBanListKeepsTimeOrder(t *testing.T) {
	var l banList
	conds, _ := parseBan("req.url ~ ^/a")
	other, _ := parseBan("req.url ~ ^/zzz")
	late := newBan(conds, nil, false, time.Unix(20, 0))
	early := newBan(other, nil, false, time.Unix(10, 0))
	if err := l.add([]*ban{late}, 10); err != nil {
		t.Fatal(err)
	}
	if err := l.add([]*ban{early}, 10); err != nil {
		t.Fatal(err)
	}
	e := store.NewFilling(200, http.Header{}, policy.Policy{}, time.Unix(15, 0))
	if hit, _ := verdict(l.active(), "site.test/a", e); !hit {
		t.Fatal("the ban made after the entry, added before an older one, was not checked")
	}
}
