package policy

import (
	"net/http"
	"net/textproto"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// ccSeeds are Cache-Control values from the table tests and the wild.
var ccSeeds = []string{
	"", "public, max-age=60, s-maxage=120", "No-Store, MAX-AGE=5", `max-age="60"`,
	"max-age=99999999999999999999", "max-age=-5", "max-age=abc", "max-age=",
	"max-age=60, max-age=120", `no-cache="set-cookie, X-Foo"`, `private="a, b", max-age=5`,
	`no-cache=""`, `private="a, no-store`, `ext="a,max-age=9,b", max-age=1`, `=;"\,==,"no-store`,
	"stale-while-revalidate=30, stale-if-error=600", "max-stale, min-fresh=5",
	"must-understand, no-store", strings.Repeat(",", 1024), `x="\"`,
}

func FuzzParseCacheControl(f *testing.F) {
	for _, s := range ccSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lines := strings.Split(s, "\n")
		d := ParseCacheControl(lines)
		for _, v := range []time.Duration{d.MaxAge, d.SMaxAge, d.StaleWhileRevalidate, d.StaleIfError, d.MaxStale, d.MinFresh} {
			if v < -1 || v > maxDelta || (v < 0 && v != -1) {
				t.Fatalf("duration out of range: %v in %+v", v, d)
			}
			if v > 0 && v%time.Second != 0 {
				t.Fatalf("duration not whole seconds: %v", v)
			}
		}
		for _, fs := range [][]string{d.NoCacheFields, d.PrivateFields} {
			if fs != nil && len(fs) == 0 {
				t.Fatalf("empty non-nil field list")
			}
			if !slices.IsSorted(fs) || len(slices.Compact(slices.Clone(fs))) != len(fs) {
				t.Fatalf("fields not sorted and unique: %q", fs)
			}
			for _, f := range fs {
				if !isToken(f) || textproto.CanonicalMIMEHeaderKey(f) != f {
					t.Fatalf("field %q not a canonical token", f)
				}
			}
		}
		// Deterministic, and the input is not retained in a way that
		// changes the result.
		if d2 := ParseCacheControl(lines); !reflect.DeepEqual(d, d2) {
			t.Fatalf("not deterministic: %+v vs %+v", d, d2)
		}
		// Upper-casing the names never changes the meaning.
		if u := ParseCacheControl([]string{asciiUpper(s)}); u.NoStore != ParseCacheControl([]string{s}).NoStore {
			t.Fatalf("no-store depends on case in %q", s)
		}
	})
}

func FuzzEvaluate(f *testing.F) {
	type seed struct {
		method                                     string
		status                                     int
		cc, cdn, expires, date, lastMod, age, etag string
		vary, setCookie, reqCC, auth               string
		reqDelay, respOffset                       int64
	}
	d := httpDate(t0)
	seeds := []seed{
		{"GET", 200, "max-age=60", "", "", d, "", "", "", "", "", "", "", 0, 0},
		{"GET", 200, "no-store", "", "", d, "", "", "", "", "", "", "", 0, 0},
		{"GET", 200, "", "max-age=10", "", d, "", "3", `"x"`, "Accept", "", "", "", 1, 0},
		{"GET", 302, "public", "", "", d, httpDate(t0.Add(-time.Hour)), "", "", "", "", "", "", 0, 0},
		{"GET", 200, `private="Set-Cookie", s-maxage=5, stale-if-error=9`, "", "", d, "", "", "", "", "a=1", "", "Basic x", 0, 0},
		{"HEAD", 206, "", "", "0", "garbage", "", "99999999999999999999", "", "*", "", "no-store", "", -5, 7},
		{"GET", 200, "must-understand, no-store", "", httpDate(t0.Add(time.Hour)), "", "", "", "", "", "", "max-stale", "", 1 << 40, -1 << 40},
	}
	for _, s := range seeds {
		f.Add(s.method, s.status, s.cc, s.cdn, s.expires, s.date, s.lastMod, s.age, s.etag, s.vary, s.setCookie, s.reqCC, s.auth, s.reqDelay, s.respOffset)
	}
	f.Fuzz(func(t *testing.T, method string, status int, cc, cdn, expires, date, lastMod, age, etag, vary, setCookie, reqCC, auth string, reqDelay, respOffset int64) {
		resp := http.Header{}
		for _, kv := range [][2]string{
			{"Cache-Control", cc}, {"Cdn-Cache-Control", cdn}, {"Expires", expires}, {"Date", date},
			{"Last-Modified", lastMod}, {"Age", age}, {"Etag", etag}, {"Vary", vary}, {"Set-Cookie", setCookie},
		} {
			if kv[1] != "" {
				resp[kv[0]] = strings.Split(kv[1], "\n")
			}
		}
		req := http.Header{}
		if reqCC != "" {
			req["Cache-Control"] = []string{reqCC}
		}
		if auth != "" {
			req["Authorization"] = []string{auth}
		}
		respTime := t0.Add(time.Duration(respOffset))
		reqTime := respTime.Add(-time.Duration(reqDelay))
		p := Evaluate(method, req, status, resp, reqTime, respTime, Options{GraceIfError: time.Hour, GraceWhileRevalidate: time.Minute})

		eff, targeted := parseTargeted(resp["Cdn-Cache-Control"])
		if !targeted {
			eff = ParseCacheControl(resp["Cache-Control"])
		}
		switch {
		case p.Store && p.Reason != "":
			t.Fatalf("stored with reason %q", p.Reason)
		case !p.Store && p.Reason == "":
			t.Fatalf("not stored without a reason")
		case p.Store && eff.NoStore && !eff.MustUnderstand:
			t.Fatalf("stored despite no-store: %+v", p)
		case p.Store && ParseCacheControl(req["Cache-Control"]).NoStore:
			t.Fatalf("stored despite request no-store")
		case p.Store && (method != "GET" || status == 206):
			t.Fatalf("stored %s %d", method, status)
		case p.Store && eff.Private:
			t.Fatalf("stored private")
		case p.Store && len(resp["Set-Cookie"]) > 0 && !slices.Contains(p.StripFields, "Set-Cookie"):
			t.Fatalf("stored Set-Cookie")
		case p.Lifetime < 0 || p.InitialAge < 0 || p.StaleIfError < 0 || p.StaleWhileRevalidate < 0:
			t.Fatalf("negative duration: %+v", p)
		case p.NoStale && (p.StaleIfError != 0 || p.StaleWhileRevalidate != 0):
			t.Fatalf("NoStale with windows: %+v", p)
		case p.AlwaysRevalidate && !p.NoStale:
			t.Fatalf("AlwaysRevalidate without NoStale")
		}
		rd := ParseCacheControl(req["Cache-Control"])
		for _, a := range []time.Duration{0, p.Lifetime / 2, p.Lifetime, p.Lifetime + time.Minute, 1 << 62} {
			v := p.Judge(a, &rd)
			if v.Fresh && (v.StaleWhileRevalidate || v.StaleIfError) {
				t.Fatalf("fresh and stale: %+v", v)
			}
			if p.AlwaysRevalidate && v.Fresh {
				t.Fatalf("AlwaysRevalidate yet fresh")
			}
			if v.StaleWhileRevalidate && p.NoStale {
				t.Fatalf("stale-while-revalidate despite NoStale")
			}
		}
		_ = p.CurrentAge(respTime, respTime.Add(time.Duration(reqDelay)))
	})
}

func FuzzSecondaryKey(f *testing.F) {
	f.Add("Accept-Encoding", "Accept-Encoding: gzip\nUser-Agent: x")
	f.Add("accept-encoding, user-agent", "User-Agent: a, b\nUser-Agent: c")
	f.Add("*", "Accept: x")
	f.Add("A,B,,a", "A: x\nB:\nb: y")
	f.Add("X-A", "X-A: %3A\nX-A: ,,")
	f.Fuzz(func(t *testing.T, vary, headers string) {
		req := http.Header{}
		for line := range strings.SplitSeq(headers, "\n") {
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			k := textproto.CanonicalMIMEHeaderKey(trimOWS(name))
			req[k] = append(req[k], value)
		}
		varyLines := strings.Split(vary, "\n")
		key, ok := SecondaryKey(varyLines, req)
		fields, fok := VaryFields(varyLines)
		if ok != fok {
			t.Fatalf("SecondaryKey ok=%v, VaryFields ok=%v", ok, fok)
		}
		if !ok {
			if key != "" {
				t.Fatalf("key %q with ok=false", key)
			}
			return
		}
		if !slices.IsSorted(fields) {
			t.Fatalf("VaryFields not sorted: %q", fields)
		}
		// The canonical field list gives the same key.
		if k2, _ := SecondaryKey(fields, req); k2 != key {
			t.Fatalf("raw Vary key %q != canonical Vary key %q", key, k2)
		}
		// So does the reversed, case-changed Vary.
		rev := slices.Clone(fields)
		slices.Reverse(rev)
		for i := range rev {
			rev[i] = strings.ToLower(rev[i])
		}
		if k3, _ := SecondaryKey([]string{strings.Join(rev, " , ")}, req); k3 != key {
			t.Fatalf("reordered Vary key %q != %q", k3, key)
		}
		// One line per field: the key names each field once.
		if strings.Count(key, "\n") != len(fields) {
			t.Fatalf("key %q for %d fields", key, len(fields))
		}
	})
}

func FuzzCheckPreconditions(f *testing.F) {
	f.Add("GET", `"a", W/"b"`, "", "", "", `"a"`)
	f.Add("HEAD", "", "*", httpDate(t0), httpDate(t0), `W/"a"`)
	f.Add("PUT", `xx"a"`, `"a`, "bad", "", "")
	f.Fuzz(func(t *testing.T, method, inm, im, ims, ius, etag string) {
		req := http.Header{}
		for _, kv := range [][2]string{{"If-None-Match", inm}, {"If-Match", im}, {"If-Modified-Since", ims}, {"If-Unmodified-Since", ius}} {
			if kv[1] != "" {
				req[kv[0]] = strings.Split(kv[1], "\n")
			}
		}
		got := CheckPreconditions(method, req, etag, t0)
		switch got {
		case 0, 412:
		case 304:
			if method != "GET" && method != "HEAD" {
				t.Fatalf("304 for %s", method)
			}
		default:
			t.Fatalf("status %d", got)
		}
		if len(req) == 0 && got != 0 {
			t.Fatalf("status %d without conditions", got)
		}
	})
}

func FuzzInvalidations(f *testing.F) {
	f.Add("POST", "https://example.com/a", 200, "/b", "https://example.com:443/c")
	f.Add("DELETE", "http://h/", 303, "//other/x", "http://[::1]/")
	f.Add("PUT", "http://h:8080/a?b#c", 204, "../../x", "%zz")
	f.Fuzz(func(t *testing.T, method, reqURL string, status int, location, contentLocation string) {
		u, err := url.Parse(reqURL)
		if err != nil {
			return
		}
		resp := http.Header{}
		resp.Set("Location", location)
		resp.Set("Content-Location", contentLocation)
		got := Invalidations(method, u, status, resp)
		if len(got) > 3 {
			t.Fatalf("%d URLs", len(got))
		}
		for _, g := range got {
			if !sameOrigin(g, u) {
				t.Fatalf("%v is not on the origin of %v", g, u)
			}
			if g == u {
				t.Fatalf("returned the caller's URL value")
			}
		}
	})
}

// asciiUpper upper-cases ASCII letters only, keeping byte offsets.
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
