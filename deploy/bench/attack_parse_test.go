package bench

import (
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseAttackKind(t *testing.T) {
	for _, k := range AttackKinds() {
		got, err := ParseAttackKind(string(k))
		if err != nil || got != k {
			t.Errorf("ParseAttackKind(%q) = %q, %v", k, got, err)
		}
	}
	for _, bad := range []string{"", "h2", "H2-RESET", "h1-close ", "slow"} {
		if _, err := ParseAttackKind(bad); err == nil || !strings.Contains(err.Error(), "h1-close, h2-reset, h3-cancel, unique-keys, slow-misses") {
			t.Errorf("ParseAttackKind(%q) = %v, want an error listing the kinds", bad, err)
		}
	}
}

func TestAttackConfigValidate(t *testing.T) {
	ok := AttackConfig{Kind: AttackUniqueKeys, URL: "http://127.0.0.1:1/a"}
	for _, tc := range []struct {
		name string
		edit func(*AttackConfig)
		want string
	}{
		{"no kind", func(c *AttackConfig) { c.Kind = "" }, "kind: \"\""},
		{"no url", func(c *AttackConfig) { c.URL = "" }, "url: required"},
		{"no host", func(c *AttackConfig) { c.URL = "/a" }, "url: \"/a\" has no host"},
		{"bad url", func(c *AttackConfig) { c.URL = "http://[::1" }, "url: parse"},
		{"h2 over http", func(c *AttackConfig) { c.Kind, c.URL = AttackH2Reset, "http://127.0.0.1:1/" }, "url: h2-reset needs https"},
		{"h3 over http", func(c *AttackConfig) { c.Kind, c.URL = AttackH3Cancel, "http://127.0.0.1:1/" }, "url: h3-cancel needs https"},
		{"ftp", func(c *AttackConfig) { c.URL = "ftp://127.0.0.1:1/" }, "url: scheme \"ftp\""},
		{"bad hit url", func(c *AttackConfig) { c.HitURL = "127.0.0.1:1/x" }, "hit_url:"},
		{"negative rate", func(c *AttackConfig) { c.Rate = -1 }, "rate: -1"},
		{"NaN rate", func(c *AttackConfig) { c.Rate = math.NaN() }, "rate: NaN"},
		{"infinite rate", func(c *AttackConfig) { c.Rate = math.Inf(1) }, "rate: +Inf"},
		{"huge run", func(c *AttackConfig) { c.Rate, c.Duration = 1e6, time.Hour }, "rate × duration"},
		{"negative duration", func(c *AttackConfig) { c.Duration = -time.Second }, "duration: negative"},
		{"negative conns", func(c *AttackConfig) { c.Conns = -1 }, "conns: negative"},
		{"negative inflight", func(c *AttackConfig) { c.MaxInflight = -1 }, "max_inflight: negative"},
		{"negative client timeout", func(c *AttackConfig) { c.ClientTimeout = -1 }, "client_timeout: negative"},
		{"negative hit interval", func(c *AttackConfig) { c.HitInterval = -1 }, "hit_interval: negative"},
		{"negative hit conns", func(c *AttackConfig) { c.HitConns = -1 }, "hit_conns: negative"},
		{"negative hit timeout", func(c *AttackConfig) { c.HitTimeout = -1 }, "hit_timeout: negative"},
		{"negative sample interval", func(c *AttackConfig) { c.SampleInterval = -1 }, "sample_interval: negative"},
		{"negative kill", func(c *AttackConfig) { c.KillAboveBytes = -1 }, "kill_above_bytes: negative"},
		{"negative budget", func(c *AttackConfig) { c.BudgetBytes = -1 }, "budget_bytes: negative"},
		{"negative cap", func(c *AttackConfig) { c.OriginCapRPS = -1 }, "origin_cap_rps: negative"},
		{"negative tail", func(c *AttackConfig) { c.Tail = -1 }, "tail: negative"},
		{"run id with &", func(c *AttackConfig) { c.RunID = "a&b" }, "run_id:"},
		{"bad pid", func(c *AttackConfig) { c.PIDs = []int{1, 0} }, "pids[1]: 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			err := c.withDefaults().Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want %q…", err, tc.want)
			}
		})
	}
	if err := ok.withDefaults().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	d := AttackConfig{Kind: AttackH2Reset}.withDefaults()
	if d.Rate != 100 || d.Duration != 10*time.Second || d.Conns != 4 || d.MaxInflight != 1024 || d.ClientTimeout != 10*time.Second ||
		d.HitInterval != 10*time.Millisecond || d.HitConns != 1 || d.SampleInterval != 50*time.Millisecond || d.Tail != time.Second || d.RunID == "" {
		t.Errorf("defaults = %+v", d)
	}
	if d := (AttackConfig{Kind: AttackSlowMisses, Host: "h"}).withDefaults(); d.ClientTimeout != time.Second || d.Conns != 1 || d.HitHost != "h" {
		t.Errorf("slow-misses defaults: client timeout %v, conns %d, hit host %q; want 1s, 1, h", d.ClientTimeout, d.Conns, d.HitHost)
	}
}

func TestNewTarget(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  AttackConfig
		want target
	}{
		{"default query", AttackConfig{Kind: AttackUniqueKeys, URL: "http://127.0.0.1:8080/a/b", RunID: "r1"},
			target{url: "http://127.0.0.1:8080/a/b?" + DefaultAttackQuery + "&k=r1-", requestURI: "/a/b?" + DefaultAttackQuery + "&k=r1-",
				host: "127.0.0.1:8080", addr: "127.0.0.1:8080"}},
		{"slow misses add a delay", AttackConfig{Kind: AttackSlowMisses, URL: "http://127.0.0.1:8080/s", RunID: "r"},
			target{url: "http://127.0.0.1:8080/s?" + DefaultAttackQuery + "&delay=2s&k=r-", requestURI: "/s?" + DefaultAttackQuery + "&delay=2s&k=r-",
				host: "127.0.0.1:8080", addr: "127.0.0.1:8080"}},
		{"own query, Host, default port, no fragment", AttackConfig{Kind: AttackH2Reset, URL: "https://localhost/x?size=10#frag", Host: "bench.test", RunID: "r"},
			target{url: "https://localhost/x?size=10&k=r-", requestURI: "/x?size=10&k=r-", host: "bench.test", addr: "localhost:443", tls: true}},
		{"IPv6 without a port", AttackConfig{Kind: AttackH1Close, URL: "http://[::1]/x?a=1", RunID: "r"},
			target{url: "http://[::1]/x?a=1&k=r-", requestURI: "/x?a=1&k=r-", host: "[::1]", addr: "[::1]:80"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := newTarget(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("newTarget = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestPlannedRequests(t *testing.T) {
	for _, tc := range []struct {
		rate float64
		d    time.Duration
		want int64
	}{
		{50, 300 * time.Millisecond, 15}, // 50 × 0.3 is 15.000000000000002 in floats
		{33, 300 * time.Millisecond, 10}, // 9.9: events at 0, 1/33, … 9/33 s are all before 0.3 s
		{100, 10 * time.Second, 1000},
		{0.5, time.Second, 1},
		{100, 0, 0},
	} {
		if got := plannedRequests(tc.rate, tc.d); got != tc.want {
			t.Errorf("plannedRequests(%v, %v) = %d, want %d", tc.rate, tc.d, got, tc.want)
		}
	}
}

func TestPacer(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	p := &pacer{start: t0, rate: 10, total: 5} // due at 0, 100, 200, 300, 400 ms
	for i, step := range []struct {
		now  time.Duration
		n    int64
		wait time.Duration
		done bool
	}{
		{-time.Millisecond, 0, 1 * time.Millisecond, false}, // a clock read just before the start
		{0, 1, 100 * time.Millisecond, false},
		{50 * time.Millisecond, 0, 50 * time.Millisecond, false},
		{250 * time.Millisecond, 2, 50 * time.Millisecond, false}, // late: 100 and 200 ms at once
		{300 * time.Millisecond, 1, 100 * time.Millisecond, false},
		{time.Second, 1, 0, true}, // the last one, whenever it is taken
		{2 * time.Second, 0, 0, true},
	} {
		n, wait, done := p.take(at(step.now))
		if n != step.n || wait != step.wait || done != step.done {
			t.Errorf("step %d at %v: take = %d, %v, %v; want %d, %v, %v", i, step.now, n, wait, done, step.n, step.wait, step.done)
		}
	}
	if p.taken != 5 {
		t.Errorf("taken %d, want 5", p.taken)
	}
	// A high rate: every event due at once at the end, none twice.
	p = &pacer{start: t0, rate: 1e6, total: 1000}
	if n, _, done := p.take(at(time.Hour)); n != 1000 || !done {
		t.Errorf("high rate at the end: %d, %v; want 1000, done", n, done)
	}
	// Nothing to send: done at once.
	p = &pacer{start: t0, rate: 10, total: 0}
	if n, _, done := p.take(t0); n != 0 || !done {
		t.Errorf("empty: %d, %v", n, done)
	}
}

func TestNextTick(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	for _, tc := range []struct {
		prev, now, want time.Duration
	}{
		{0, 3 * ms, 10 * ms},  // on time: the next tick
		{0, 10 * ms, 10 * ms}, // exactly at it
		{0, 35 * ms, 40 * ms}, // took 35 ms: ticks 10, 20, 30 are missed
		{0, 40 * ms, 40 * ms}, // ends on a tick
		{20 * ms, 21 * ms, 30 * ms},
	} {
		if got := nextTick(t0.Add(tc.prev), t0.Add(tc.now), 10*ms); !got.Equal(t0.Add(tc.want)) {
			t.Errorf("nextTick(%v, %v) = %v, want %v", tc.prev, tc.now, got.Sub(t0), tc.want)
		}
	}
	if got := nextTick(t0, t0.Add(time.Second), 0); !got.Equal(t0) {
		t.Errorf("interval 0: %v", got.Sub(t0))
	}
}

func TestCorrectedLatencies(t *testing.T) {
	ms := time.Millisecond
	got := correctedLatencies([]time.Duration{2 * ms, 35 * ms, 1 * ms, 10 * ms}, 10*ms, 100)
	// 35 ms held the client back over three ticks: 25, 15 (and 5 is below one interval, not counted).
	want := []time.Duration{1 * ms, 2 * ms, 10 * ms, 15 * ms, 25 * ms, 35 * ms}
	if !slices.Equal(got, want) {
		t.Errorf("correctedLatencies = %v, want %v", got, want)
	}
	// A 2 s stall among 99 fast hits: the raw p99 misses it, the corrected one does not.
	lat := []time.Duration{2 * time.Second}
	for range 99 {
		lat = append(lat, ms)
	}
	raw := slices.Clone(lat)
	slices.Sort(raw)
	if p := Percentile(raw, 99); p != ms {
		t.Errorf("raw p99 = %v, want 1ms", p)
	}
	c := correctedLatencies(lat, 10*ms, 1<<20)
	if len(c) != 100+199 {
		t.Errorf("corrected: %d latencies, want 299", len(c))
	}
	if p := Percentile(c, 99); p < time.Second {
		t.Errorf("corrected p99 = %v, want the stall to show (> 1s)", p)
	}
	if got := correctedLatencies(lat, 10*ms, 50); len(got) != 50 {
		t.Errorf("limit 50: %d latencies", len(got))
	}
	if got := correctedLatencies(lat, 0, 1000); len(got) != 100 {
		t.Errorf("interval 0: %d latencies, want the raw 100", len(got))
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tmeridian\nState:\tS (sleeping)\nVmPeak:\t 2000000 kB\nVmRSS:\t  123456 kB\nRssAnon:\t 100000 kB\n"
	if kb, err := parseVmRSS([]byte(status)); err != nil || kb != 123456 {
		t.Errorf("parseVmRSS = %d, %v; want 123456", kb, err)
	}
	for _, bad := range []string{
		"", "Name:\tx\nState:\tZ (zombie)\n", "VmRSS:\t12 MB\n", "VmRSS:\tx kB\n", "VmRSS:\t-1 kB\n", "VmRSS:\n", "VmRSS:\t99999999999999 kB\n",
	} {
		if _, err := parseVmRSS([]byte(bad)); err == nil {
			t.Errorf("parseVmRSS(%q): no error", bad)
		}
	}
}

func FuzzParseVmRSS(f *testing.F) {
	f.Add([]byte("Name:\tx\nVmRSS:\t  123456 kB\n"))
	f.Add([]byte("VmRSS: 0 kB"))
	f.Add([]byte("State:\tZ (zombie)\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		kb, err := parseVmRSS(b)
		if err == nil && (kb < 0 || kb > 1<<42) {
			t.Errorf("parseVmRSS(%q) = %d", b, kb)
		}
	})
}

func TestProcVmRSS(t *testing.T) {
	dir := t.TempDir()
	for pid, status := range map[int]string{7: "VmRSS:\t 2048 kB\n", 8: "State:\tZ (zombie)\n"} {
		d := filepath.Join(dir, strconv.Itoa(pid))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "status"), []byte(status), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := Proc{Dir: dir}
	if b, err := p.VmRSS(7); err != nil || b != 2048<<10 {
		t.Errorf("VmRSS(7) = %d, %v; want 2 MiB", b, err)
	}
	if _, err := p.VmRSS(8); err == nil {
		t.Error("VmRSS of a zombie: no error")
	}
	if _, err := p.VmRSS(9); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("VmRSS of no process = %v, want not running", err)
	}
	// This process, for real.
	if b, err := (Proc{}).VmRSS(os.Getpid()); err != nil || b <= 0 {
		t.Errorf("VmRSS(self) = %d, %v", b, err)
	}
}

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"150994944", 150994944}, {"144MiB", 144 << 20}, {"2 GiB", 2 << 30}, {" 64KiB ", 64 << 10},
		{"1TiB", 1 << 40}, {"512B", 512}, {"9223372036854775807", math.MaxInt64},
	} {
		if got, err := ParseBytes(tc.in); err != nil || got != tc.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1", "1.5GiB", "12MB", "1e9", "0x10", "9223372036854775808", "8388608TiB", "+5", "1 2"} {
		if got, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) = %d, no error", bad, got)
		}
	}
}

func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"0", "150994944", "144MiB", "2 GiB", "1TiB", "-1", "1.5GiB", "8388608TiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseBytes(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseBytes(%q) = %d", s, n)
		}
		// Whatever it accepts, its plain form reads back the same.
		if m, err := ParseBytes(strconv.FormatInt(n, 10)); err != nil || m != n {
			t.Fatalf("ParseBytes(%q) = %d, but %d reads back as %d, %v", s, n, n, m, err)
		}
	})
}

func TestCacheHit(t *testing.T) {
	for _, tc := range []struct {
		header []string // name, value, name, value…
		want   Hit
	}{
		{nil, HitUnknown},
		{[]string{"Cache-Status", "meridian; hit; ttl=3599"}, HitYes},
		{[]string{"Cache-Status", "meridian; fwd=uri-miss; fwd-status=200; stored"}, HitNo},
		{[]string{"Cache-Status", "meridian; fwd=stale; hit-ish"}, HitNo},
		{[]string{"Cache-Status", "origin-cache; hit, meridian; fwd=uri-miss"}, HitNo}, // the last entry is the edge's
		{[]string{"Cache-Status", "shield; fwd=uri-miss", "Cache-Status", "meridian;hit"}, HitYes},
		{[]string{"Cache-Status", "hit"}, HitNo}, // a cache named "hit" says nothing
		{[]string{"X-Cache-Status", "HIT"}, HitYes},
		{[]string{"X-Cache-Status", "stale"}, HitYes},
		{[]string{"X-Cache-Status", "MISS"}, HitNo},
		{[]string{"X-Cache-Status", "EXPIRED"}, HitNo},
		{[]string{"X-Cache", "HIT"}, HitYes},
		{[]string{"X-Cache", "MISS"}, HitNo},
		{[]string{"Cache-Status", "meridian; hit", "X-Cache", "MISS"}, HitYes}, // Cache-Status first
	} {
		resp := &http.Response{Header: http.Header{}}
		for i := 0; i+1 < len(tc.header); i += 2 {
			resp.Header.Add(tc.header[i], tc.header[i+1])
		}
		if got := CacheHit(resp); got != tc.want {
			t.Errorf("CacheHit(%q) = %v, want %v", tc.header, got, tc.want)
		}
	}
}

func FuzzCacheHit(f *testing.F) {
	f.Add("meridian; hit; ttl=3599", "")
	f.Add("a, b; fwd=miss", "HIT")
	f.Add("", "MISS")
	f.Add(",;,;", "")
	f.Fuzz(func(t *testing.T, cs, xcs string) {
		resp := &http.Response{Header: http.Header{}}
		if cs != "" {
			resp.Header["Cache-Status"] = []string{cs}
		}
		if xcs != "" {
			resp.Header["X-Cache-Status"] = []string{xcs}
		}
		h := CacheHit(resp)
		if h != HitUnknown && h != HitYes && h != HitNo {
			t.Fatalf("CacheHit = %d", h)
		}
		if cs == "" && xcs == "" && h != HitUnknown {
			t.Fatalf("no headers: %v", h)
		}
	})
}
