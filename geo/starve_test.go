package geo

import (
	"net/netip"
	"testing"
	"testing/synctest"
	"time"
)

// TestStarvedProber simulates a prober on a saturated core, in virtual
// time: its probes (and its self-check against a local target) stall, for
// one region's edges or for all, or are written late. A starved prober
// must hold the last known state: no region goes down, no client moves.
// The figures (regions marked down, seconds clients spent away from their
// nearest region, fail open) are logged.
func TestStarvedProber(t *testing.T) {
	clients := map[netip.Addr]string{addr("192.0.2.10"): "eu", addr("198.51.100.7"): "us", addr("203.0.113.10"): "asia"}
	for _, tt := range []struct {
		name    string
		regions []string // regions whose probes stall
		mode    string   // "starve": never written; "late": written after lateWrite
	}{
		{"one region's probes stall", []string{"eu"}, "starve"},
		{"every probe stalls", []string{"eu", "us", "asia"}, "starve"},
		{"every probe written late", []string{"eu", "us", "asia"}, "late"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				edges := newFakeEdges()
				s := startService(t, testConfig(), edges)
				p := s.cfg.Probe
				if lateWrite >= p.Timeout || lateWrite+lateAnswer <= p.Timeout {
					t.Fatalf("a late probe must be written within the timeout and answered after it")
				}
				time.Sleep(2*time.Second + p.Interval*3/10)
				for _, name := range tt.regions {
					edges.set(s.cfg.Regions, name, tt.mode)
				}
				edges.kill(selfCheckHost, tt.mode) // the local target is as starved
				var away time.Duration
				failOpen := false
				const step = 250 * time.Millisecond
				for start := time.Now(); time.Since(start) < 90*time.Second; {
					time.Sleep(step)
					for ip, want := range clients {
						if s.Route(ip).Region != want {
							away += step
						}
					}
					failOpen = failOpen || s.Status().FailOpen
				}
				for _, name := range tt.regions {
					edges.set(s.cfg.Regions, name, "")
				}
				edges.kill(selfCheckHost, "")
				downs := 0
				for _, r := range s.Status().Regions {
					downs += r.RecentFailures
				}
				t.Logf("90 s of a starved prober (%s): %d region failures, %v client-seconds away from the nearest region (3 clients), fail open %v",
					tt.name, downs, away, failOpen)
				if held := s.held.Load(); tt.mode == "starve" && held < 80 || tt.mode == "late" && held != 0 {
					t.Errorf("%d probe rounds held", held)
				}
				if downs != 0 || away != 0 || failOpen {
					t.Errorf("a starved prober moved clients: %d region failures, %v away, fail open %v", downs, away, failOpen)
				}
			})
		})
	}
}

// TestStarvedProberStillSeesARealFailure: while the self-check answers, a
// region whose edges stop answering goes down as before; and while the
// prober is starved, an edge that does answer still counts.
func TestStarvedProberStillSeesARealFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		edges := newFakeEdges()
		s := startService(t, testConfig(), edges)
		p := s.cfg.Probe
		de := addr("192.0.2.10")
		time.Sleep(2*time.Second + p.Interval*3/10)
		edges.set(s.cfg.Regions, "eu", "hang")
		time.Sleep(time.Duration(p.Fall)*p.Interval + p.Timeout)
		if got := s.Route(de).Region; got != "us" {
			t.Fatalf("eu's edges hang, the self-check answers: Frankfurt → %s, want us", got)
		}
		// The prober starves while eu comes back: eu's answers still count.
		edges.kill(selfCheckHost, "starve")
		edges.set(s.cfg.Regions, "eu", "")
		time.Sleep(time.Duration(p.Rise+1) * p.Interval)
		if st := s.Status().Regions[0]; st.State != StateHoldDown || !st.Edges[0].Up {
			t.Errorf("eu answering again while the prober starves: %s, edges %+v", st.State, st.Edges)
		}
	})
}
