package policy

import (
	"math"
	"net/http"
	"reflect"
	"testing"
	"time"
)

// t0 is the fixed "now" of the tests: the response arrives at t0.
var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// hdr builds a header from name/value pairs.
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// httpDate formats t as an IMF-fixdate.
func httpDate(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

func TestEvaluateStorage(t *testing.T) {
	date := httpDate(t0)
	lm := httpDate(t0.Add(-10 * time.Hour))
	tests := []struct {
		name   string
		method string
		req    http.Header
		status int
		resp   http.Header
		opts   Options
		store  bool
		reason string
	}{
		{"max-age 200", "GET", nil, 200, hdr("Cache-Control", "max-age=60"), Options{}, true, ""},
		{"HEAD is not stored", "HEAD", nil, 200, hdr("Cache-Control", "max-age=60"), Options{}, false, "method"},
		{"POST is not stored", "POST", nil, 200, hdr("Cache-Control", "max-age=60"), Options{}, false, "method"},
		{"lower-case get is another method", "get", nil, 200, hdr("Cache-Control", "max-age=60"), Options{}, false, "method"},
		{"206 is partial", "GET", nil, 206, hdr("Cache-Control", "max-age=60"), Options{}, false, "partial"},
		{"1xx is not final", "GET", nil, 103, hdr("Cache-Control", "max-age=60"), Options{}, false, "status"},
		{"304 is not a response to store", "GET", nil, 304, hdr("Cache-Control", "max-age=60"), Options{}, false, "status"},
		{"out of range status", "GET", nil, 600, hdr("Cache-Control", "max-age=60"), Options{}, false, "status"},
		{"404 with validator is heuristically cacheable", "GET", nil, 404, hdr("Last-Modified", lm), Options{}, true, ""},
		{"302 without freshness", "GET", nil, 302, hdr("Last-Modified", lm), Options{}, false, "status"},
		{"302 with max-age", "GET", nil, 302, hdr("Cache-Control", "max-age=60"), Options{}, true, ""},
		{"307 with Expires", "GET", nil, 307, hdr("Date", date, "Expires", httpDate(t0.Add(time.Hour))), Options{}, true, ""},
		{"403 with public and validator", "GET", nil, 403, hdr("Cache-Control", "public", "Etag", `"x"`), Options{}, true, ""},
		{"403 without anything", "GET", nil, 403, hdr(), Options{StoreUnvalidated: true}, false, "status"},
		{"503 with s-maxage", "GET", nil, 503, hdr("Cache-Control", "s-maxage=5"), Options{}, true, ""},
		{"no-store", "GET", nil, 200, hdr("Cache-Control", "max-age=60, no-store"), Options{}, false, "no-store"},
		{"request no-store", "GET", hdr("Cache-Control", "no-store"), 200, hdr("Cache-Control", "max-age=60"), Options{}, false, "no-store"},
		{"request no-store ignored", "GET", hdr("Cache-Control", "no-store"), 200, hdr("Cache-Control", "max-age=60"), Options{IgnoreRequestNoStore: true}, true, ""},
		{"must-understand with understood status ignores no-store", "GET", nil, 200, hdr("Cache-Control", "must-understand, no-store, max-age=60"), Options{}, true, ""},
		{"must-understand with unknown status", "GET", nil, 299, hdr("Cache-Control", "must-understand, no-store, max-age=60"), Options{}, false, "status"},
		{"unknown status with max-age", "GET", nil, 299, hdr("Cache-Control", "max-age=60"), Options{}, true, ""},
		{"private", "GET", nil, 200, hdr("Cache-Control", "private, max-age=60"), Options{}, false, "private"},
		{"qualified private is stored", "GET", nil, 200, hdr("Cache-Control", `private="X-User", max-age=60`), Options{}, true, ""},
		{"authorization without permission", "GET", hdr("Authorization", "Basic x"), 200, hdr("Cache-Control", "max-age=60"), Options{}, false, "authorization"},
		{"authorization with public", "GET", hdr("Authorization", "Basic x"), 200, hdr("Cache-Control", "public, max-age=60"), Options{}, true, ""},
		{"authorization with s-maxage", "GET", hdr("Authorization", "Basic x"), 200, hdr("Cache-Control", "s-maxage=60"), Options{}, true, ""},
		{"authorization with must-revalidate", "GET", hdr("Authorization", "Basic x"), 200, hdr("Cache-Control", "must-revalidate, max-age=60"), Options{}, true, ""},
		{"vary star", "GET", nil, 200, hdr("Cache-Control", "max-age=60", "Vary", "Accept, *"), Options{}, false, "vary-star"},
		{"vary fields", "GET", nil, 200, hdr("Cache-Control", "max-age=60", "Vary", "Accept-Encoding"), Options{}, true, ""},
		{"set-cookie", "GET", nil, 200, hdr("Cache-Control", "max-age=60", "Set-Cookie", "a=1"), Options{}, false, "set-cookie"},
		{"set-cookie qualified private", "GET", nil, 200, hdr("Cache-Control", `max-age=60, private="Set-Cookie"`, "Set-Cookie", "a=1"), Options{}, true, ""},
		{"set-cookie qualified no-cache", "GET", nil, 200, hdr("Cache-Control", `max-age=60, no-cache="set-cookie"`, "Set-Cookie", "a=1"), Options{}, true, ""},
		{"set-cookie qualified other field", "GET", nil, 200, hdr("Cache-Control", `max-age=60, no-cache="X-A"`, "Set-Cookie", "a=1"), Options{}, false, "set-cookie"},
		{"no freshness no validator", "GET", nil, 200, hdr("Content-Type", "text/plain"), Options{}, false, "no-freshness"},
		{"no freshness no validator, store unvalidated", "GET", nil, 200, hdr(), Options{StoreUnvalidated: true}, true, ""},
		{"etag only", "GET", nil, 200, hdr("Etag", `"v1"`), Options{}, true, ""},
		{"last-modified only", "GET", nil, 200, hdr("Last-Modified", lm), Options{}, true, ""},
		{"invalid Expires is explicit (stale)", "GET", nil, 200, hdr("Expires", "0"), Options{}, true, ""},
		{"CDN-Cache-Control overrides private", "GET", nil, 200, hdr("Cache-Control", "private", "CDN-Cache-Control", "max-age=60"), Options{}, true, ""},
		{"CDN-Cache-Control none overrides", "GET", nil, 200, hdr("Cache-Control", "max-age=60", "CDN-Cache-Control", "none"), Options{}, false, "no-freshness"},
		{"CDN-Cache-Control no-store", "GET", nil, 200, hdr("Cache-Control", "max-age=60", "CDN-Cache-Control", "no-store"), Options{}, false, "no-store"},
		{"empty CDN-Cache-Control ignored", "GET", nil, 200, hdr("Cache-Control", "max-age=60", "CDN-Cache-Control", " , "), Options{}, true, ""},
		{"CDN-Cache-Control ignores Expires", "GET", nil, 200, hdr("CDN-Cache-Control", "public", "Expires", httpDate(t0.Add(time.Hour))), Options{}, false, "no-freshness"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			if req == nil {
				req = http.Header{}
			}
			p := Evaluate(tt.method, req, tt.status, tt.resp, t0, t0, tt.opts)
			if p.Store != tt.store || p.Reason != tt.reason {
				t.Errorf("Store=%v Reason=%q, want Store=%v Reason=%q (policy %+v)", p.Store, p.Reason, tt.store, tt.reason, p)
			}
		})
	}
}

func TestEvaluateLifetime(t *testing.T) {
	date := httpDate(t0)
	tests := []struct {
		name      string
		status    int
		resp      http.Header
		opts      Options
		lifetime  time.Duration
		heuristic bool
	}{
		{"s-maxage wins", 200, hdr("Cache-Control", "max-age=10, s-maxage=20", "Expires", httpDate(t0.Add(time.Hour))), Options{}, 20 * sec, false},
		{"max-age over Expires", 200, hdr("Cache-Control", "max-age=10", "Date", date, "Expires", httpDate(t0.Add(time.Hour))), Options{}, 10 * sec, false},
		{"Expires minus Date", 200, hdr("Date", httpDate(t0.Add(-time.Minute)), "Expires", httpDate(t0.Add(time.Hour))), Options{}, time.Hour + time.Minute, false},
		{"Expires without Date uses response time", 200, hdr("Expires", httpDate(t0.Add(time.Hour))), Options{}, time.Hour, false},
		{"Expires in the past", 200, hdr("Date", date, "Expires", httpDate(t0.Add(-time.Hour))), Options{}, 0, false},
		{"invalid Expires", 200, hdr("Date", date, "Expires", "-1"), Options{}, 0, false},
		{"conflicting Expires lines", 200, hdr("Date", date, "Expires", httpDate(t0.Add(time.Hour)), "Expires", httpDate(t0.Add(2*time.Hour))), Options{}, 0, false},
		{"RFC 850 Expires", 200, hdr("Date", date, "Expires", "Wednesday, 01-May-24 13:00:00 GMT"), Options{}, time.Hour, false},
		{"invalid max-age is stale", 200, hdr("Cache-Control", "max-age=abc", "Expires", httpDate(t0.Add(time.Hour))), Options{}, 0, false},
		{"huge max-age clamps", 200, hdr("Cache-Control", "max-age=99999999999999999999"), Options{}, maxDelta, false},
		{"heuristic 10%", 200, hdr("Date", date, "Last-Modified", httpDate(t0.Add(-10*time.Hour))), Options{}, time.Hour, true},
		{"heuristic capped", 200, hdr("Date", date, "Last-Modified", httpDate(t0.Add(-10000*time.Hour))), Options{}, 24 * time.Hour, true},
		{"heuristic custom", 200, hdr("Date", date, "Last-Modified", httpDate(t0.Add(-10*time.Hour))), Options{HeuristicFraction: 0.5, HeuristicMax: 2 * time.Hour}, 2 * time.Hour, true},
		{"heuristic future Last-Modified", 200, hdr("Date", date, "Last-Modified", httpDate(t0.Add(time.Hour))), Options{}, 0, true},
		{"heuristic for public 302", 302, hdr("Cache-Control", "public", "Date", date, "Last-Modified", httpDate(t0.Add(-10*time.Hour))), Options{}, time.Hour, true},
		{"no heuristic for 302", 302, hdr("Date", date, "Last-Modified", httpDate(t0.Add(-10*time.Hour))), Options{DefaultTTL: time.Minute}, time.Minute, false},
		{"default TTL without Last-Modified", 200, hdr("Etag", `"a"`), Options{DefaultTTL: time.Minute}, time.Minute, false},
		{"default TTL, store unvalidated", 200, hdr(), Options{StoreUnvalidated: true, DefaultTTL: 5 * time.Minute}, 5 * time.Minute, false},
		{"heuristic beats default TTL", 200, hdr("Date", date, "Last-Modified", httpDate(t0.Add(-10*time.Hour))), Options{DefaultTTL: time.Minute}, time.Hour, true},
		{"CDN-Cache-Control max-age", 200, hdr("Cache-Control", "max-age=10", "CDN-Cache-Control", "max-age=600"), Options{}, 600 * sec, false},
		// Strict HTTP-dates (RFC 9110 §5.6.7): an Expires that is not one
		// is already expired (RFC 9111 §5.3)...
		{"Expires with double spaces", 200, hdr("Date", date, "Expires", "Thu, 18  Aug  2050 02:01:18 GMT"), Options{}, 0, false},
		{"Expires with one-digit hour", 200, hdr("Date", date, "Expires", "Thu, 18 Aug 2050 2:01:18 GMT"), Options{}, 0, false},
		{"Expires in lower case", 200, hdr("Date", date, "Expires", "thu, 18 aug 2050 02:01:18 gmt"), Options{}, 0, false},
		{"Expires with UTC", 200, hdr("Date", date, "Expires", "Thu, 18 Aug 2050 02:01:18 UTC"), Options{}, 0, false},
		{"Expires with wrong weekday", 200, hdr("Date", date, "Expires", "Fri, 18 Aug 2050 02:01:18 GMT"), Options{}, 0, false},
		{"asctime Expires", 200, hdr("Date", date, "Expires", "Wed May  1 13:00:00 2024"), Options{}, time.Hour, false},
		// ...but max-age and s-maxage still take precedence over it...
		{"invalid Expires under max-age", 200, hdr("Cache-Control", "max-age=60", "Date", date, "Expires", "Thu, 18  Aug  2050 02:01:18 GMT"), Options{}, 60 * sec, false},
		{"invalid Expires under s-maxage", 200, hdr("Cache-Control", "s-maxage=60", "Date", date, "Expires", "0"), Options{}, 60 * sec, false},
		// ...an invalid Date is replaced by the response time...
		{"invalid Date", 200, hdr("Date", "Wed, 01 May 2024 1:00:00 GMT", "Expires", httpDate(t0.Add(time.Hour))), Options{}, time.Hour, false},
		// ...and an invalid Last-Modified gives no heuristic.
		{"invalid Last-Modified", 200, hdr("Date", date, "Last-Modified", "Wed, 01  May  2024 02:00:00 GMT"), Options{DefaultTTL: time.Minute}, time.Minute, false},
		{"negative options clamp", 200, hdr(), Options{StoreUnvalidated: true, DefaultTTL: -time.Minute, HeuristicFraction: -1}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Evaluate("GET", http.Header{}, tt.status, tt.resp, t0, t0, tt.opts)
			if p.Lifetime != tt.lifetime || p.Heuristic != tt.heuristic {
				t.Errorf("Lifetime=%v Heuristic=%v, want %v %v (policy %+v)", p.Lifetime, p.Heuristic, tt.lifetime, tt.heuristic, p)
			}
		})
	}
}

func TestEvaluateStale(t *testing.T) {
	grace := Options{GraceWhileRevalidate: 10 * sec, GraceIfError: time.Hour}
	tests := []struct {
		name      string
		cc        string
		opts      Options
		swr, sie  time.Duration
		noStale   bool
		alwaysRev bool
		strip     []string
	}{
		{"explicit windows", "max-age=60, stale-while-revalidate=30, stale-if-error=600", grace, 30 * sec, 600 * sec, false, false, nil},
		{"site grace", "max-age=60", grace, 10 * sec, time.Hour, false, false, nil},
		{"no grace by default", "max-age=60", Options{}, 0, 0, false, false, nil},
		{"explicit zero beats grace", "max-age=60, stale-if-error=0", grace, 10 * sec, 0, false, false, nil},
		{"must-revalidate", "max-age=60, must-revalidate, stale-if-error=600", grace, 0, 0, true, false, nil},
		{"proxy-revalidate", "max-age=60, proxy-revalidate", grace, 0, 0, true, false, nil},
		{"no-cache", "max-age=60, no-cache", grace, 0, 0, true, true, nil},
		{"s-maxage implies proxy-revalidate", "s-maxage=60", grace, 0, 0, true, false, nil},
		{"explicit stale-if-error beats s-maxage implication, no grace", "s-maxage=60, stale-if-error=300", grace, 0, 300 * sec, false, false, nil},
		{"explicit swr beats s-maxage implication", "s-maxage=60, stale-while-revalidate=5", grace, 5 * sec, 0, false, false, nil},
		{"strip fields", `max-age=60, no-cache="Set-Cookie", private="X-User,set-cookie"`, Options{}, 0, 0, false, false, []string{"Set-Cookie", "X-User"}},
		{"negative grace clamps", "max-age=60", Options{GraceIfError: -time.Hour}, 0, 0, false, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Evaluate("GET", http.Header{}, 200, hdr("Cache-Control", tt.cc), t0, t0, tt.opts)
			if p.StaleWhileRevalidate != tt.swr || p.StaleIfError != tt.sie || p.NoStale != tt.noStale || p.AlwaysRevalidate != tt.alwaysRev || !reflect.DeepEqual(p.StripFields, tt.strip) {
				t.Errorf("got swr=%v sie=%v noStale=%v alwaysRev=%v strip=%q\nwant swr=%v sie=%v noStale=%v alwaysRev=%v strip=%q",
					p.StaleWhileRevalidate, p.StaleIfError, p.NoStale, p.AlwaysRevalidate, p.StripFields,
					tt.swr, tt.sie, tt.noStale, tt.alwaysRev, tt.strip)
			}
		})
	}
}

func TestEvaluateAge(t *testing.T) {
	tests := []struct {
		name    string
		resp    http.Header
		reqTime time.Time
		want    time.Duration
	}{
		{"no Age, no delay", hdr("Cache-Control", "max-age=60"), t0, 0},
		{"Age field", hdr("Age", "30"), t0, 30 * sec},
		{"Age plus response delay", hdr("Age", "30"), t0.Add(-2 * sec), 32 * sec},
		{"apparent age wins", hdr("Age", "3", "Date", httpDate(t0.Add(-10*sec))), t0.Add(-1 * sec), 10 * sec},
		{"Date in the future", hdr("Date", httpDate(t0.Add(time.Hour))), t0, 0},
		{"invalid Date is the response time", hdr("Date", "Wed, 01 May 2024 1:00:00 GMT"), t0, 0},
		{"invalid Age", hdr("Age", "soon"), t0, 0},
		{"negative Age", hdr("Age", "-5"), t0, 0},
		{"list Age uses first", hdr("Age", "7, 9"), t0, 7 * sec},
		{"huge Age clamps", hdr("Age", "99999999999999999999"), t0, maxDelta},
		{"request after response", hdr("Age", "4"), t0.Add(time.Minute), 4 * sec},
		{"zero request time saturates", hdr("Age", "99999999999999999999"), time.Time{}, math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Evaluate("GET", http.Header{}, 200, tt.resp, tt.reqTime, t0, Options{})
			if p.InitialAge != tt.want {
				t.Errorf("InitialAge = %v, want %v", p.InitialAge, tt.want)
			}
		})
	}
}

func TestCurrentAge(t *testing.T) {
	p := Policy{InitialAge: 5 * sec}
	if got := p.CurrentAge(t0, t0.Add(time.Minute)); got != 65*sec {
		t.Errorf("CurrentAge = %v, want 65s", got)
	}
	if got := p.CurrentAge(t0, t0.Add(-time.Minute)); got != 5*sec {
		t.Errorf("CurrentAge before response time = %v, want 5s", got)
	}
	big := Policy{InitialAge: math.MaxInt64 - 1}
	if got := big.CurrentAge(time.Time{}, t0); got != math.MaxInt64 {
		t.Errorf("CurrentAge does not saturate: %v", got)
	}
}

func TestJudge(t *testing.T) {
	base := Policy{Store: true, Lifetime: 60 * sec, StaleWhileRevalidate: 30 * sec, StaleIfError: 300 * sec}
	with := func(f func(p *Policy)) Policy { p := base; f(&p); return p }
	req := func(cc string) *Directives { d := ParseCacheControl([]string{cc}); return &d }
	tests := []struct {
		name string
		p    Policy
		age  time.Duration
		req  *Directives
		want Verdict
	}{
		{"fresh", base, 10 * sec, nil, Verdict{Fresh: true, TTL: 50 * sec}},
		{"fresh with empty request", base, 10 * sec, req(""), Verdict{Fresh: true, TTL: 50 * sec}},
		{"exactly at lifetime is stale", base, 60 * sec, nil, Verdict{StaleWhileRevalidate: true, StaleIfError: true, TTL: 0}},
		{"within swr", base, 89 * sec, nil, Verdict{StaleWhileRevalidate: true, StaleIfError: true, TTL: -29 * sec}},
		{"swr window end", base, 90 * sec, nil, Verdict{StaleIfError: true, TTL: -30 * sec}},
		{"within sie", base, 359 * sec, nil, Verdict{StaleIfError: true, TTL: -299 * sec}},
		{"beyond sie", base, 360 * sec, nil, Verdict{TTL: -300 * sec}},
		{"negative age counts as 0", base, -5 * sec, nil, Verdict{Fresh: true, TTL: 60 * sec}},
		{"NoStale", with(func(p *Policy) { p.NoStale, p.StaleWhileRevalidate, p.StaleIfError = true, 0, 0 }), 61 * sec, req("max-stale"), Verdict{TTL: -1 * sec}},
		{"AlwaysRevalidate", with(func(p *Policy) { p.AlwaysRevalidate = true }), 0, nil, Verdict{TTL: 60 * sec}},
		{"request no-cache", base, 10 * sec, req("no-cache"), Verdict{StaleIfError: true, TTL: 50 * sec}},
		{"request no-cache when stale: no swr", base, 70 * sec, req("no-cache"), Verdict{StaleIfError: true, TTL: -10 * sec}},
		{"request max-age satisfied", base, 10 * sec, req("max-age=10"), Verdict{Fresh: true, TTL: 50 * sec}},
		{"request max-age exceeded", base, 11 * sec, req("max-age=10"), Verdict{StaleIfError: true, TTL: 49 * sec}},
		{"request max-age=0 immutable", with(func(p *Policy) { p.Immutable = true }), 11 * sec, req("max-age=0"), Verdict{Fresh: true, TTL: 49 * sec}},
		{"request min-fresh satisfied", base, 10 * sec, req("min-fresh=50"), Verdict{Fresh: true, TTL: 50 * sec}},
		{"request min-fresh not satisfied", base, 11 * sec, req("min-fresh=50"), Verdict{StaleIfError: true, TTL: 49 * sec}},
		{"request max-stale any", base, 1000 * sec, req("max-stale"), Verdict{Fresh: true, TTL: -940 * sec}},
		{"request max-stale within", base, 70 * sec, req("max-stale=10"), Verdict{Fresh: true, TTL: -10 * sec}},
		{"request max-stale beyond", base, 71 * sec, req("max-stale=10"), Verdict{StaleWhileRevalidate: true, StaleIfError: true, TTL: -11 * sec}},
		{"request max-stale with max-age", base, 70 * sec, req("max-stale=100, max-age=65"), Verdict{StaleIfError: true, TTL: -10 * sec}},
		{"zero lifetime", Policy{Store: true}, 0, nil, Verdict{TTL: 0}},
		{"huge age", base, math.MaxInt64, nil, Verdict{TTL: 60*sec - math.MaxInt64}},
		{"huge lifetime, zero age", Policy{Lifetime: math.MaxInt64}, 0, nil, Verdict{Fresh: true, TTL: math.MaxInt64}},
		{"very negative lifetime difference saturates", Policy{Lifetime: 0}, math.MaxInt64, nil, Verdict{TTL: -math.MaxInt64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.p
			if got := p.Judge(tt.age, tt.req); got != tt.want {
				t.Errorf("Judge(%v) = %+v, want %+v", tt.age, got, tt.want)
			}
		})
	}
}

func TestJudgeAllocs(t *testing.T) {
	p := Policy{Store: true, Lifetime: 60 * sec, StaleWhileRevalidate: 30 * sec}
	d := ParseCacheControl([]string{"max-age=10, max-stale"})
	if n := testing.AllocsPerRun(100, func() { _ = p.Judge(20*sec, &d) }); n != 0 {
		t.Errorf("Judge allocates %v times", n)
	}
}

func TestEvaluateThenJudge(t *testing.T) {
	// A response fetched at t0 with Age 10 and max-age 60, served with a
	// fake clock: fresh for 50 s after arrival, then stale-while-revalidate.
	resp := hdr("Cache-Control", "max-age=60, stale-while-revalidate=20", "Age", "10", "Date", httpDate(t0))
	p := Evaluate("GET", http.Header{}, 200, resp, t0, t0, Options{})
	if !p.Store {
		t.Fatalf("not stored: %q", p.Reason)
	}
	now := t0.Add(49 * time.Second)
	if v := p.Judge(p.CurrentAge(t0, now), nil); !v.Fresh || v.TTL != sec {
		t.Errorf("at +49s: %+v, want fresh with 1s TTL", v)
	}
	now = t0.Add(55 * time.Second)
	if v := p.Judge(p.CurrentAge(t0, now), nil); v.Fresh || !v.StaleWhileRevalidate {
		t.Errorf("at +55s: %+v, want stale-while-revalidate", v)
	}
	now = t0.Add(70 * time.Second)
	if v := p.Judge(p.CurrentAge(t0, now), nil); v.Fresh || v.StaleWhileRevalidate || v.StaleIfError {
		t.Errorf("at +70s: %+v, want plain stale", v)
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"zero", Options{}, ""},
		{"full", Options{GraceWhileRevalidate: 1, GraceIfError: 1, DefaultTTL: 1, HeuristicFraction: 0.2, HeuristicMax: time.Hour}, ""},
		{"grace", Options{GraceWhileRevalidate: -1}, "GraceWhileRevalidate: negative (-1ns)"},
		{"grace if error", Options{GraceIfError: -1}, "GraceIfError: negative (-1ns)"},
		{"default ttl", Options{DefaultTTL: -1}, "DefaultTTL: negative (-1ns)"},
		{"fraction", Options{HeuristicFraction: 2}, "HeuristicFraction: 2 not in [0, 1]"},
		{"fraction NaN", Options{HeuristicFraction: math.NaN()}, "HeuristicFraction: NaN not in [0, 1]"},
		{"max", Options{HeuristicMax: -1}, "HeuristicMax: negative (-1ns)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate() = %q, want %q", got, tt.want)
			}
		})
	}
}

func BenchmarkJudge(b *testing.B) {
	p := Policy{Store: true, Lifetime: 60 * sec, StaleWhileRevalidate: 30 * sec, StaleIfError: time.Hour}
	d := NoDirectives()
	b.ReportAllocs()
	for b.Loop() {
		_ = p.Judge(70*sec, &d)
	}
}

func BenchmarkEvaluate(b *testing.B) {
	resp := hdr("Cache-Control", "public, max-age=3600", "Date", httpDate(t0), "Etag", `"abc"`, "Content-Type", "text/html", "Vary", "Accept-Encoding")
	req := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		_ = Evaluate("GET", req, 200, resp, t0, t0, Options{})
	}
}
