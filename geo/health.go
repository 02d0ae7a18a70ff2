package geo

import (
	"fmt"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"
)

// State is a region's health state. A region goes Up → Down when fewer
// than its min_healthy edges, or less than its min_healthy_share of them,
// answer; Down → HoldDown when they answer again;
// HoldDown → Ramping when it has stayed healthy for the hold-down; Ramping
// → Up after the last traffic step. Any failure goes straight back to Down.
type State int

// The region states.
const (
	// StateUp: the region takes all of its clients.
	StateUp State = iota
	// StateDown: too few edges answer; it takes no clients.
	StateDown
	// StateHoldDown: the edges answer again, but the region must stay
	// healthy for the hold-down before it takes clients.
	StateHoldDown
	// StateRamping: the region takes back a growing share of its clients.
	StateRamping
)

var stateNames = [...]string{"up", "down", "hold-down", "ramping"}

// String returns "up", "down", "hold-down" or "ramping".
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// MarshalText encodes the state as its name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// maxFailures bounds the failure times a region remembers: beyond
// HoldDownMax/HoldDown failures the hold-down is capped anyway.
const maxFailures = 64

type edgeHealth struct {
	addr       string
	up         bool
	fails, oks int // consecutive probe results
}

type regionHealth struct {
	name       string
	minHealthy int     // edges that must be up
	minShare   float64 // share of the edges that must be up
	edges      []edgeHealth
	state      State
	since      time.Time // when state began
	step       int       // index into Steps while ramping
	holdDown   time.Duration
	failures   []time.Time // when the region went down, within FailureWindow
}

// health is the probe evidence and the hysteresis state of every region.
// It is pure (time comes in as an argument) and owned by one goroutine,
// the probe loop; readers see the immutable views it publishes.
type health struct {
	cfg     ProbeConfig
	regions []regionHealth
}

// event is one state change, for the log.
type event struct {
	region, edge string // edge "" for a region change
	from, to     string
	detail       string
}

func newHealth(cfg ProbeConfig, regions []Region, now time.Time) *health {
	h := &health{cfg: cfg, regions: make([]regionHealth, len(regions))}
	for i, r := range regions {
		rh := regionHealth{name: r.Name, minHealthy: r.MinHealthy, minShare: r.MinHealthyShare, state: StateUp, since: now}
		for _, e := range r.Edges {
			// Optimistic start, as gdnsd: a fresh instance answers at once
			// and a dead edge is found after Fall probes.
			rh.edges = append(rh.edges, edgeHealth{addr: e, up: true})
		}
		h.regions[i] = rh
	}
	return h
}

// observe records one probe round (ok[i][j]: edge j of region i answered)
// taken at now, advances every region's state, and returns what changed.
// In a held round (the prober's self-check failed) failures are no
// evidence: they change nothing, and only the successes count.
func (h *health) observe(ok [][]bool, held bool, now time.Time) []event {
	var evs []event
	for i := range h.regions {
		r := &h.regions[i]
		for j := range r.edges {
			if held && !ok[i][j] {
				continue
			}
			if from, to, changed := h.observeEdge(&r.edges[j], ok[i][j]); changed {
				evs = append(evs, event{region: r.name, edge: r.edges[j].addr, from: from, to: to})
			}
		}
	}
	return append(evs, h.advance(now)...)
}

func (h *health) observeEdge(e *edgeHealth, ok bool) (from, to string, changed bool) {
	switch {
	case ok && e.up:
		e.fails = 0
	case !ok && e.up:
		e.fails++
		if e.fails >= h.cfg.Fall {
			e.up, e.oks = false, 0
			return "up", "down", true
		}
	case ok && !e.up:
		e.oks++
		if e.oks >= h.cfg.Rise {
			e.up, e.fails = true, 0
			return "down", "up", true
		}
	default:
		e.oks = 0
	}
	return "", "", false
}

// advance moves every region through the time-driven transitions
// (hold-down expiry, ramp steps) and those its edges call for.
func (h *health) advance(now time.Time) []event {
	var evs []event
	for i := range h.regions {
		r := &h.regions[i]
		// Each pass makes at most one transition; a zero hold-down or step
		// hold lets several happen at once, at most one per step.
		for range len(h.cfg.Steps) + 3 {
			from := r.state
			detail := h.step(r, now)
			if r.state == from && detail == "" {
				break
			}
			evs = append(evs, event{region: r.name, from: from.String(), to: r.state.String(), detail: detail})
		}
	}
	return evs
}

// step makes at most one transition of r and describes it ("" for none).
func (h *health) step(r *regionHealth, now time.Time) string {
	healthy := r.healthy()
	switch r.state {
	case StateUp:
		if !healthy {
			return h.fail(r, now)
		}
	case StateDown:
		if healthy {
			n := max(len(r.recentFailures(now, h.cfg.FailureWindow)), 1)
			r.holdDown = min(h.cfg.HoldDown*time.Duration(n), h.cfg.HoldDownMax)
			r.state, r.since = StateHoldDown, now
			return fmt.Sprintf("enough edges back; hold-down %v (%d failures in %v)", r.holdDown, n, h.cfg.FailureWindow)
		}
	case StateHoldDown:
		if !healthy {
			return h.fail(r, now)
		}
		if now.Sub(r.since) >= r.holdDown {
			r.state, r.since, r.step = StateRamping, now, 0
			if h.cfg.Steps[0] >= 100 {
				r.state = StateUp
			}
			return fmt.Sprintf("hold-down over; %v%% of clients", h.cfg.Steps[0])
		}
	case StateRamping:
		if !healthy {
			return h.fail(r, now)
		}
		if now.Sub(r.since) >= h.cfg.StepHold {
			r.step++
			r.since = now
			if r.step >= len(h.cfg.Steps)-1 {
				r.state = StateUp
			}
			return fmt.Sprintf("%v%% of clients", h.cfg.Steps[r.step])
		}
	}
	return ""
}

func (h *health) fail(r *regionHealth, now time.Time) string {
	r.failures = append(r.recentFailures(now, h.cfg.FailureWindow), now)
	if len(r.failures) > maxFailures {
		r.failures = r.failures[len(r.failures)-maxFailures:]
	}
	r.state, r.since, r.step = StateDown, now, 0
	return fmt.Sprintf("%d of %d edges up; min_healthy %d, min_healthy_share %v", r.edgesUp(), len(r.edges), r.minHealthy, r.minShare)
}

// healthy reports whether enough of r's edges are up for it to take
// clients: at least minHealthy, and at least minShare of them.
func (r *regionHealth) healthy() bool {
	up := r.edgesUp()
	return up >= r.minHealthy && float64(up) >= r.minShare*float64(len(r.edges))-1e-9
}

// recentFailures drops the failures older than window and returns the rest.
func (r *regionHealth) recentFailures(now time.Time, window time.Duration) []time.Time {
	k := 0
	for k < len(r.failures) && now.Sub(r.failures[k]) > window {
		k++
	}
	r.failures = r.failures[k:]
	return r.failures
}

func (r *regionHealth) edgesUp() int {
	n := 0
	for _, e := range r.edges {
		if e.up {
			n++
		}
	}
	return n
}

// percent is the share of its clients the region takes, 0 to 100.
func (h *health) percent(r *regionHealth) float64 {
	switch r.state {
	case StateUp:
		return 100
	case StateRamping:
		return h.cfg.Steps[r.step]
	}
	return 0
}

// view is an immutable snapshot of the health state, published by the
// probe loop and read by every answer.
type view struct {
	regions []regionView // in config order
	healthy int          // regions with enough edges answering
	// failOpen is set when no edge of any region answers: more likely the
	// prober (its network, its resolver) than every region is broken, so
	// health is ignored and every client gets its nearest region. While
	// any edge answers, health is trusted: clients go to the nearest
	// region that can take them, never to one whose edges are all down.
	failOpen bool
}

type regionView struct {
	state    State
	percent  float64 // share of its clients it takes, 0–100
	healthy  bool    // enough edges answer (min_healthy, min_healthy_share)
	edges    []EdgeStatus
	upEdges  []string // addresses of the edges that are up
	since    time.Time
	holdDown time.Duration
	failures int
	seed     uint64 // hash of the name, for admission while ramping
}

func (h *health) view() *view {
	v := &view{regions: make([]regionView, len(h.regions))}
	for i := range h.regions {
		r := &h.regions[i]
		rv := regionView{
			state:    r.state,
			percent:  h.percent(r),
			healthy:  r.healthy(),
			since:    r.since,
			holdDown: r.holdDown,
			failures: len(r.failures),
			seed:     xxhash.Sum64String(r.name),
		}
		for _, e := range r.edges {
			rv.edges = append(rv.edges, EdgeStatus{Addr: e.addr, Up: e.up})
			if e.up {
				rv.upEdges = append(rv.upEdges, e.addr)
			}
		}
		if rv.healthy {
			v.healthy++
		}
		v.regions[i] = rv
	}
	v.failOpen = !slices.ContainsFunc(v.regions, func(rv regionView) bool { return len(rv.upEdges) > 0 })
	return v
}

// admitSalt keeps the admission hash independent of the spread hash.
const admitSalt = 0x6d65726964696121

// admits reports whether a client (by subnet hash) is among the percent
// of clients the region takes. The test is monotonic in percent, so a
// client that went back to a ramping region stays there as the share grows.
func (rv *regionView) admits(client uint64) bool {
	switch {
	case rv.percent >= 100:
		return true
	case rv.percent <= 0:
		return false
	}
	return unitFloat(mix64(client^rv.seed^admitSalt))*100 < rv.percent
}
