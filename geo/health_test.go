package geo

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// healthRig drives the pure health state with an explicit clock: one
// probe round per step of the clock.
type healthRig struct {
	t   *testing.T
	h   *health
	cfg ProbeConfig
	now time.Time
}

func newHealthRig(t *testing.T) *healthRig {
	cfg := DefaultProbeConfig()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	rs := Config{Regions: testRegions()}.WithDefaults().Regions
	for i := range rs {
		rs[i].MinHealthy = 2 // of three edges: a majority, as the tests below assume
	}
	return &healthRig{t: t, h: newHealth(cfg, rs, now), cfg: cfg, now: now}
}

// round advances the clock one interval and records a probe round in
// which the edges of region 0 answer as up says (edge j: up[j]); other
// regions are all up.
func (r *healthRig) round(up ...bool) {
	r.now = r.now.Add(r.cfg.Interval)
	ok := make([][]bool, len(r.h.regions))
	for i, rh := range r.h.regions {
		ok[i] = make([]bool, len(rh.edges))
		for j := range ok[i] {
			ok[i][j] = true
			if i == 0 && j < len(up) {
				ok[i][j] = up[j]
			}
		}
	}
	r.h.observe(ok, false, r.now)
}

func (r *healthRig) rounds(n int, up ...bool) {
	for range n {
		r.round(up...)
	}
}

// until runs rounds until region 0 reaches state, at most max rounds, and
// returns how many it took.
func (r *healthRig) until(state State, max int, up ...bool) int {
	r.t.Helper()
	for n := 1; n <= max; n++ {
		r.round(up...)
		if r.h.regions[0].state == state {
			return n
		}
	}
	r.t.Fatalf("region not %s after %d rounds (state %s)", state, max, r.h.regions[0].state)
	return 0
}

func (r *healthRig) state() State { return r.h.regions[0].state }

var (
	allUp   = []bool{true, true, true}
	allDown = []bool{false, false, false}
	oneDown = []bool{false, true, true}
	twoDown = []bool{false, false, true}
)

func TestEdgeHysteresis(t *testing.T) {
	r := newHealthRig(t)
	e := func() edgeHealth { return r.h.regions[0].edges[0] }
	// Two failures, a success, two failures: never three in a row.
	r.rounds(2, oneDown...)
	r.round(allUp...)
	r.rounds(2, oneDown...)
	if !e().up {
		t.Fatal("edge down without 3 consecutive failures")
	}
	r.round(oneDown...)
	if e().up {
		t.Fatal("edge still up after 3 consecutive failures")
	}
	// Five successes and a failure: not enough; then six in a row.
	r.rounds(5, allUp...)
	r.round(oneDown...)
	if e().up {
		t.Fatal("edge up without 6 consecutive successes")
	}
	r.rounds(5, allUp...)
	if e().up {
		t.Fatal("edge up after 5")
	}
	r.round(allUp...)
	if !e().up {
		t.Fatal("edge not up after 6 consecutive successes")
	}
}

func TestRegionMinHealthyTwo(t *testing.T) {
	r := newHealthRig(t)
	r.rounds(10, oneDown...)
	if r.state() != StateUp {
		t.Fatalf("one of three edges down: region %s, want up (min_healthy 2)", r.state())
	}
	if n := r.until(StateDown, 10, twoDown...); n != 3 {
		t.Errorf("two of three edges down: region down after %d rounds, want 3 (fall)", n)
	}
	v := r.h.view()
	if v.regions[0].healthy || v.regions[0].percent != 0 || len(v.regions[0].upEdges) != 1 || v.regions[0].upEdges[0] != "127.0.1.3:8080" {
		t.Errorf("view %+v", v.regions[0])
	}
	if v.healthy != 2 || v.failOpen {
		t.Errorf("healthy %d failOpen %v", v.healthy, v.failOpen)
	}
}

// TestRegionMinHealthy: a region is up while at least min_healthy edges
// (default 1) and at least min_healthy_share of its edges answer. A
// region of two edges stays up when one fails (the old default, a
// majority, took it down).
func TestRegionMinHealthy(t *testing.T) {
	edges := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("127.0.9.%d:80", i+1))
		}
		return out
	}
	tests := []struct {
		name       string
		edges, up  int
		minHealthy int
		share      float64
		want       State
	}{
		{"two edges, one up, defaults", 2, 1, 0, 0, StateUp},
		{"two edges, none up", 2, 0, 0, 0, StateDown},
		{"three edges, one up, defaults", 3, 1, 0, 0, StateUp},
		{"ten edges, one up, defaults", 10, 1, 0, 0, StateUp},
		{"two edges, one up, min_healthy 2", 2, 1, 2, 0, StateDown},
		{"two edges, one up, share 0.5", 2, 1, 0, 0.5, StateUp},
		{"three edges, one up, share 0.5", 3, 1, 0, 0.5, StateDown},
		{"ten edges, five up, share 0.5", 10, 5, 0, 0.5, StateUp},
		{"ten edges, four up, share 0.5", 10, 4, 0, 0.5, StateDown},
		{"ten edges, five up, share 0.5, min 6", 10, 5, 6, 0.5, StateDown},
		{"three edges, three up, share 1", 3, 3, 0, 1, StateUp},
		{"three edges, two up, share 1", 3, 2, 0, 1, StateDown},
		{"three edges, two up, share 2/3", 3, 2, 0, 2.0 / 3, StateUp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := Config{Regions: []Region{{Name: "r", Point: frankfurt, Edges: edges(tt.edges),
				MinHealthy: tt.minHealthy, MinHealthyShare: tt.share}}}.WithDefaults().Regions
			cfg := DefaultProbeConfig()
			now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			h := newHealth(cfg, rs, now)
			ok := [][]bool{make([]bool, tt.edges)}
			for j := range tt.up {
				ok[0][j] = true
			}
			for range cfg.Fall {
				now = now.Add(cfg.Interval)
				h.observe(ok, false, now)
			}
			if got := h.regions[0].state; got != tt.want {
				t.Errorf("%d of %d edges up: region %s, want %s", tt.up, tt.edges, got, tt.want)
			}
			if v := h.view(); v.regions[0].healthy != (tt.want == StateUp) {
				t.Errorf("view healthy %v", v.regions[0].healthy)
			}
		})
	}
}

func TestRecoveryHoldDownAndSteps(t *testing.T) {
	r := newHealthRig(t)
	r.until(StateDown, 3, allDown...)
	downAt := r.now

	// Back: 6 successes, then the 30 s hold-down (first failure).
	if n := r.until(StateHoldDown, 10, allUp...); n != 6 {
		t.Errorf("hold-down after %d successes, want 6 (rise)", n)
	}
	if hd := r.h.regions[0].holdDown; hd != 30*time.Second {
		t.Errorf("hold-down %v, want 30s", hd)
	}
	if n := r.until(StateRamping, 40, allUp...); n != 30 {
		t.Errorf("ramping after %d s of hold-down, want 30", n)
	}
	want := []float64{10, 50}
	for _, p := range want {
		v := r.h.view().regions[0]
		if v.state != StateRamping || v.percent != p {
			t.Fatalf("ramping view %s %v%%, want %v%%", v.state, v.percent, p)
		}
		r.rounds(int(r.cfg.StepHold/r.cfg.Interval), allUp...)
	}
	if r.state() != StateUp || r.h.view().regions[0].percent != 100 {
		t.Fatalf("after the steps: %s", r.state())
	}
	if took := r.now.Sub(downAt); took != 56*time.Second {
		t.Errorf("full recovery took %v, want 56s (6 + 30 + 10 + 10)", took)
	}
}

func TestHoldDownGrowsWithRepeatedFailures(t *testing.T) {
	r := newHealthRig(t)
	var holds []time.Duration
	for range 14 {
		r.until(StateDown, 5, allDown...)
		r.until(StateHoldDown, 10, allUp...)
		holds = append(holds, r.h.regions[0].holdDown)
	}
	for i, hd := range holds {
		want := min(time.Duration(i+1)*30*time.Second, 5*time.Minute)
		if hd != hd.Round(time.Second) || hd != want {
			t.Errorf("failure %d: hold-down %v, want %v", i+1, hd, want)
		}
	}
	// A failure while held down counts too and restarts the wait.
	r.round(allDown...)
	r.round(allDown...)
	if r.state() != StateHoldDown {
		t.Fatalf("state %s", r.state())
	}
	r.round(allDown...) // third failure: edges down
	if r.state() != StateDown {
		t.Fatalf("failure during hold-down: state %s, want down", r.state())
	}

	// After a quiet failure window, the count decays.
	r2 := newHealthRig(t)
	r2.until(StateDown, 5, allDown...)
	r2.until(StateUp, 100, allUp...)
	r2.now = r2.now.Add(r2.cfg.FailureWindow + time.Second)
	r2.until(StateDown, 5, allDown...)
	r2.until(StateHoldDown, 10, allUp...)
	if hd := r2.h.regions[0].holdDown; hd != 30*time.Second {
		t.Errorf("after a quiet window: hold-down %v, want 30s", hd)
	}
}

func TestFailureWhileRampingGoesStraightDown(t *testing.T) {
	r := newHealthRig(t)
	r.until(StateDown, 3, allDown...)
	r.until(StateRamping, 60, allUp...)
	r.rounds(2, twoDown...)
	if r.state() != StateRamping {
		t.Fatalf("state %s", r.state())
	}
	r.round(twoDown...)
	if r.state() != StateDown || r.h.view().regions[0].percent != 0 {
		t.Fatalf("failure while ramping: %s", r.state())
	}
	if n := len(r.h.regions[0].failures); n != 2 {
		t.Errorf("%d failures remembered, want 2", n)
	}
}

func TestZeroHoldsCascade(t *testing.T) {
	cfg := DefaultProbeConfig()
	cfg.StepHold = 0
	cfg.HoldDown = 0
	cfg.Steps = []float64{100}
	r := newHealthRig(t)
	r.h.cfg, r.cfg = cfg, cfg
	r.until(StateDown, 3, allDown...)
	if n := r.until(StateUp, 10, allUp...); n != 6 {
		t.Errorf("with no hold-down and one step: up after %d rounds, want 6", n)
	}
}

func TestFailOpen(t *testing.T) {
	tests := []struct {
		name     string
		ok       [][]bool
		healthy  int
		failOpen bool
	}{
		{"one region of three healthy", [][]bool{{false, false, false}, {false, false, false}, {true, true, true}}, 1, false},
		{"one edge answers, no quorum anywhere", [][]bool{{false, false, false}, {true, false, false}, {false, false, false}}, 0, false},
		{"no edge answers", [][]bool{{false, false, false}, {false, false, false}, {false, false, false}}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newHealthRig(t)
			for range 3 {
				r.now = r.now.Add(time.Second)
				r.h.observe(tt.ok, false, r.now)
			}
			if v := r.h.view(); v.failOpen != tt.failOpen || v.healthy != tt.healthy {
				t.Errorf("failOpen %v healthy %d, want %v %d", v.failOpen, v.healthy, tt.failOpen, tt.healthy)
			}
		})
	}
}

func TestAdmits(t *testing.T) {
	const n = 10000
	for _, pct := range []float64{0, 10, 50, 100} {
		rv := regionView{percent: pct, seed: 12345}
		in := 0
		for k := range uint64(n) {
			if rv.admits(mix64(k)) {
				in++
				// Monotonic: admitted at pct means admitted at any larger share.
				bigger := regionView{percent: pct + (100-pct)/2, seed: rv.seed}
				if !bigger.admits(mix64(k)) {
					t.Fatalf("client %d admitted at %v%% but not at %v%%", k, pct, bigger.percent)
				}
			}
		}
		if got := float64(in) / n * 100; math.Abs(got-pct) > 2 {
			t.Errorf("%v%%: admitted %.1f%%", pct, got)
		}
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{StateUp: "up", StateDown: "down", StateHoldDown: "hold-down", StateRamping: "ramping", State(9): "State(9)"} {
		if s.String() != want {
			t.Errorf("%d: %q", int(s), s.String())
		}
	}
}
