package geo

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/geo/geodb"
)

// setStates forces region states (by name) into s's published view, as a
// probe round would; edges of a down or held-down region are down.
func setStates(t *testing.T, s *Service, states map[string]State, percent float64) {
	t.Helper()
	h := newHealth(s.cfg.Probe, s.cfg.Regions, time.Now())
	for i := range h.regions {
		r := &h.regions[i]
		st, ok := states[r.name]
		if !ok {
			continue
		}
		r.state = st
		if st == StateDown {
			for j := range r.edges {
				r.edges[j].up = false
			}
		}
		if st == StateRamping {
			for k, p := range s.cfg.Probe.Steps {
				if p == percent {
					r.step = k
				}
			}
		}
	}
	s.view.Store(h.view())
}

func TestRouteGeneratedDatabase(t *testing.T) {
	s := newTestService(t, testConfig(), Options{})
	tests := []struct {
		ip, region string
		src        Source
		why        string
	}{
		{"192.0.2.10", "eu", SourceCoordinates, "located by coordinates; nearest region"},
		{"91.20.30.40", "eu", SourceCoordinates, "nearest region"},
		{"2001:db8:de::5", "eu", SourceCoordinates, "nearest region"},
		{"198.51.100.7", "us", SourceCoordinates, "nearest region"},
		{"4.2.2.2", "us", SourceCoordinates, "nearest region"},
		{"198.51.100.200", "us", SourceCoordinates, "nearest region"}, // São Paulo: Ashburn is nearest
		{"203.0.113.5", "asia", SourceCoordinates, "nearest region"},
		{"126.10.20.30", "asia", SourceCoordinates, "nearest region"},
		{"203.0.113.200", "asia", SourceCoordinates, "nearest region"}, // Sydney
		{"::ffff:126.10.20.30", "asia", SourceCoordinates, "nearest region"},
		// Unknown, private and loopback addresses: the default region (us).
		{"8.8.8.8", "us", SourceDefault, "not in GeoIP database"},
		{"10.1.2.3", "us", SourceDefault, "private address"},
		{"192.168.1.1", "us", SourceDefault, "private address"},
		{"100.64.0.1", "us", SourceDefault, "private address"},
		{"fd00::1", "us", SourceDefault, "private address"},
		{"127.0.0.1", "us", SourceDefault, "loopback address"},
		{"::1", "us", SourceDefault, "loopback address"},
		{"fe80::1", "us", SourceDefault, "link-local address"},
		{"0.0.0.0", "us", SourceDefault, "unspecified address"},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			a := s.Route(addr(tt.ip))
			if a.Region != tt.region || a.Location.Source != tt.src || !strings.Contains(a.Why, tt.why) {
				t.Errorf("Route = %s (%s), why %q; want %s (%s) %q", a.Region, a.Location.Source, a.Why, tt.region, tt.src, tt.why)
			}
			if len(a.Edges) != 3 || a.Hostname != tt.region+".cdn.meridian.test" {
				t.Errorf("edges %v hostname %q", a.Edges, a.Hostname)
			}
		})
	}
	a := s.Route(addr("192.0.2.10"))
	if a.DistanceKm != 0 || a.Client != addr("192.0.2.10") || a.Location.Country != "DE" || a.Location.Continent != "EU" {
		t.Errorf("answer %+v", a)
	}
	if a := s.Route(addr("198.51.100.7")); a.DistanceKm != 0 {
		t.Errorf("Ashburn client to Ashburn region: %v km", a.DistanceKm)
	}
}

func TestRouteMaxMindDatabase(t *testing.T) {
	for _, db := range []string{"GeoLite2-City-Test.mmdb", "GeoIP2-City-Test.mmdb"} {
		t.Run(db, func(t *testing.T) {
			c := testConfig()
			c.Database = "testdata/geoip/" + db
			s, err := New(c, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			tests := map[string]string{
				"81.2.69.142":   "eu",   // London
				"89.160.20.113": "eu",   // Linköping
				"216.160.83.57": "us",   // Milton, WA
				"2001:218::1":   "asia", // Japan
				"175.16.199.1":  "asia", // Changchun
				"67.43.156.1":   "asia", // Bhutan, 534 km radius: country centroid
				"202.196.224.1": "asia", // Philippines
				"2a02:d500::1":  "eu",   // continent and coordinates, no country
				"1.1.1.1":       "us",   // not in the database: default
			}
			for ip, want := range tests {
				if got := s.Route(addr(ip)); got.Region != want {
					t.Errorf("%s → %s (%s), want %s", ip, got.Region, got.Why, want)
				}
			}
			if db == "GeoIP2-City-Test.mmdb" {
				for ip, want := range map[string]string{
					"149.101.100.1": "us", // 1000 km radius: US centroid
					"2.3.3.1":       "eu", // continent only
					"214.1.1.1":     "us", // traits only: default
				} {
					if got := s.Route(addr(ip)); got.Region != want {
						t.Errorf("%s → %s (%s), want %s", ip, got.Region, got.Why, want)
					}
				}
			}
		})
	}
}

func TestRouteCountryDatabase(t *testing.T) {
	c := testConfig()
	c.Database = "testdata/geoip/GeoIP2-Country-Test.mmdb"
	s, err := New(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]string{"2001:218::1": "asia", "2a02:d180::1": "eu", "2a02:d500::1": "eu"} {
		if got := s.Route(addr(ip)); got.Region != want {
			t.Errorf("%s → %s (%s), want %s", ip, got.Region, got.Why, want)
		}
	}
}

func TestRouteAntimeridian(t *testing.T) {
	loc := entriesLocator(t, []geodb.Entry{
		{Network: "192.0.2.0/26", Country: "FJ", Location: &geodb.Location{Lat: 0, Lon: 179, AccuracyKm: 50}},
		{Network: "192.0.2.64/26", Country: "WS", Continent: "OC", Location: &geodb.Location{Lat: 0, Lon: -179.5, AccuracyKm: 50}},
		{Network: "192.0.2.128/26", Country: "NZ", Continent: "OC", Location: &geodb.Location{Lat: 0, Lon: 171, AccuracyKm: 50}},
	})
	c := Config{Regions: []Region{
		{Name: "east", Point: Point{0, -179}, Edges: []string{"127.0.1.1:80"}},
		{Name: "west", Point: Point{0, 170}, Edges: []string{"127.0.2.1:80"}},
		{Name: "far", Point: Point{0, 0}, Edges: []string{"127.0.3.1:80"}},
	}}
	s := newTestService(t, c, Options{Locator: loc})
	for ip, want := range map[string]string{
		"192.0.2.1":   "east", // lon 179: 2° from east across the line, 9° from west
		"192.0.2.65":  "east",
		"192.0.2.130": "west", // lon 171
	} {
		a := s.Route(addr(ip))
		if a.Region != want {
			t.Errorf("%s → %s at %.0f km, want %s", ip, a.Region, a.DistanceKm, want)
		}
		if a.DistanceKm > 1200 {
			t.Errorf("%s: %v km, the antimeridian did not wrap", ip, a.DistanceKm)
		}
	}
}

func TestPins(t *testing.T) {
	c := testConfig()
	c.Pins = Pins{
		Countries: map[string]string{"JP": "us", "BR": "eu"},
		Networks: map[string]string{
			"192.0.2.0/24":   "asia",
			"192.0.2.128/25": "us", // longer prefix wins
			"10.0.0.0/8":     "eu", // pins beat the private-address default
			"2001:db8::/32":  "asia",
		},
	}
	s := newTestService(t, c, Options{})
	tests := []struct{ ip, region, why string }{
		{"192.0.2.1", "asia", "network 192.0.2.0/24 pinned to asia"},
		{"192.0.2.200", "us", "network 192.0.2.128/25 pinned to us"},
		{"10.9.9.9", "eu", "network 10.0.0.0/8 pinned to eu"},
		{"::ffff:10.9.9.9", "eu", "pinned to eu"},
		{"126.1.1.1", "us", "country JP pinned to us"},
		{"198.51.100.129", "eu", "country BR pinned to eu"},
		{"2001:db8:de::1", "asia", "network 2001:db8::/32 pinned to asia"},
		{"91.0.0.1", "eu", "located by coordinates"},
	}
	for _, tt := range tests {
		a := s.Route(addr(tt.ip))
		if a.Region != tt.region || !strings.Contains(a.Why, tt.why) {
			t.Errorf("%s → %s (%q), want %s (%q)", tt.ip, a.Region, a.Why, tt.region, tt.why)
		}
	}
	if a := s.Route(addr("126.1.1.1")); a.Location.Source != SourcePin || a.Location.Country != "JP" || a.DistanceKm != 0 {
		t.Errorf("country pin location %+v", a.Location)
	}
	// A pinned region that is down hands its clients to its nearest
	// healthy neighbour, as for any other client located there.
	setStates(t, s, map[string]State{"asia": StateDown}, 0)
	if a := s.Route(addr("192.0.2.1")); a.Region != "eu" || !strings.Contains(a.Why, "asia is down") { // Frankfurt is nearer Tokyo than Ashburn
		t.Errorf("pinned region down: %s (%s)", a.Region, a.Why)
	}
}

func TestDefaultRegionDown(t *testing.T) {
	c := testConfig()
	c.DefaultRegion = "eu"
	s := newTestService(t, c, Options{})
	if a := s.Route(addr("10.0.0.1")); a.Region != "eu" {
		t.Fatalf("private → %s", a.Region)
	}
	setStates(t, s, map[string]State{"eu": StateDown}, 0)
	if a := s.Route(addr("10.0.0.1")); a.Region != "us" {
		t.Errorf("default region down: private → %s, want the region nearest to it (us)", a.Region)
	}
}

func TestNoDatabase(t *testing.T) {
	s, err := New(testConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a := s.Route(addr("192.0.2.1")); a.Region != "us" || !strings.Contains(a.Why, "no GeoIP database") {
		t.Errorf("no database: %s (%s)", a.Region, a.Why)
	}
}

func TestHealthPolicies(t *testing.T) {
	s := newTestService(t, testConfig(), Options{})
	de := addr("192.0.2.10")
	tests := []struct {
		name   string
		states map[string]State
		region string
		why    string
	}{
		{"all up", nil, "eu", "nearest region"},
		{"nearest down", map[string]State{"eu": StateDown}, "us", "nearest region eu is down; us by policy nearest"},
		{"nearest held down", map[string]State{"eu": StateHoldDown}, "us", "eu is hold-down"},
		{"two down: the third", map[string]State{"eu": StateDown, "us": StateDown}, "asia", "nearest region eu is down; asia by policy nearest"},
		{"all down: fail open", map[string]State{"eu": StateDown, "us": StateDown, "asia": StateDown}, "eu", "fail open: no edge of the 3 regions answers"},
		{"none fully up", map[string]State{"eu": StateHoldDown, "us": StateHoldDown, "asia": StateHoldDown}, "eu", "no region is fully up"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setStates(t, s, tt.states, 0)
			a := s.Route(de)
			if a.Region != tt.region || !strings.Contains(a.Why, tt.why) {
				t.Errorf("→ %s (%q), want %s (%q)", a.Region, a.Why, tt.region, tt.why)
			}
			if len(a.Edges) == 0 {
				t.Error("no edges")
			}
		})
	}
	// All edges down: the answer still names them rather than nothing.
	setStates(t, s, map[string]State{"eu": StateDown, "us": StateDown, "asia": StateDown}, 0)
	if a := s.Route(de); len(a.Edges) != 3 {
		t.Errorf("all down: edges %v", a.Edges)
	}
}

// TestNoQuorumAnywhere: with every region below its quorum, a client goes
// to the nearest region that still has an edge answering, and the answer
// names only that edge; never to a region whose edges are all down.
func TestNoQuorumAnywhere(t *testing.T) {
	c := testConfig()
	for i := range c.Regions {
		c.Regions[i].MinHealthy = 2
	}
	s := newTestService(t, c, Options{})
	h := newHealth(s.cfg.Probe, s.cfg.Regions, time.Now())
	for i := range h.regions {
		r := &h.regions[i]
		r.state = StateDown
		for j := range r.edges {
			r.edges[j].up = r.name == "asia" && j == 2
		}
	}
	s.view.Store(h.view())
	a := s.Route(addr("192.0.2.10")) // Frankfurt
	if a.Region != "asia" || !slices.Equal(a.Edges, []string{"127.0.3.3:8080"}) || a.Edge != "127.0.3.3:8080" ||
		!strings.Contains(a.Why, "nearest region with an edge that answers") {
		t.Errorf("→ %s %s %v (%s), want asia's one live edge", a.Region, a.Edge, a.Edges, a.Why)
	}
	if st := s.Status(); st.FailOpen || st.Healthy != 0 {
		t.Errorf("status fail_open %v healthy %d", st.FailOpen, st.Healthy)
	}
}

func TestRampAdmitsByClientSubnet(t *testing.T) {
	s := newTestService(t, testConfig(), Options{})
	setStates(t, s, map[string]State{"eu": StateRamping}, 50)
	back := 0
	for i := range 256 {
		ip := addr("91.0." + strconv.Itoa(i) + ".1")
		a := s.Route(ip)
		if a.Region != "eu" && a.Region != "us" {
			t.Fatalf("%s → %s", ip, a.Region)
		}
		if a.Region == "eu" {
			back++
			if !strings.Contains(a.Why, "recovering, 50% of clients back") {
				t.Errorf("why %q", a.Why)
			}
		}
		// The same subnet, another host: the same answer.
		if b := s.Route(addr("91.0." + strconv.Itoa(i) + ".200")); b.Region != a.Region {
			t.Fatalf("subnet split: %s vs %s", a.Region, b.Region)
		}
	}
	if back < 100 || back > 156 {
		t.Errorf("%d of 256 subnets back at 50%%", back)
	}
}

func TestSpreadPolicySharesAFailedRegion(t *testing.T) {
	c := Config{
		Regions: []Region{
			{Name: "fra", Point: Point{50.11, 8.68}, Edges: []string{"127.0.1.1:80"}},
			{Name: "ams", Point: Point{52.37, 4.90}, Edges: []string{"127.0.2.1:80"}, Capacity: 1},
			{Name: "lon", Point: Point{51.51, -0.13}, Edges: []string{"127.0.3.1:80"}, Capacity: 1},
			{Name: "nyc", Point: Point{40.71, -74.0}, Edges: []string{"127.0.4.1:80"}, Capacity: 10},
		},
		Picker: PickerConfig{Policy: "spread"},
	}
	s := newTestService(t, c, Options{})
	setStates(t, s, map[string]State{"fra": StateDown}, 0)
	counts := map[string]int{}
	for i := range 400 {
		counts[s.Route(addr("91."+strconv.Itoa(i/256)+"."+strconv.Itoa(i%256)+".1")).Region]++
	}
	if counts["ams"] < 100 || counts["lon"] < 100 || counts["nyc"] != 0 || counts["fra"] != 0 {
		t.Errorf("spread of fra's clients: %v, want ams and lon sharing, nyc beyond the slack", counts)
	}
}

func TestStatus(t *testing.T) {
	s := newTestService(t, testConfig(), Options{})
	setStates(t, s, map[string]State{"us": StateHoldDown}, 0)
	st := s.Status()
	if st.FailOpen || st.Healthy != 3 || len(st.Regions) != 3 {
		t.Fatalf("status %+v", st)
	}
	if r := st.Regions[1]; r.Name != "us" || r.State != StateHoldDown || r.TrafficPercent != 0 || r.HoldDownUntil.IsZero() {
		t.Errorf("us status %+v", r)
	}
	if r := st.Regions[0]; r.State != StateUp || r.TrafficPercent != 100 || len(r.Edges) != 3 || !r.Edges[0].Up {
		t.Errorf("eu status %+v", r)
	}
	if got := s.Regions().ByDistance(frankfurt)[1].Name; got != "us" {
		t.Errorf("next nearest to Frankfurt: %s", got)
	}
}

func TestRunAndCloseLifecycle(t *testing.T) {
	s := newTestService(t, testConfig(), Options{Transport: newFakeEdges()})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if err := s.Run(t.Context()); err == nil {
		t.Fatal("Run after Close: no error")
	}
	// Answers still work after Close.
	if a := s.Route(addr("192.0.2.1")); a.Region != "eu" {
		t.Errorf("after Close: %s", a.Region)
	}
}

// TestDNSAndHTTPAgree: for every client, in every health situation, the
// DNS answer (client subnet /24 or /56) and GET /route name one region.
func TestDNSAndHTTPAgree(t *testing.T) {
	c := testConfig()
	c.Database = "testdata/geoip/GeoIP2-City-Test.mmdb"
	withDB, err := New(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ips := []string{"81.2.69.142", "216.160.83.57", "2001:218::1", "175.16.199.1", "67.43.156.1", "149.101.100.1",
		"2.3.3.1", "214.1.1.1", "2a02:d500::1", "202.196.224.1", "89.160.20.113", "1.1.1.1"}
	builtin := newTestService(t, testConfig(), Options{})
	for i := range 64 {
		ips = append(ips, "91.0."+strconv.Itoa(i)+".9", "2003:0:"+strconv.Itoa(i)+"::1")
	}
	ips = append(ips, "192.0.2.1", "198.51.100.200", "203.0.113.200", "126.1.2.3", "2001:db8:3::1", "10.0.0.1")
	for _, states := range []map[string]State{
		nil,
		{"eu": StateDown},
		{"eu": StateRamping},
		{"asia": StateHoldDown, "us": StateRamping},
		{"eu": StateDown, "us": StateDown},
	} {
		for _, s := range []*Service{withDB, builtin} {
			setStates(t, s, states, 50)
			for _, ip := range ips {
				agree(t, s, addr(ip))
			}
		}
	}
}
