package geo

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestRegionOfTwoKeepsItsClients: a region of two edges that loses one
// keeps its clients on the other (default min_healthy 1), over DNS and
// HTTP alike; it goes down only when both are gone.
func TestRegionOfTwoKeepsItsClients(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := testConfig()
		c.Regions[0].Edges = c.Regions[0].Edges[:2]
		edges := newFakeEdges()
		s := startService(t, c, edges)
		p := s.cfg.Probe
		de := addr("192.0.2.10")
		// Observe between probe rounds (a hanging probe ends half an
		// interval after the round starts), never at the instant of one.
		time.Sleep(2*time.Second + p.Interval*3/10)
		edges.kill(c.Regions[0].Edges[0], "hang")
		for range 20 {
			time.Sleep(p.Interval)
			if got := agree(t, s, de); got != "eu" {
				t.Fatalf("one of eu's two edges down: Frankfurt → %s (%s)", got, s.Route(de).Why)
			}
		}
		if a := s.Route(de); len(a.Edges) != 1 || a.Edges[0] != c.Regions[0].Edges[1] {
			t.Errorf("answer names %v, want only the live edge", a.Edges)
		}
		edges.kill(c.Regions[0].Edges[1], "refuse")
		time.Sleep(time.Duration(p.Fall)*p.Interval + p.Timeout)
		if got := agree(t, s, de); got != "us" {
			t.Errorf("both eu edges down: Frankfurt → %s", got)
		}
	})
}
