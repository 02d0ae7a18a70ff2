package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Scenario describes one kind of measurement of a run.
type Scenario struct {
	// Name is the Sample.Scenario, e.g. "hit-1k".
	Name string
	// Label is how the table shows it, e.g. "hit, 1 KiB".
	Label string
}

// Scenarios lists the scenarios that run.sh measures, in the report's order.
func Scenarios() []Scenario {
	return []Scenario{
		{"hit-1k", "hit, 1 KiB"},
		{"hit-64k", "hit, 64 KiB"},
		{"hit-1m", "hit, 1 MiB"},
		{"disk-64k", "disk hit, 64 KiB"},
		{"disk-1m", "disk hit, 1 MiB"},
		{"miss-1k", "all-miss, 1 KiB"},
		{"h2-1k", "HTTP/2 hit, 1 KiB"},
		{"h2-64k", "HTTP/2 hit, 64 KiB"},
		{"h2-1m", "HTTP/2 hit, 1 MiB"},
		{"h2-1k-m10", "HTTP/2 hit, 1 KiB, 10 streams per connection"},
		{"gen-h1", "HTTP/1.1"},
		{"gen-h2", "HTTP/2 (TLS)"},
		{"gen-h3", "HTTP/3 (QUIC)"},
		{"coalesce", "coalescing"},
		{"mem-1k", "1 KiB objects"},
		{"mem-64k", "64 KiB objects"},
	}
}

// serverOrder lists the servers compared, in the report's order.
func serverOrder() []string {
	return []string{"meridian", "nginx", "nginx-sendfile", "varnish", "go-floor"}
}

// Baseline is the server that ratios compare with.
const Baseline = "nginx"

// AltBaseline is nginx with sendfile on, measured in the hit scenarios
// beside Baseline (sendfile off): the better of the two at each size is
// nginx tuned for it, so the hit rows compare with both.
const AltBaseline = "nginx-sendfile"

// Summary is the median of one server's samples in one scenario.
type Summary struct {
	Scenario string `json:"scenario"`
	Server   string `json:"server"`
	// Reps is how many samples the medians are taken over.
	Reps int `json:"reps"`
	// Median holds the median of each numeric field over the samples
	// (Rep is 0).
	Median Sample `json:"median"`
	// TotalErrors adds up the samples' errors, so that one bad sample
	// shows.
	TotalErrors int64 `json:"total_errors"`
	// RPSRatio and CPURatio compare the rate and CPU per request with the
	// Baseline server's in the same scenario (for the gen-* scenarios: with
	// gen-h1 of the same server); 0 when there is none. They are the median
	// of the ratios within each repetition, where the two ran minutes apart
	// on the same machine, not the ratio of two medians that may come from
	// different repetitions: the machine's load drifts between them.
	RPSRatio float64 `json:"rps_ratio,omitempty"`
	CPURatio float64 `json:"cpu_ratio,omitempty"`
	// AltRPSRatio and AltCPURatio are the same paired ratios against
	// AltBaseline in the same scenario; 0 when it was not measured there.
	AltRPSRatio float64 `json:"alt_rps_ratio,omitempty"`
	AltCPURatio float64 `json:"alt_cpu_ratio,omitempty"`
}

// Summarize groups samples by scenario and server and takes medians and
// ratios, in the order of Scenarios and servers (unknown ones last, by
// name).
func Summarize(samples []Sample) []Summary {
	type key struct{ scenario, server string }
	groups := map[key][]Sample{}
	var keys []key
	for _, s := range samples {
		k := key{s.Scenario, s.Server}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], s)
	}
	order := map[string]int{}
	for i, sc := range Scenarios() {
		order[sc.Name] = i
	}
	rank := func(m map[string]int, s string) int {
		if i, ok := m[s]; ok {
			return i
		}
		return len(m)
	}
	srvOrder := map[string]int{}
	for i, s := range serverOrder() {
		srvOrder[s] = i
	}
	slices.SortFunc(keys, func(a, b key) int {
		if c := rank(order, a.scenario) - rank(order, b.scenario); c != 0 {
			return c
		}
		if c := strings.Compare(a.scenario, b.scenario); c != 0 {
			return c
		}
		if c := rank(srvOrder, a.server) - rank(srvOrder, b.server); c != 0 {
			return c
		}
		return strings.Compare(a.server, b.server)
	})
	out := make([]Summary, 0, len(keys))
	idx := map[key]int{}
	for _, k := range keys {
		g := groups[k]
		sum := Summary{Scenario: k.scenario, Server: k.server, Reps: len(g), Median: medianSample(g)}
		for _, s := range g {
			sum.TotalErrors += s.Errors
		}
		idx[k] = len(out)
		out = append(out, sum)
	}
	for i := range out {
		s := &out[i]
		base := key{s.Scenario, Baseline}
		if strings.HasPrefix(s.Scenario, "gen-") {
			base = key{"gen-h1", s.Server}
		}
		j, ok := idx[base]
		if !ok {
			continue
		}
		s.RPSRatio = pairedRatio(groups[key{s.Scenario, s.Server}], groups[base], s.Median.RPS, out[j].Median.RPS,
			func(x Sample) float64 { return x.RPS })
		s.CPURatio = pairedRatio(groups[key{s.Scenario, s.Server}], groups[base], s.Median.CPUPerReqUs, out[j].Median.CPUPerReqUs,
			func(x Sample) float64 { return x.CPUPerReqUs })
	}
	for i := range out {
		s := &out[i]
		alt := key{s.Scenario, AltBaseline}
		j, ok := idx[alt]
		if !ok || strings.HasPrefix(s.Scenario, "gen-") {
			continue
		}
		s.AltRPSRatio = pairedRatio(groups[key{s.Scenario, s.Server}], groups[alt], s.Median.RPS, out[j].Median.RPS,
			func(x Sample) float64 { return x.RPS })
		s.AltCPURatio = pairedRatio(groups[key{s.Scenario, s.Server}], groups[alt], s.Median.CPUPerReqUs, out[j].Median.CPUPerReqUs,
			func(x Sample) float64 { return x.CPUPerReqUs })
	}
	return out
}

// pairedRatio is the median over repetitions of f(a's sample) / f(b's
// sample of the same repetition); the ratio of the medians ma/mb when no
// repetition has both.
func pairedRatio(a, b []Sample, ma, mb float64, f func(Sample) float64) float64 {
	byRep := map[int]Sample{}
	for _, x := range b {
		byRep[x.Rep] = x
	}
	var rs []float64
	for _, x := range a {
		if y, ok := byRep[x.Rep]; ok {
			if r := Ratio(f(x), f(y)); !math.IsNaN(r) && !math.IsInf(r, 0) {
				rs = append(rs, r)
			}
		}
	}
	if len(rs) == 0 {
		return finite(Ratio(ma, mb))
	}
	return finite(Median(rs))
}

// finite maps NaN and infinities to 0, which JSON can hold.
func finite(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return x
}

// medianSample takes the median of each numeric field of g.
func medianSample(g []Sample) Sample {
	med := func(f func(Sample) float64) float64 {
		xs := make([]float64, len(g))
		for i, s := range g {
			xs[i] = f(s)
		}
		return finite(Median(xs))
	}
	medInt := func(f func(Sample) int64) int64 {
		return int64(math.Round(med(func(s Sample) float64 { return float64(f(s)) })))
	}
	m := Sample{Scenario: g[0].Scenario, Server: g[0].Server, Tool: g[0].Tool}
	m.Requests = medInt(func(s Sample) int64 { return s.Requests })
	m.Errors = medInt(func(s Sample) int64 { return s.Errors })
	m.Seconds = med(func(s Sample) float64 { return s.Seconds })
	m.RPS = med(func(s Sample) float64 { return s.RPS })
	m.P50Ms = med(func(s Sample) float64 { return s.P50Ms })
	m.P99Ms = med(func(s Sample) float64 { return s.P99Ms })
	m.CPUTicks = medInt(func(s Sample) int64 { return s.CPUTicks })
	m.CPUPerReqUs = med(func(s Sample) float64 { return s.CPUPerReqUs })
	m.LoadCPUPct = med(func(s Sample) float64 { return s.LoadCPUPct })
	m.WaitersDoneAfterLeaderMs = med(func(s Sample) float64 { return s.WaitersDoneAfterLeaderMs })
	m.Clients = int(medInt(func(s Sample) int64 { return int64(s.Clients) }))
	m.OriginFetches = medInt(func(s Sample) int64 { return s.OriginFetches })
	m.LeaderMs = med(func(s Sample) float64 { return s.LeaderMs })
	m.WaiterP50Ms = med(func(s Sample) float64 { return s.WaiterP50Ms })
	m.WaiterP99Ms = med(func(s Sample) float64 { return s.WaiterP99Ms })
	m.Objects = int(medInt(func(s Sample) int64 { return int64(s.Objects) }))
	m.BodyBytes = medInt(func(s Sample) int64 { return s.BodyBytes })
	m.PSSDelta = medInt(func(s Sample) int64 { return s.PSSDelta })
	m.FilesDelta = medInt(func(s Sample) int64 { return s.FilesDelta })
	m.HeapDelta = medInt(func(s Sample) int64 { return s.HeapDelta })
	m.BytesPerObject = med(func(s Sample) float64 { return s.BytesPerObject })
	m.HeapBytesPerObject = med(func(s Sample) float64 { return s.HeapBytesPerObject })
	return m
}

// Machine describes the computer a run was on.
type Machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	Kernel   string `json:"kernel"`
	OS       string `json:"os"`
}

// String is a one-line description.
func (m Machine) String() string {
	return fmt.Sprintf("%d × %s, Linux %s, %s", m.CPUs, m.CPUModel, m.Kernel, m.OS)
}

// ReadMachine describes this machine from p's cpuinfo and kernel release
// and /etc/os-release; what it cannot read stays empty.
func ReadMachine(p Proc) Machine {
	m := Machine{CPUs: runtime.NumCPU()}
	if b, err := os.ReadFile(filepath.Join(p.dir(), "cpuinfo")); err == nil {
		m.CPUModel = cpuModel(b)
	}
	if b, err := os.ReadFile(filepath.Join(p.dir(), "sys/kernel/osrelease")); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	return m
}

// cpuModel returns the first "model name" of a /proc/cpuinfo.
func cpuModel(cpuinfo []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Report is a whole run: where and when, what the run said about itself,
// the medians and the raw samples.
type Report struct {
	Generated time.Time `json:"generated"`
	Machine   Machine   `json:"machine"`
	// Notes are lines about the run (versions, settings), shown under the
	// tables.
	Notes     []string  `json:"notes"`
	Summaries []Summary `json:"summaries"`
	Samples   []Sample  `json:"samples"`
}

// NewReport summarizes samples into a Report.
func NewReport(samples []Sample, m Machine, notes []string, now time.Time) Report {
	return Report{Generated: now.UTC(), Machine: m, Notes: notes, Summaries: Summarize(samples), Samples: samples}
}

// WriteJSON writes r as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("report json: %w", err)
	}
	return nil
}

// WriteMarkdown writes r's tables as Markdown.
func (r Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	reps := 0
	for _, s := range r.Summaries {
		reps = max(reps, s.Reps)
	}
	fmt.Fprintf(&b, "# Meridian, nginx and Varnish side by side\n\n")
	fmt.Fprintf(&b, "Run of %s on %s. Every number is the median of %d repetitions; "+
		"the servers were measured interleaved (meridian, nginx, varnish, meridian, …), "+
		"each server pinned to core 0 and the load generator to core 1 (`taskset`). "+
		"\"× nginx\" is the median over the repetitions of the ratio to nginx in the same repetition "+
		"(paired, since the machine's load drifts between repetitions): above 1 is more requests per second, "+
		"or more CPU per request.\n\n", r.Generated.Format("2006-01-02 15:04 MST"), r.Machine, reps)

	labels := map[string]string{}
	for _, sc := range Scenarios() {
		labels[sc.Name] = sc.Label
	}
	label := func(name string) string {
		if l, ok := labels[name]; ok {
			return l
		}
		return name
	}
	pick := func(prefixes ...string) []Summary {
		var out []Summary
		for _, s := range r.Summaries {
			for _, p := range prefixes {
				if s.Scenario == p || strings.HasPrefix(s.Scenario, p+"-") {
					out = append(out, s)
					break
				}
			}
		}
		return out
	}

	if rows := pick("hit", "miss"); len(rows) > 0 {
		b.WriteString("## HTTP/1.1 keep-alive, 64 connections (wrk)\n\n")
		throughputTable(&b, rows, label, "scenario", "× nginx")
		b.WriteString("\nall-miss: every request is a new key (a counter in the path), so each one is a fill from the demo origin. " +
			"go-floor is a calibration, not a cache: the least a Go server does for a miss (the request and answer relayed on kept-alive connections, the body copied into a map; `meridian bench floor`), on the same core, measured after the three servers in each repetition: what of a miss's CPU any Go server pays here, and what is Meridian's own work. " +
			"nginx-sendfile is the same nginx with `sendfile on` (nginx: off), measured for hits only: off is nginx's cheapest for small bodies, on for large ones. " +
			loadCoreNote + "\n\n")
	}
	if rows := pick("disk"); len(rows) > 0 {
		b.WriteString("## Disk-tier hits, HTTP/1.1 keep-alive, 64 connections (wrk, `disk.sh`)\n\n")
		throughputTable(&b, rows, label, "scenario", "× nginx")
		b.WriteString("\nMeridian serves these from its disk tier (a memory tier too small for them), nginx from its proxy_cache files, both on ext4 with the page cache warm; nginx-sendfile is the same nginx with `sendfile on`. " +
			loadCoreNote + "\n\n")
	}
	if rows := pick("h2"); len(rows) > 0 {
		b.WriteString("## HTTP/2 over TLS, 64 connections (h2load)\n\n")
		throughputTable(&b, rows, label, "scenario", "× nginx")
		b.WriteString("\nOne stream at a time per connection (h2load -m1) unless the row says 10 (-m10: a browser loading a page's assets). Varnish has no TLS listener (it needs a TLS terminator such as hitch in front), so it is not in this table.\n\n")
	}
	if rows := pick("gen"); len(rows) > 0 {
		b.WriteString("## Meridian by protocol, 1 KiB hits, 64 connections (`meridian bench load`)\n\n")
		b.WriteString("The same Go load generator for the three protocols (wrk and h2load have no HTTP/3), so the rows compare with each other, not with the tables above; \"× HTTP/1.1\" is the ratio to Meridian's own HTTP/1.1 row. The Go client costs more CPU per request than wrk, so the generator's core, not the server, may be the limit here: CPU µs per request is the fairer column.\n\n")
		throughputTable(&b, rows, label, "protocol", "× HTTP/1.1")
		b.WriteString("\n")
	}
	if rows := pick("coalesce"); len(rows) > 0 {
		b.WriteString("## Coalescing: 200 concurrent requests for one cold key, origin answers in 50 ms\n\n")
		b.WriteString("| server | clients | origin fetches | leader ms | waiters p50 ms | waiters p99 ms | waiters p50 done after leader ms | errors |\n")
		b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, s := range rows {
			m := s.Median
			fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s | %s | %d |\n", s.Server, m.Clients, m.OriginFetches,
				num(m.LeaderMs, 1), num(m.WaiterP50Ms, 1), num(m.WaiterP99Ms, 1), num(m.WaitersDoneAfterLeaderMs, 1), s.TotalErrors)
		}
		b.WriteString("\nThe leader is the request whose response came from the origin (Cache-Status without `collapsed`, nginx's `$upstream_cache_status` MISS, Varnish's `obj.hits == 0`); the waiters are the other 199. nginx's `proxy_cache_lock` waiters poll the lock every 500 ms. Latencies count from each request's own start, and one load generator core sends the 200 requests one after another, the leader's first: \"done after leader\" compares when the responses were complete instead (negative: before the leader's).\n\n")
	}
	if rows := pick("mem"); len(rows) > 0 {
		b.WriteString("## Memory per cached object beyond its body\n\n")
		b.WriteString("| objects | server | count | PSS growth MiB | cache files MiB | bytes/object beyond body | Go heap bytes/object beyond body |\n")
		b.WriteString("|---|---|--:|--:|--:|--:|--:|\n")
		for _, s := range rows {
			m := s.Median
			heap := "–"
			if m.HeapDelta != 0 {
				heap = num(m.HeapBytesPerObject, 0)
			}
			files := "–"
			if m.FilesDelta != 0 {
				files = num(float64(m.FilesDelta)/(1<<20), 1)
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s |\n", label(s.Scenario), s.Server, m.Objects,
				num(float64(m.PSSDelta)/(1<<20), 1), files, num(m.BytesPerObject, 0), heap)
		}
		b.WriteString("\nPSS is the resident memory of the server's processes, pages shared between them counted once; nginx's bodies live in cache files on tmpfs, counted in the files column (tmpfs charges whole 4 KiB pages). The Go heap column is Meridian's live heap after a forced GC, read from `meridian bench edge --debug-listen`, which also returns free pages to the OS before each reading, so that its PSS holds no garbage.\n\n")
	}
	if len(r.Notes) > 0 {
		b.WriteString("## Notes\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("report markdown: %w", err)
	}
	return nil
}

// loadCoreNote explains the load core column.
const loadCoreNote = "load core %: how busy the load generator was (its utime+stime over the run, in % of its one core); near 100 %, the client set the pace and req/s says little about the server: compare CPU µs/req."

// throughputTable writes the rows of throughput scenarios.
func throughputTable(b *strings.Builder, rows []Summary, label func(string) string, first, vs string) {
	alt := false // some row was compared with nginx-sendfile too
	for _, s := range rows {
		alt = alt || s.AltRPSRatio != 0 || s.AltCPURatio != 0
	}
	if !alt {
		fmt.Fprintf(b, "| %s | server | req/s | %s | p50 ms | p99 ms | CPU µs/req | CPU %s | load core %% | errors |\n", first, vs, vs)
		b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	} else {
		fmt.Fprintf(b, "| %s | server | req/s | %s | × %s | p50 ms | p99 ms | CPU µs/req | CPU %s | CPU × %s | load core %% | errors |\n",
			first, vs, AltBaseline, vs, AltBaseline)
		b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	}
	for _, s := range rows {
		m := s.Median
		if !alt {
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", label(s.Scenario), s.Server,
				num(m.RPS, 0), ratio(s.RPSRatio), num(m.P50Ms, 2), num(m.P99Ms, 2), num(m.CPUPerReqUs, 1),
				ratio(s.CPURatio), num(m.LoadCPUPct, 0), s.TotalErrors)
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", label(s.Scenario), s.Server,
			num(m.RPS, 0), ratio(s.RPSRatio), ratio(s.AltRPSRatio), num(m.P50Ms, 2), num(m.P99Ms, 2), num(m.CPUPerReqUs, 1),
			ratio(s.CPURatio), ratio(s.AltCPURatio), num(m.LoadCPUPct, 0), s.TotalErrors)
	}
}

// num formats x with digits decimals and thousands separators; "–" for 0.
func num(x float64, digits int) string {
	if x == 0 || math.IsNaN(x) {
		return "–"
	}
	s := fmt.Sprintf("%.*f", digits, x)
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var g strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			g.WriteByte(',')
		}
		g.WriteRune(c)
	}
	out := g.String()
	if neg {
		out = "-" + out
	}
	if frac != "" {
		out += "." + frac
	}
	return out
}

func ratio(x float64) string {
	if x == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", x)
}
