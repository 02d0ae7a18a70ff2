package edge

import (
	"sync"
	"time"
)

// StatusSampleInterval is how often the admin API's owner should call
// [Admin.Sample]: the recent hit ratios on /status cover their window
// to within about this much.
const StatusSampleInterval = 5 * time.Second

// recentWindows are the windows of the recent hit ratios on /status, by
// their JSON name.
var recentWindows = []struct {
	name string
	d    time.Duration
}{{"1m", time.Minute}, {"5m", 5 * time.Minute}}

// maxHitSamples bounds the samples a hitWindow keeps: enough, at least
// StatusSampleInterval apart, to reach back over the longest window.
const maxHitSamples = int(5*time.Minute/StatusSampleInterval) + 2

// hitWindow keeps samples of the cumulative request counters over the
// last few minutes, so that the hit ratio of the last minute (or five)
// can be told: the counters alone give it since start, which hides what
// a purge or a new release did an hour ago. Its zero value is ready;
// its lock is a leaf.
type hitWindow struct {
	mu      sync.Mutex
	samples []hitSample // oldest first, at most maxHitSamples
}

// hitSample is the counters at one time: the cacheable requests served
// from the store (hits and stale serves) and all cacheable requests
// (those plus misses).
type hitSample struct {
	at            time.Time
	served, total float64
}

// RecentRatio is the hit ratio over a recent window, as /status gives it.
type RecentRatio struct {
	// Ratio is the share of cacheable requests served from the store
	// (hits and stale serves over those plus misses) in the window; nil
	// when there were none.
	Ratio *float64 `json:"ratio"`
	// Requests counts the cacheable requests in the window.
	Requests float64 `json:"requests"`
	// Seconds is how long the window really is: up to one sample
	// interval more than asked, less while the node is younger than it.
	Seconds float64 `json:"seconds"`
}

// add records the counters at at. Samples are kept at least
// StatusSampleInterval apart: until the newest is that much younger than
// the one before, a new sample replaces it. A clock that went back or
// counters that went down (they never should) start the samples afresh.
func (w *hitWindow) add(at time.Time, served, total float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := hitSample{at: at, served: served, total: total}
	n := len(w.samples)
	if n > 0 {
		last := w.samples[n-1]
		if at.Before(last.at) || served < last.served || total < last.total {
			w.samples = append(w.samples[:0], s)
			return
		}
	}
	if n >= 2 && w.samples[n-1].at.Sub(w.samples[n-2].at) < StatusSampleInterval {
		w.samples[n-1] = s
		return
	}
	if n == maxHitSamples {
		copy(w.samples, w.samples[1:])
		w.samples = w.samples[:n-1]
	}
	w.samples = append(w.samples, s)
}

// ratio returns the hit ratio over the window d that ends at the newest
// sample: from the newest sample at least d older than it (or the
// oldest, while there is none).
func (w *hitWindow) ratio(d time.Duration) RecentRatio {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(w.samples)
	if n < 2 {
		return RecentRatio{}
	}
	last := w.samples[n-1]
	from := w.samples[0]
	for i := n - 2; i >= 0; i-- {
		if !w.samples[i].at.After(last.at.Add(-d)) {
			from = w.samples[i]
			break
		}
	}
	r := RecentRatio{Requests: last.total - from.total, Seconds: last.at.Sub(from.at).Seconds()}
	if r.Requests > 0 {
		v := (last.served - from.served) / r.Requests
		r.Ratio = &v
	}
	return r
}

// Sample records the edge's request counters now, for the recent hit
// ratios of /status. Call it every StatusSampleInterval (a node does);
// /status samples too whenever it is read.
func (a *Admin) Sample() {
	c := a.Handler.RequestCounts()
	served := c["hit"] + c["stale"]
	a.recent.add(a.Handler.now(), served, served+c["miss"])
}

// recentRatios samples now and returns the hit ratio of each recent
// window, by name.
func (a *Admin) recentRatios() map[string]RecentRatio {
	a.Sample()
	out := make(map[string]RecentRatio, len(recentWindows))
	for _, w := range recentWindows {
		out[w.name] = a.recent.ratio(w.d)
	}
	return out
}
