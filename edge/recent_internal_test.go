package edge

import (
	"math"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/internal/fakeclock"
)

// traffic feeds a hitWindow as a node does: every interval the counters
// move by (served, total) and are sampled at the fake clock's time.
type traffic struct {
	t             *testing.T
	w             *hitWindow
	clock         *fakeclock.Clock
	served, total float64
}

func (tr *traffic) run(d, every time.Duration, served, total float64) {
	for end := tr.clock.Now().Add(d); tr.clock.Now().Before(end); {
		tr.clock.Advance(every)
		tr.served += served
		tr.total += total
		tr.w.add(tr.clock.Now(), tr.served, tr.total)
	}
}

func wantRatio(t *testing.T, what string, r RecentRatio, ratio, requests, seconds float64) {
	t.Helper()
	if math.IsNaN(ratio) {
		if r.Ratio != nil {
			t.Errorf("%s: ratio %v, want none", what, *r.Ratio)
		}
	} else if r.Ratio == nil || math.Abs(*r.Ratio-ratio) > 1e-9 {
		t.Errorf("%s: ratio %v, want %v", what, r.Ratio, ratio)
	}
	if r.Requests != requests || r.Seconds != seconds {
		t.Errorf("%s: %v requests over %vs, want %v over %vs", what, r.Requests, r.Seconds, requests, seconds)
	}
}

func TestHitWindowCoversTheLastMinuteAndFive(t *testing.T) {
	clock := fakeclock.New()
	tr := &traffic{t: t, w: &hitWindow{}, clock: clock}
	if r := tr.w.ratio(time.Minute); r.Ratio != nil || r.Requests != 0 {
		t.Fatalf("no samples: %+v", r)
	}
	tr.w.add(clock.Now(), 0, 0)
	// Ten minutes of misses only, then four of 50% hits, then one minute
	// of hits only; sampled every 5s.
	tr.run(10*time.Minute, StatusSampleInterval, 0, 10)
	tr.run(4*time.Minute, StatusSampleInterval, 5, 10)
	tr.run(time.Minute, StatusSampleInterval, 10, 10)
	// The last minute: 12 samples of 10 hits; the last five: 4 minutes
	// at 50% and 1 at 100%. Since start it would be 720/1800.
	wantRatio(t, "1m", tr.w.ratio(time.Minute), 1, 120, 60)
	wantRatio(t, "5m", tr.w.ratio(5*time.Minute), (240.0+120)/600, 600, 300)
	if len(tr.w.samples) > maxHitSamples {
		t.Fatalf("%d samples kept, bound %d", len(tr.w.samples), maxHitSamples)
	}

	// A minute with no requests: nothing to say of the last minute.
	tr.run(time.Minute, StatusSampleInterval, 0, 0)
	wantRatio(t, "idle 1m", tr.w.ratio(time.Minute), math.NaN(), 0, 60)
}

// Sampled more often than the interval (every /status read samples), the
// window keeps samples an interval apart and still covers its length, to
// within one interval.
func TestHitWindowSampledOftenOrRarely(t *testing.T) {
	clock := fakeclock.New()
	tr := &traffic{t: t, w: &hitWindow{}, clock: clock}
	tr.w.add(clock.Now(), 0, 0)
	tr.run(3*time.Minute, time.Second, 0, 1) // misses
	tr.run(time.Minute, time.Second, 1, 1)   // hits
	if len(tr.w.samples) > maxHitSamples {
		t.Fatalf("%d samples kept, bound %d", len(tr.w.samples), maxHitSamples)
	}
	r := tr.w.ratio(time.Minute)
	if r.Seconds < 60 || r.Seconds > 60+StatusSampleInterval.Seconds() {
		t.Fatalf("1m window spans %vs", r.Seconds)
	}
	// Every request of the last minute was a hit; the window may reach
	// back up to one interval into the misses.
	if r.Ratio == nil || *r.Ratio < 60.0/65 || *r.Ratio > 1 {
		t.Fatalf("1m ratio %v over %v requests", r.Ratio, r.Requests)
	}

	// Sampled only now and then (no node sampling, /status read rarely):
	// the window says how long it really covers.
	rare := &traffic{t: t, w: &hitWindow{}, clock: clock}
	rare.w.add(clock.Now(), 0, 0)
	rare.run(10*time.Minute, 10*time.Minute, 3, 4)
	wantRatio(t, "rare 1m", rare.w.ratio(time.Minute), 0.75, 4, 600)

	// Younger than the window: what there is.
	young := &traffic{t: t, w: &hitWindow{}, clock: clock}
	young.w.add(clock.Now(), 0, 0)
	young.run(30*time.Second, StatusSampleInterval, 1, 2)
	wantRatio(t, "young 5m", young.w.ratio(5*time.Minute), 0.5, 12, 30)
}

// A clock that goes back, or counters that go down, start afresh rather
// than give a negative or inflated ratio.
func TestHitWindowStartsAfreshOnABackwardStep(t *testing.T) {
	clock := fakeclock.New()
	w := &hitWindow{}
	w.add(clock.Now(), 0, 0)
	clock.Advance(time.Minute)
	w.add(clock.Now(), 50, 100)
	w.add(clock.Now().Add(-time.Hour), 60, 110)
	if r := w.ratio(time.Minute); r.Ratio != nil || len(w.samples) != 1 {
		t.Fatalf("after the clock went back: %+v, %d samples", r, len(w.samples))
	}
	clock.Advance(time.Minute)
	w.add(clock.Now(), 70, 120)
	w.add(clock.Now().Add(10*time.Second), 1, 2) // counters reset
	if len(w.samples) != 1 {
		t.Fatalf("after the counters went down: %d samples", len(w.samples))
	}
}
