package edge

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestNormalizeHost(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"site.test", "site.test", true},
		{"Site.TEST.", "site.test", true},
		{"site.test:8080", "site.test", true},
		{"site.test.:443", "site.test", true},
		{"site.test:", "site.test", true}, // RFC 3986: port = *DIGIT
		{"a_b.test", "a_b.test", true},
		{"192.0.2.1:80", "192.0.2.1", true},
		{"[2001:DB8::1]:443", "[2001:db8::1]", true},
		{"site.test:'onerror='alert(1)", "", false},
		{"site.test:65536", "", false},
		{"site.test:123456", "", false},
		{"site.test:8o", "", false},
		{"site.test:1:2", "", false},
		{"site.test%2e", "", false},
		{"user@site.test", "", false},
		{"", "", false},
		{".", "", false},
		{":80", "", false},
		{"[::1", "", false},
		{"[::1]x", "", false},
		{"[fe80::1%25eth0]", "", false},
		{"[1.2.3.4]", "", false},
	} {
		got, ok := normalizeHost(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("normalizeHost(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
		// The hit contract's key (LookupHit) agrees.
		key, s, e, kok := appendHitKey(nil, false, []byte(tc.in), []byte("/"))
		if kok != tc.ok || kok && string(key[s:e]) != tc.want {
			t.Errorf("appendHitKey(%q) = %q, %v", tc.in, key, kok)
		}
	}
}

func TestForwardedProto(t *testing.T) {
	for in, want := range map[string]string{
		"https": "https", " HTTPS ": "https", "http": "http", "http, https": "https",
		"https,http": "http", "wss": "", "": "", "https, ": "", "xhttps": "",
	} {
		if got := forwardedProto(in); got != want {
			t.Errorf("forwardedProto(%q) = %q, want %q", in, got, want)
		}
		if got := forwardedProto([]byte(in)); got != want {
			t.Errorf("forwardedProto([]byte %q) = %q, want %q", in, got, want)
		}
	}
}

// The fast front's key derivation stays allocation-free with the scheme
// and the Host checks.
func TestAppendHitKeyAllocs(t *testing.T) {
	buf := make([]byte, 0, 128)
	host, target, proto := []byte("Site.Test.:8080"), []byte("/obj?x=1"), []byte("http, https")
	if n := testing.AllocsPerRun(100, func() {
		https := forwardedProto(proto) == "https"
		buf, _, _, _ = appendHitKey(buf[:0], https, host, target)
	}); n != 0 {
		t.Fatalf("%v allocations per key", n)
	}
	if string(buf) != "https://site.test/obj?x=1" {
		t.Fatalf("key %q", buf)
	}
}

func TestLooped(t *testing.T) {
	h := &Handler{cfg: Config{Name: "edge-a"}}
	for _, tc := range []struct {
		lines []string
		want  bool
	}{
		{nil, false},
		{[]string{"other"}, false},
		{[]string{"other, edge-a"}, true},
		{[]string{"other", "EDGE-A; v=1"}, true},
		{[]string{"edge-ab, xedge-a"}, false},
		{[]string{"foo;edge-a"}, false}, // a parameter, not a cdn-id
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["Cdn-Loop"] = tc.lines
		if got := h.looped(r); got != tc.want {
			t.Errorf("looped(%q) = %v, want %v", tc.lines, got, tc.want)
		}
	}
}

// setForwarded's own element and address, written in one buffer, are
// what the edge saw, for IPv4, IPv6 (quoted and bracketed, RFC 7239
// §6), a zone or a mapped address (dropped), and no address at all; a
// trusted proxy's chain comes first.
func TestSetForwardedFields(t *testing.T) {
	trusted, _ := parseProxies([]string{"198.51.100.0/24"})
	h := &Handler{cfg: Config{Name: "edge-a"}, via: "1.1 edge-a", trusted: trusted}
	for _, tc := range []struct {
		remote, xff, fwd string
		wantXFF, wantFwd string
	}{
		{"192.0.2.7:5000", "", "", "192.0.2.7", "for=192.0.2.7;host=site.test;proto=https"},
		{"[2001:db8::1]:443", "", "", "2001:db8::1", `for="[2001:db8::1]";host=site.test;proto=https`},
		{"[fe80::1%eth0]:443", "", "", "fe80::1", `for="[fe80::1]";host=site.test;proto=https`},
		{"[::ffff:192.0.2.9]:80", "", "", "192.0.2.9", "for=192.0.2.9;host=site.test;proto=https"},
		{"[2001:db8:1234:5678:9abc:def0:1234:5678]:1", "", "", "2001:db8:1234:5678:9abc:def0:1234:5678",
			`for="[2001:db8:1234:5678:9abc:def0:1234:5678]";host=site.test;proto=https`},
		{"", "", "", "", "host=site.test;proto=https"},
		{"192.0.2.7:5000", "203.0.113.1", "for=203.0.113.1", "192.0.2.7", "for=192.0.2.7;host=site.test;proto=https"}, // not trusted: dropped
		{"198.51.100.2:5000", "203.0.113.1", "for=203.0.113.1", "203.0.113.1, 198.51.100.2", "for=203.0.113.1, for=198.51.100.2;host=site.test;proto=https"},
	} {
		// A host name too long for the values' own buffer, too.
		for _, host := range []string{"site.test", strings.Repeat("long-label.", 20) + "site.test"} {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.remote
			out := http.Header{}
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
				r.Header.Set("Forwarded", tc.fwd)
				out.Set("X-Forwarded-For", tc.xff)
				out.Set("Forwarded", tc.fwd)
			}
			h.setForwarded(out, r, host, "https")
			if got := out.Get("X-Forwarded-For"); got != tc.wantXFF {
				t.Errorf("%s: X-Forwarded-For %q, want %q", tc.remote, got, tc.wantXFF)
			}
			wantFwd := strings.Replace(tc.wantFwd, "host=site.test", "host="+host, 1)
			if got := out["Forwarded"]; len(got) != 1 || got[0] != wantFwd {
				t.Errorf("%s: Forwarded %q, want %q", tc.remote, got, wantFwd)
			}
			if got := out.Get("X-Forwarded-Host") + " " + out.Get("X-Forwarded-Proto"); got != host+" https" {
				t.Errorf("%s: X-Forwarded-Host and -Proto %q", tc.remote, got)
			}
		}
	}
}

// setForwarded's values and its element's text are one allocation for a
// host name of common length, on every fill's request.
func TestSetForwardedAllocations(t *testing.T) {
	h := &Handler{cfg: Config{Name: "edge-a"}, via: "1.1 edge-a"}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "[2001:db8:1234:5678:9abc:def0:1234:5678]:1"
	out := http.Header{}
	h.setForwarded(out, r, "a-host-name-of-some-length.example.com", "https") // (the map's own growth, once)
	if n := testing.AllocsPerRun(100, func() { h.setForwarded(out, r, "a-host-name-of-some-length.example.com", "https") }); n != 1 {
		t.Errorf("%v allocations, want 1", n)
	}
}
