package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// attackSamples are two runs: one that held, one that did not.
func attackSamples() []Sample {
	return []Sample{
		{Scenario: "attack-h2-reset", Server: "meridian", Tool: "attack", Kind: "h2-reset", Rate: 1000, Planned: 10000,
			Requests: 9990, Skipped: 10, Resets: 9990, Reconnects: 3, GoAways: 3, Seconds: 10,
			PeakRSS: 150 << 20, BudgetBytes: 144 << 20, RSSRatio: 150.0 / 144,
			OriginCounted: true, OriginFetches: 412, OriginRPS: 41.2, OriginCapRPS: 100,
			LegitRequests: 1000, LegitP50Ms: 0.4, LegitP99Ms: 2.5, LegitMaxMs: 9.1, ServerCPUPct: 61.4, LoadCPUPct: 12.2},
		{Scenario: "attack-unique-keys", Server: "meridian", Tool: "attack", Kind: "unique-keys", Rate: 100, Planned: 1000,
			Requests: 1000, Answered: 1000, Rejected: 200, Errors: 2, Seconds: 10.4,
			PeakRSS: 600 << 20, BudgetBytes: 144 << 20, RSSRatio: 600.0 / 144,
			OriginCounted: true, OriginFetches: 1000, OriginRPS: 100, OriginCapRPS: 50,
			LegitRequests: 900, LegitErrors: 3, LegitNotHits: 120, LegitP50Ms: 1.2, LegitP99Ms: 230, LegitMaxMs: 1900},
		{Scenario: "hit-1k", Server: "meridian", Tool: "wrk", RPS: 40000}, // not an attack: left out
	}
}

func TestAttackTargets(t *testing.T) {
	tg := DefaultAttackTargets()
	if tg.MaxRSSRatio != 1.25 || tg.MaxLegitP99 != 50*time.Millisecond {
		t.Fatalf("DefaultAttackTargets = %+v", tg)
	}
	s := attackSamples()
	if m := tg.Misses(s[0]); len(m) != 0 {
		t.Errorf("Misses(held) = %q, want none", m)
	}
	if v := tg.Verdict(s[0]); v != "pass" {
		t.Errorf("Verdict(held) = %q", v)
	}
	want := []string{"RSS 4.17× budget > 1.25×", "origin 100/s > 50/s", "legit p99 230.0 ms > 50 ms", "3 legit errors"}
	if m := tg.Misses(s[1]); strings.Join(m, "|") != strings.Join(want, "|") {
		t.Errorf("Misses(broken) = %q\nwant %q", m, want)
	}
	for _, tc := range []struct {
		name string
		s    Sample
		want string
	}{
		{"killed", Sample{Killed: true, ServerExited: true, PeakRSS: 2 << 30}, "FAIL: killed at 2,048 MiB RSS"},
		{"exited", Sample{ServerExited: true}, "FAIL: the server exited"},
		{"nothing to judge on", Sample{PeakRSS: 1 << 30, OriginFetches: 5000}, "pass"},
		{"origin not counted: no verdict on it", Sample{OriginRPS: 500, OriginCapRPS: 10}, "pass"},
		{"no cap: no verdict on origin", Sample{OriginCounted: true, OriginRPS: 500}, "pass"},
		{"within the burst", Sample{OriginCounted: true, OriginFetches: 549, OriginRPS: 54.9, OriginCapRPS: 50, OriginCapBurst: 50}, "pass"},
		{"past the burst", Sample{OriginCounted: true, OriginFetches: 551, OriginRPS: 55.1, OriginCapRPS: 50, OriginCapBurst: 50}, "FAIL: origin 55/s > 50/s"},
		{"at the limits", Sample{BudgetBytes: 100, RSSRatio: 1.25, LegitRequests: 10, LegitP99Ms: 50, OriginCounted: true, OriginRPS: 10, OriginCapRPS: 10}, "pass"},
	} {
		if got := tg.Verdict(tc.s); got != tc.want {
			t.Errorf("%s: Verdict = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestWriteAttackMarkdown(t *testing.T) {
	var b bytes.Buffer
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	m := Machine{CPUs: 2, CPUModel: "AMD EPYC", Kernel: "6.18", OS: "Debian 12"}
	if err := WriteAttackMarkdown(&b, attackSamples(), DefaultAttackTargets(), m, []string{"meridian abc123", "edge: max_bytes 64 MiB"}, now); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"# Meridian under attack",
		"Run of 2026-12-05 10:00 UTC on 2 × AMD EPYC, Linux 6.18, Debian 12.",
		"| attack | rate × duration | sent | skipped | what the server did | peak RSS / budget | origin requests (per s) | legit hit p50 / p99 / max ms | legit errors | CPU % server / tool | verdict |",
		"| h2-reset (meridian) | 1,000/s × 10 s | 9,990 | 10 | 9,990 reset by client, 3 reconnects, 3 GOAWAY | 150 MiB / 144 MiB = 1.04× | 412 (41.2/s; cap 100/s) | 0.4 / 2.5 / 9.1 | 0 of 1,000 | 61 / 12 | pass |",
		"| unique-keys (meridian) | 100/s × 10 s | 1,000 | 0 | 1,000 answered (200 429/503), 2 errors | 600 MiB / 144 MiB = 4.17× | 1,000 (100.0/s; cap 50/s) | 1.2 / 230.0 / 1,900.0 | 3 of 900 (120 not hits) | – / – | FAIL: RSS 4.17× budget > 1.25×; origin 100/s > 50/s; legit p99 230.0 ms > 50 ms; 3 legit errors |",
		"## Notes\n\n- meridian abc123\n- edge: max_bytes 64 MiB\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "hit-1k") {
		t.Errorf("markdown has a row for a sample that is not an attack:\n%s", md)
	}
	if rows := strings.Count(md, "\n| "); rows != 3 { // the header and two attacks
		t.Errorf("%d table rows, want 3:\n%s", rows, md)
	}
}

func TestAttackSampleRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "samples.jsonl")
	in := attackSamples()[:2]
	for _, s := range in {
		if err := AppendSample(path, s); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out, err := ReadSamples(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 {
		t.Fatalf("read %d samples", len(out))
	}
	for i := range in {
		if out[i] != in[i] {
			t.Errorf("sample %d:\n got %+v\nwant %+v", i, out[i], in[i])
		}
	}
}
