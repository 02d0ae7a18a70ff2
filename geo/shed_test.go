package geo

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestFourOfSevenRegionsDown: with four of seven regions down, health is
// still trusted: every client goes to the nearest of the three healthy
// regions (great-circle distances computed apart from this code:
// Frankfurt–London 638 km, Chicago–San Jose 2958 km, Tokyo–Sydney 7827 km
// against 8336 km to San Jose, São Paulo–London 9497 km against 10370 km
// to San Jose), DNS and HTTP alike, and never to a region that is down.
func TestFourOfSevenRegionsDown(t *testing.T) {
	want := map[string]string{
		"192.0.2.10":          "eu-west", // Frankfurt
		"198.51.100.20":       "us-west", // Chicago
		"203.0.113.200":       "ap-se",   // Melbourne
		"45.10.20.150":        "eu-west", // Berlin
		"45.10.30.200":        "ap-se",   // Osaka
		"45.10.40.9":          "us-west", // Seattle
		"62.1.2.130":          "eu-west", // Dublin
		"177.20.30.200":       "eu-west", // São Paulo
		"126.50.60.70":        "ap-se",   // Tokyo
		"1.120.5.6":           "ap-se",   // Sydney
		"4.2.2.2":             "us-west", // Los Angeles
		"2001:db8:de:1::5":    "eu-west", // Frankfurt
		"2001:db8:5:ab99::1":  "ap-se",   // Tokyo
		"2001:db8:61:ff12::1": "ap-se",   // Sydney
		"2001:db8:7:1a0::1":   "eu-west", // Munich
	}
	synctest.Test(t, func(t *testing.T) {
		edges := newFakeEdges()
		s := newTestService(t, sevenRegionConfig(), Options{Transport: edges, Locator: entriesLocator(t, subnetEntries())})
		runInBubble(t, s)
		p := s.cfg.Probe
		time.Sleep(2*time.Second + p.Interval*3/10)
		for _, cl := range subnetClients {
			if got := agree(t, s, addr(cl.ip)); got != cl.want {
				t.Fatalf("all up: %s → %s, want %s", cl.ip, got, cl.want)
			}
		}
		for _, name := range []string{"eu-central", "us-east", "ap-ne", "sa-east"} {
			edges.set(s.cfg.Regions, name, "refuse")
		}
		time.Sleep(time.Duration(p.Fall)*p.Interval + p.Timeout)
		for range 30 { // and it stays so over many probe rounds
			for ip, w := range want {
				if got := agree(t, s, addr(ip)); got != w {
					t.Fatalf("four of seven down: %s → %s (%s), want %s", ip, got, s.Route(addr(ip)).Why, w)
				}
				if why := s.Route(addr(ip)).Why; strings.Contains(why, "fail open") {
					t.Fatalf("%s: %s", ip, why)
				}
			}
			time.Sleep(p.Interval)
		}
		if st := s.Status(); st.FailOpen || st.Healthy != 3 {
			t.Errorf("status: fail_open %v, healthy %d, want false 3", st.FailOpen, st.Healthy)
		}
	})
}

// runInBubble runs s until the test ends.
func runInBubble(t *testing.T, s *Service) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- s.Run(context.Background()) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestShedByCapacity: with picker spread, a failed region's clients are
// shared among the healthy regions near it in proportion to their
// capacity, and none goes to a region that is down, however many are.
func TestShedByCapacity(t *testing.T) {
	c := sevenRegionConfig()
	c.Picker = PickerConfig{Policy: "spread", SlackKm: 1000}
	// eu-west is 638 km from Frankfurt, eu-north (Stockholm) 1190 km.
	c.Regions[1].Capacity = 3
	c.Regions = append(c.Regions, Region{Name: "eu-north", Point: Point{59.33, 18.07},
		Edges: []string{"127.0.8.1:8080"}, Capacity: 1})
	s := newTestService(t, c, Options{}) // the built-in table: 91.0.0.0/10 is Frankfurt
	setStates(t, s, map[string]State{"eu-central": StateDown, "us-east": StateDown, "ap-ne": StateDown, "sa-east": StateDown}, 0)
	counts := map[string]int{}
	for _, ip := range germans() {
		counts[s.Route(ip).Region]++
	}
	// 512 clients, capacity 3 : 1: about 384 and 128.
	if counts["eu-west"] < 320 || counts["eu-north"] < 80 || counts["eu-west"]+counts["eu-north"] != 512 {
		t.Errorf("Frankfurt's clients shed to %v, want about 3:1 over eu-west and eu-north", counts)
	}
}
