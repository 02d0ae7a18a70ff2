package geo

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func serve(s *Service, method, target, remote string, xff ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	if remote != "" {
		req.RemoteAddr = remote
	}
	for _, h := range xff {
		req.Header.Add("X-Forwarded-For", h)
	}
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, req)
	return w
}

func TestHTTPRoute(t *testing.T) {
	c := testConfig()
	c.HTTP.TrustedProxies = []string{"127.0.0.0/8", "10.0.0.0/8"}
	s := newTestService(t, c, Options{})

	w := serve(s, "GET", "/route", "203.0.113.7:5555")
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("GET /route: %d %v", w.Code, w.Header())
	}
	var got map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"region", "distance_km", "edges", "why", "client", "location"} {
		if _, ok := got[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, w.Body)
		}
	}
	loc := got["location"].(map[string]any)
	if got["region"] != "asia" || got["client"] != "203.0.113.7" || loc["country"] != "JP" || loc["source"] != "coordinates" || loc["lat"] == nil || loc["network"] != "203.0.113.0/25" {
		t.Errorf("answer %s", w.Body)
	}

	var a Answer
	for _, tt := range []struct {
		target, remote string
		xff            []string
		region, client string
	}{
		{"/route?ip=192.0.2.1", "203.0.113.7:1", nil, "eu", "192.0.2.1"},
		{"/route?ip=2001:db8:de::1", "203.0.113.7:1", nil, "eu", "2001:db8:de::1"},
		{"/route?ip=fe80::1%25eth0", "203.0.113.7:1", nil, "us", "fe80::1"},
		// An untrusted peer's X-Forwarded-For is ignored.
		{"/route", "203.0.113.7:1", []string{"192.0.2.1"}, "asia", "203.0.113.7"},
		// A trusted proxy's is believed.
		{"/route", "127.0.0.1:1", []string{"192.0.2.1"}, "eu", "192.0.2.1"},
		{"/route", "10.1.1.1:1", []string{"198.51.100.9, 10.2.2.2"}, "us", "198.51.100.9"},
		// Without any header the trusted proxy itself is the client.
		{"/route", "10.1.1.1:1", nil, "us", "10.1.1.1"},
	} {
		w := serve(s, "GET", tt.target, tt.remote, tt.xff...)
		if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil || w.Code != 200 {
			t.Fatalf("%s: %d %s", tt.target, w.Code, w.Body)
		}
		if a.Region != tt.region || a.Client.String() != tt.client {
			t.Errorf("%s from %s %v: %s for %s, want %s for %s", tt.target, tt.remote, tt.xff, a.Region, a.Client, tt.region, tt.client)
		}
	}

	if w := serve(s, "GET", "/route?ip=not-an-ip", ""); w.Code != 400 || !strings.Contains(w.Body.String(), "error") {
		t.Errorf("bad ip: %d %s", w.Code, w.Body)
	}
	if w := serve(s, "POST", "/route", ""); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", w.Code)
	}
	if w := serve(s, "HEAD", "/route", ""); w.Code != 200 {
		t.Errorf("HEAD: %d", w.Code)
	}
	if w := serve(s, "GET", "/nothing", ""); w.Code != 404 {
		t.Errorf("unknown path: %d", w.Code)
	}
	if w := serve(s, "GET", "/healthz", ""); w.Code != 200 || w.Body.String() != "ok\n" {
		t.Errorf("healthz: %d %q", w.Code, w.Body)
	}
}

func TestHTTPRedirect(t *testing.T) {
	c := testConfig()
	c.Regions[2].Hostname = "" // asia: falls back to an edge address
	s := newTestService(t, c, Options{})
	tests := []struct {
		target, remote, want string
	}{
		{"/redirect/videos/a.mp4?quality=hd&t=10", "192.0.2.1:1", "https://eu.cdn.meridian.test/videos/a.mp4?quality=hd&t=10"},
		{"/redirect/", "198.51.100.1:1", "https://us.cdn.meridian.test/"},
		{"/redirect/a%20b/c%2Fd", "198.51.100.1:1", "https://us.cdn.meridian.test/a%20b/c%2Fd"},
		{"/redirect//evil.example/x", "198.51.100.1:1", "https://us.cdn.meridian.test//evil.example/x"},
		{"/redirect/x", "203.0.113.1:1", "https://" + s.Route(addr("203.0.113.1")).Edge + "/x"},
	}
	if e := s.Route(addr("203.0.113.1")).Edge; !slices.Contains(c.Regions[2].Edges, e) {
		t.Fatalf("asia client's edge %q is not one of asia's", e)
	}
	for _, tt := range tests {
		w := serve(s, "GET", tt.target, tt.remote)
		if w.Code != http.StatusFound || w.Header().Get("Location") != tt.want {
			t.Errorf("%s: %d Location %q, want %q", tt.target, w.Code, w.Header().Get("Location"), tt.want)
		}
		if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("X-Meridian-Region") == "" {
			t.Errorf("%s: headers %v", tt.target, w.Header())
		}
	}
	if w := serve(s, "POST", "/redirect/x", ""); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /redirect/x: %d", w.Code)
	}
}

func TestHTTPRegions(t *testing.T) {
	s := newTestService(t, testConfig(), Options{})
	setStates(t, s, map[string]State{"eu": StateDown, "asia": StateRamping}, 10)
	w := serve(s, "GET", "/regions", "")
	var st struct {
		FailOpen bool `json:"fail_open"`
		Healthy  int  `json:"healthy"`
		Regions  []struct {
			Name           string  `json:"name"`
			State          string  `json:"state"`
			TrafficPercent float64 `json:"traffic_percent"`
			Edges          []struct {
				Addr string `json:"addr"`
				Up   bool   `json:"up"`
			} `json:"edges"`
		} `json:"regions"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if st.FailOpen || st.Healthy != 2 || len(st.Regions) != 3 {
		t.Fatalf("%s", w.Body)
	}
	if r := st.Regions[0]; r.Name != "eu" || r.State != "down" || r.TrafficPercent != 0 || r.Edges[0].Up {
		t.Errorf("eu: %+v", r)
	}
	if r := st.Regions[2]; r.State != "ramping" || r.TrafficPercent != 10 {
		t.Errorf("asia: %+v", r)
	}
}

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::/48")}
	tests := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"untrusted peer", "192.0.2.1", []string{"198.51.100.1"}, "192.0.2.1"},
		{"trusted, no header", "10.0.0.1", nil, "10.0.0.1"},
		{"one hop", "10.0.0.1", []string{"198.51.100.1"}, "198.51.100.1"},
		{"spoofed left part ignored", "10.0.0.1", []string{"1.2.3.4, 198.51.100.1"}, "198.51.100.1"},
		{"chain of proxies", "10.0.0.1", []string{"198.51.100.1, 10.0.0.2, 10.0.0.3"}, "198.51.100.1"},
		{"several headers", "10.0.0.1", []string{"203.0.113.9", "198.51.100.1, 10.0.0.7"}, "198.51.100.1"},
		{"all trusted", "10.0.0.1", []string{"10.0.0.2, 10.0.0.3"}, "10.0.0.2"},
		{"with port", "10.0.0.1", []string{"198.51.100.1:4711"}, "198.51.100.1"},
		{"IPv6 bracketed with port", "10.0.0.1", []string{"[2001:db8::1]:4711"}, "2001:db8::1"},
		{"IPv6 bracketed", "10.0.0.1", []string{"[2001:db8::1]"}, "2001:db8::1"},
		{"IPv6 trusted peer", "2001:db8:ffff::1", []string{"2001:db8::1"}, "2001:db8::1"},
		{"mapped", "::ffff:10.0.0.1", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},
		{"zone stripped", "10.0.0.1", []string{"fe80::1%eth0"}, "fe80::1"},
		{"spaces and empties", "10.0.0.1", []string{" , 198.51.100.1 ,  , "}, "198.51.100.1"},
		{"garbage stops the walk", "10.0.0.1", []string{"198.51.100.1, unknown"}, "10.0.0.1"},
		{"garbage behind a trusted hop", "10.0.0.1", []string{"nonsense, 10.0.0.5"}, "10.0.0.5"},
		{"obfuscated (RFC 7239 style)", "10.0.0.1", []string{"_hidden"}, "10.0.0.1"},
		{"invalid peer", "", []string{"198.51.100.1"}, "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var peer netip.Addr
			if tt.peer != "" {
				peer = addr(tt.peer)
			}
			if got := clientAddr(peer, tt.xff, trusted); got.String() != tt.want {
				t.Errorf("clientAddr(%s, %q) = %s, want %s", tt.peer, tt.xff, got, tt.want)
			}
		})
	}
}

// FuzzClientAddr: the result is the peer or one of the header's hops, it
// is the peer whenever the peer is untrusted, and it never has a zone or
// an IPv4-mapped form.
func FuzzClientAddr(f *testing.F) {
	f.Add("10.0.0.1", "198.51.100.1, 10.0.0.2", "")
	f.Add("10.0.0.1", "[2001:db8::1]:80", "203.0.113.1")
	f.Add("192.0.2.1", "1.2.3.4", "")
	f.Add("::ffff:10.0.0.1", "fe80::1%eth0,,", "garbage")
	f.Add("2001:db8:ffff::1", "2001:db8:ffff::2, ::1", "")
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::/48")}
	f.Fuzz(func(t *testing.T, peerS, h1, h2 string) {
		peer, _ := netip.ParseAddr(peerS)
		xff := []string{h1, h2}
		got := clientAddr(peer, xff, trusted)
		if got.Zone() != "" || got.Is4In6() {
			t.Fatalf("result %s not normalised", got)
		}
		p := peer.Unmap().WithZone("")
		if !isTrusted(p, trusted) && got != p {
			t.Fatalf("untrusted peer %s, got %s", p, got)
		}
		if got == p {
			return
		}
		found := false
		for _, h := range xff {
			for hop := range strings.SplitSeq(h, ",") {
				if a, ok := parseHop(strings.TrimSpace(hop)); ok && a == got {
					found = true
				}
			}
		}
		if !found {
			t.Fatalf("result %s is neither the peer nor a hop of %q", got, xff)
		}
	})
}
