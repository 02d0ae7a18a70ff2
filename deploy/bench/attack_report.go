package bench

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// AttackTargets are the limits that an attack's verdict holds a server to
// (issue 13's acceptance, on this machine).
type AttackTargets struct {
	// MaxRSSRatio bounds the server's peak RSS over its budget
	// (Sample.RSSRatio).
	MaxRSSRatio float64
	// MaxLegitP99 bounds the legitimate client's p99 latency.
	MaxLegitP99 time.Duration
}

// DefaultAttackTargets are issue 13's: peak RSS at most 1.25 × (max_bytes +
// max_inflight_bytes + 64 MiB), and legitimate hits' p99 at most 50 ms. The
// third, origin requests at most the caps' rate × the duration, is each
// sample's OriginCapRPS.
func DefaultAttackTargets() AttackTargets {
	return AttackTargets{MaxRSSRatio: 1.25, MaxLegitP99: 50 * time.Millisecond}
}

// Misses returns the targets that the attack sample s missed, each as a
// short phrase; none means it met every target it could be judged on (a
// sample without a budget, an origin count and cap, or a legitimate client
// is not judged on those).
func (t AttackTargets) Misses(s Sample) []string {
	var out []string
	switch {
	case s.Killed:
		out = append(out, fmt.Sprintf("killed at %s RSS", mib(s.PeakRSS)))
	case s.ServerExited:
		out = append(out, "the server exited")
	}
	if s.BudgetBytes > 0 && s.RSSRatio > t.MaxRSSRatio {
		out = append(out, fmt.Sprintf("RSS %.2f× budget > %.2f×", s.RSSRatio, t.MaxRSSRatio))
	}
	if s.OriginCounted && s.OriginCapRPS > 0 && s.OriginRPS > s.OriginCapRPS {
		// The caps allow their burst on top of their rate over the
		// attack's duration (OriginFetches / OriginRPS).
		allowed := s.OriginCapRPS*float64(s.OriginFetches)/s.OriginRPS + s.OriginCapBurst
		if float64(s.OriginFetches) > allowed {
			out = append(out, fmt.Sprintf("origin %s/s > %s/s", num(s.OriginRPS, 0), num(s.OriginCapRPS, 0)))
		}
	}
	if s.LegitRequests > 0 {
		if s.LegitP99Ms > ms(t.MaxLegitP99) {
			out = append(out, fmt.Sprintf("legit p99 %s ms > %s ms", num(s.LegitP99Ms, 1), num(ms(t.MaxLegitP99), 0)))
		}
		if s.LegitErrors > 0 {
			out = append(out, fmt.Sprintf("%d legit errors", s.LegitErrors))
		}
	}
	return out
}

// Verdict is "pass", or "FAIL: " and the targets s missed.
func (t AttackTargets) Verdict(s Sample) string {
	if m := t.Misses(s); len(m) > 0 {
		return "FAIL: " + strings.Join(m, "; ")
	}
	return "pass"
}

// WriteAttackMarkdown writes the attack samples (Tool "attack"; others are
// left out) as a Markdown table, one row each in their order, with the
// verdict against t, then notes.
func WriteAttackMarkdown(w io.Writer, samples []Sample, t AttackTargets, m Machine, notes []string, now time.Time) error {
	var b strings.Builder
	b.WriteString("# Meridian under attack\n\n")
	fmt.Fprintf(&b, "Run of %s on %s. Each attack ran alone against a fresh edge and a fresh demo origin. "+
		"Targets: peak RSS ≤ %.2f× the budget (max_bytes + max_inflight_bytes + 64 MiB), "+
		"origin requests ≤ the caps' rate × the duration, legitimate hits' p99 ≤ %s ms with no errors.\n\n",
		now.UTC().Format("2006-01-02 15:04 MST"), m, t.MaxRSSRatio, num(ms(t.MaxLegitP99), 0))
	b.WriteString("| attack | rate × duration | sent | skipped | what the server did | peak RSS / budget | origin requests (per s) | legit hit p50 / p99 / max ms | legit errors | CPU % server / tool | verdict |\n")
	b.WriteString("|---|--:|--:|--:|---|--:|--:|--:|--:|--:|---|\n")
	for _, s := range samples {
		if s.Tool != "attack" {
			continue
		}
		name := s.Kind
		if name == "" {
			name = s.Scenario
		}
		if s.Server != "" {
			name += " (" + s.Server + ")"
		}
		dur := "–"
		if s.Rate > 0 {
			secs := math.Round(float64(s.Planned)/s.Rate*10) / 10
			dur = fmt.Sprintf("%s/s × %s s", num(s.Rate, 0), strconv.FormatFloat(secs, 'f', -1, 64))
		}
		legit, legitErr := "–", "–"
		if s.LegitRequests > 0 {
			legit = fmt.Sprintf("%s / %s / %s", num(s.LegitP50Ms, 1), num(s.LegitP99Ms, 1), num(s.LegitMaxMs, 1))
			legitErr = fmt.Sprintf("%d of %s", s.LegitErrors, num(float64(s.LegitRequests), 0))
			if s.LegitNotHits > 0 {
				legitErr += fmt.Sprintf(" (%s not hits)", count(s.LegitNotHits))
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s |\n", name, dur,
			count(s.Requests), count(s.Skipped), serverOutcome(s), rssCell(s), originCell(s), legit, legitErr,
			num(s.ServerCPUPct, 0), num(s.LoadCPUPct, 0), t.Verdict(s))
	}
	b.WriteString("\n" + attackColumnsNote + "\n")
	if len(notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("attack report: %w", err)
	}
	return nil
}

// attackColumnsNote explains the table's columns.
const attackColumnsNote = "sent: requests written to a connection; skipped: due while the generator's in-flight cap was reached (its limit, not the server's). " +
	"What the server did: responses received (429 and 503 are the server shedding load), requests abandoned at the client's timeout, " +
	"streams reset by the client (h2 RST_STREAM, h3 cancellations) and by the server, connections the server closed (reconnects, GOAWAY), and failed requests. " +
	"Peak RSS: VmRSS of the server's process tree, sampled every 50 ms from the attack's start to the end of its tail. " +
	"Origin requests: the demo origin's count from just before the attack to the end of the tail, per second of the attack's duration. " +
	"Legit hit: one keep-alive HTTP/1.1 client asking for an object cached before the attack, every 10 ms, from the attack's start to the end of the tail; " +
	"latencies corrected for coordinated omission (a request that held the client back counts once for each 10 ms it did); " +
	"\"not hits\": answers the server's Cache-Status (or X-Cache-Status, X-Cache) did not call a hit, the object having been evicted. " +
	"CPU %: the server's processes' and the attack tool's own utime+stime over the same time, in % of one core; " +
	"a tool near 100 % per core it may use was itself a limit, and its legitimate client's latencies include its own delays."

// serverOutcome lists the non-zero outcome counts of s.
func serverOutcome(s Sample) string {
	var parts []string
	add := func(n int64, what string) {
		if n > 0 {
			parts = append(parts, count(n)+" "+what)
		}
	}
	if s.Answered > 0 {
		a := count(s.Answered) + " answered"
		if s.Rejected > 0 {
			a += " (" + count(s.Rejected) + " 429/503)"
		}
		parts = append(parts, a)
	}
	add(s.Abandoned, "abandoned")
	add(s.Resets, "reset by client")
	add(s.ServerResets, "reset by server")
	add(s.Reconnects, "reconnects")
	add(s.GoAways, "GOAWAY")
	add(s.Errors, "errors")
	if len(parts) == 0 {
		return "–"
	}
	return strings.Join(parts, ", ")
}

func rssCell(s Sample) string {
	if s.PeakRSS == 0 {
		return "–"
	}
	c := mib(s.PeakRSS)
	if s.BudgetBytes > 0 {
		c += fmt.Sprintf(" / %s = %.2f×", mib(s.BudgetBytes), s.RSSRatio)
	}
	if s.Killed {
		c += " (killed)"
	}
	return c
}

func originCell(s Sample) string {
	if !s.OriginCounted {
		return "–"
	}
	rps := "0"
	if s.OriginRPS != 0 {
		rps = num(s.OriginRPS, 1)
	}
	c := fmt.Sprintf("%s (%s/s", count(s.OriginFetches), rps)
	if s.OriginCapRPS > 0 {
		c += fmt.Sprintf("; cap %s/s", num(s.OriginCapRPS, 0))
		if s.OriginCapBurst > 0 {
			c += fmt.Sprintf(" + %s", num(s.OriginCapBurst, 0))
		}
	}
	return c + ")"
}

// mib formats bytes in whole MiB.
func mib(b int64) string { return fmt.Sprintf("%s MiB", num(float64(b)/(1<<20), 0)) }

// count formats n with thousands separators, "0" for zero.
func count(n int64) string {
	if n == 0 {
		return "0"
	}
	return num(float64(n), 0)
}
