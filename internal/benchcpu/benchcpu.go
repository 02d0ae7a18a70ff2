// Package benchcpu reports the CPU time a benchmark's process spends per
// operation (user plus system, every goroutine: client and server alike
// when both run in the process), so that a throughput figure comes with
// its cost: a build that is faster only because it uses more cores shows
// it here.
//
// It imports nothing of the module.
package benchcpu

import (
	"testing"
	"time"
)

// Meter is the process's CPU time when the measure began.
type Meter struct{ start time.Duration }

// Start begins a measure; call it where the timed part begins (after
// b.ResetTimer, or just before the b.Loop loop).
func Start() Meter { return Meter{start: processCPU()} }

// Report adds cpu-ns/op to b's results: the process's CPU time since
// Start divided by b.N. It reports nothing where the system does not say
// (processCPU is zero).
func (m Meter) Report(b *testing.B) {
	now := processCPU()
	if now == 0 || b.N == 0 {
		return
	}
	b.ReportMetric(float64(now-m.start)/float64(b.N), "cpu-ns/op")
}
