package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runSamples is a small run: three repetitions of a hit scenario for
// three servers, Meridian's protocols, coalescing and memory.
func runSamples() []Sample {
	var ss []Sample
	for rep, x := range []float64{1, 1.2, 0.8} {
		ss = append(ss,
			Sample{Rep: rep + 1, Scenario: "hit-1k", Server: "varnish", RPS: 5000 * x, CPUPerReqUs: 60, P50Ms: 2},
			Sample{Rep: rep + 1, Scenario: "hit-1k", Server: "nginx", RPS: 10000 * x, CPUPerReqUs: 30 * x, P50Ms: 1},
			Sample{Rep: rep + 1, Scenario: "hit-1k", Server: "meridian", RPS: 12000 * x, CPUPerReqUs: 45, P50Ms: 1, Errors: int64(rep), LoadCPUPct: 90 + 10*x},
			Sample{Rep: rep + 1, Scenario: "gen-h1", Server: "meridian", RPS: 8000, CPUPerReqUs: 50},
			Sample{Rep: rep + 1, Scenario: "gen-h3", Server: "meridian", RPS: 4000, CPUPerReqUs: 150},
			Sample{Rep: rep + 1, Scenario: "coalesce", Server: "nginx", Clients: 200, OriginFetches: 1, LeaderMs: 55, WaiterP50Ms: 510 + x, WaiterP99Ms: 520, WaitersDoneAfterLeaderMs: 450 * x},
			Sample{Rep: rep + 1, Scenario: "mem-1k", Server: "meridian", Objects: 10000, PSSDelta: 15 << 20, BytesPerObject: 500 * x, HeapDelta: 12 << 20, HeapBytesPerObject: 230},
			Sample{Rep: rep + 1, Scenario: "zzz-custom", Server: "other", RPS: 1},
		)
	}
	return ss
}

func TestSummarize(t *testing.T) {
	sum := Summarize(runSamples())
	var order []string
	byKey := map[string]Summary{}
	for _, s := range sum {
		order = append(order, s.Scenario+"/"+s.Server)
		byKey[s.Scenario+"/"+s.Server] = s
	}
	want := []string{"hit-1k/meridian", "hit-1k/nginx", "hit-1k/varnish", "gen-h1/meridian", "gen-h3/meridian",
		"coalesce/nginx", "mem-1k/meridian", "zzz-custom/other"}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Errorf("order = %v\nwant    %v", order, want)
	}

	m := byKey["hit-1k/meridian"]
	if m.Reps != 3 || m.Median.RPS != 12000 || m.TotalErrors != 3 || m.Median.Errors != 1 {
		t.Errorf("meridian hit-1k: reps %d, rps %v, total errors %d, median errors %d", m.Reps, m.Median.RPS, m.TotalErrors, m.Median.Errors)
	}
	if m.RPSRatio != 1.2 || m.CPURatio != 1.5 {
		t.Errorf("meridian vs nginx: rps %v×, cpu %v×; want 1.2×, 1.5×", m.RPSRatio, m.CPURatio)
	}
	if n := byKey["hit-1k/nginx"]; n.RPSRatio != 1 || n.CPURatio != 1 {
		t.Errorf("nginx vs itself: %v×, %v×", n.RPSRatio, n.CPURatio)
	}
	if v := byKey["hit-1k/varnish"]; v.RPSRatio != 0.5 || v.CPURatio != 2 {
		t.Errorf("varnish vs nginx: %v×, %v×; want 0.5×, 2×", v.RPSRatio, v.CPURatio)
	}
	if h3 := byKey["gen-h3/meridian"]; h3.RPSRatio != 0.5 || h3.CPURatio != 3 {
		t.Errorf("h3 vs Meridian's h1: %v×, %v×; want 0.5×, 3×", h3.RPSRatio, h3.CPURatio)
	}
	if c := byKey["coalesce/nginx"].Median; c.WaiterP50Ms != 511 || c.OriginFetches != 1 || c.Clients != 200 {
		t.Errorf("coalesce medians = %+v", c)
	}
	if mem := byKey["mem-1k/meridian"].Median; mem.BytesPerObject != 500 || mem.PSSDelta != 15<<20 {
		t.Errorf("memory medians = %+v", mem)
	}
	if o := byKey["zzz-custom/other"]; o.RPSRatio != 0 {
		t.Errorf("no nginx to compare with: ratio %v, want 0", o.RPSRatio)
	}
	if got := Summarize(nil); len(got) != 0 {
		t.Errorf("Summarize(nil) = %v", got)
	}
}

// Ratios pair each repetition with the baseline's of the same repetition:
// these are a real run's 64 KiB hits, where the second repetition was slow
// for every server and the third fast for nginx. The ratio of the
// medians (17,896 / 21,380 = 0.84) would mix repetitions.
func TestSummarizePairsRepetitions(t *testing.T) {
	var ss []Sample
	for i, rps := range [][2]float64{{22611, 21659}, {14030, 13244}, {17896, 21380}} {
		ss = append(ss, Sample{Rep: i + 1, Scenario: "hit-64k", Server: "meridian", RPS: rps[0], CPUPerReqUs: 30},
			Sample{Rep: i + 1, Scenario: "hit-64k", Server: "nginx", RPS: rps[1], CPUPerReqUs: 40})
	}
	sum := Summarize(ss)
	if got, want := sum[0].RPSRatio, 22611.0/21659; sum[0].Server != "meridian" || got != want {
		t.Errorf("paired ratio %v, want %v (repetition 1's)", got, want)
	}
	if sum[0].CPURatio != 0.75 {
		t.Errorf("cpu ratio %v, want 0.75", sum[0].CPURatio)
	}
	// Without matching repetitions, the medians are compared.
	ss[1].Rep, ss[3].Rep, ss[5].Rep = 7, 8, 9
	if got := Summarize(ss)[0].RPSRatio; got != 17896.0/21380 {
		t.Errorf("unpaired ratio %v, want the medians' %v", got, 17896.0/21380)
	}
}

// The hit rows compare with nginx-sendfile too, paired per repetition,
// and the HTTP/1.1 table shows both ratios; rows without nginx-sendfile
// (all-miss) show none against it, and the other tables keep their columns.
func TestSummarizeAltBaseline(t *testing.T) {
	var ss []Sample
	for i, x := range []float64{1, 2, 0.5} {
		ss = append(ss,
			Sample{Rep: i + 1, Scenario: "hit-1m", Server: "meridian", RPS: 300 * x, CPUPerReqUs: 150},
			Sample{Rep: i + 1, Scenario: "hit-1m", Server: "nginx", RPS: 200 * x, CPUPerReqUs: 500},
			Sample{Rep: i + 1, Scenario: "hit-1m", Server: "nginx-sendfile", RPS: 400 * x, CPUPerReqUs: 200 * x},
			Sample{Rep: i + 1, Scenario: "miss-1k", Server: "meridian", RPS: 100, CPUPerReqUs: 90},
			Sample{Rep: i + 1, Scenario: "miss-1k", Server: "nginx", RPS: 100, CPUPerReqUs: 100},
			Sample{Rep: i + 1, Scenario: "h2-1k", Server: "meridian", RPS: 100, CPUPerReqUs: 40},
			Sample{Rep: i + 1, Scenario: "h2-1k", Server: "nginx", RPS: 100, CPUPerReqUs: 40},
		)
	}
	byKey := map[string]Summary{}
	var order []string
	for _, s := range Summarize(ss) {
		byKey[s.Scenario+"/"+s.Server] = s
		order = append(order, s.Scenario+"/"+s.Server)
	}
	if got, want := strings.Join(order, " "), "hit-1m/meridian hit-1m/nginx hit-1m/nginx-sendfile miss-1k/meridian miss-1k/nginx h2-1k/meridian h2-1k/nginx"; got != want {
		t.Errorf("order = %s\nwant    %s", got, want)
	}
	m := byKey["hit-1m/meridian"]
	// CPU: 150/200, 150/400, 150/100 per repetition: median 0.75.
	if m.AltRPSRatio != 0.75 || m.AltCPURatio != 0.75 || m.RPSRatio != 1.5 || m.CPURatio != 0.3 {
		t.Errorf("meridian hit-1m: %v× %v× vs nginx-sendfile, %v× %v× vs nginx; want 0.75× 0.75×, 1.5× 0.3×",
			m.AltRPSRatio, m.AltCPURatio, m.RPSRatio, m.CPURatio)
	}
	if n := byKey["hit-1m/nginx"]; n.AltRPSRatio != 0.5 || n.AltCPURatio != 2.5 {
		t.Errorf("nginx vs nginx-sendfile: %v×, %v×; want 0.5×, 2.5×", n.AltRPSRatio, n.AltCPURatio)
	}
	if x := byKey["miss-1k/meridian"]; x.AltRPSRatio != 0 || x.AltCPURatio != 0 || x.CPURatio != 0.9 {
		t.Errorf("miss-1k: %v× %v× vs nginx-sendfile (want none), cpu %v× vs nginx", x.AltRPSRatio, x.AltCPURatio, x.CPURatio)
	}
	var md bytes.Buffer
	if err := NewReport(ss, Machine{}, nil, time.Unix(0, 0)).WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| scenario | server | req/s | × nginx | × nginx-sendfile | p50 ms | p99 ms | CPU µs/req | CPU × nginx | CPU × nginx-sendfile | load core % | errors |",
		"| hit, 1 MiB | meridian | 300 | 1.50× | 0.75× | – | – | 150.0 | 0.30× | 0.75× | – | 0 |",
		"| all-miss, 1 KiB | meridian | 100 | 1.00× | – | – | – | 90.0 | 0.90× | – | – | 0 |",
		"| HTTP/2 hit, 1 KiB | meridian | 100 | 1.00× | – | – | 40.0 | 1.00× | – | 0 |",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md.String())
		}
	}
}

func TestReportOutputs(t *testing.T) {
	r := NewReport(runSamples(), Machine{CPUs: 2, CPUModel: "Test CPU", Kernel: "6.1", OS: "Debian"},
		[]string{"noisy machine"}, time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC))
	var md bytes.Buffer
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"2 × Test CPU, Linux 6.1, Debian",
		"median of 3 repetitions",
		"| hit, 1 KiB | meridian | 12,000 | 1.20× | 1.00 | – | 45.0 | 1.50× | 100 | 3 |",
		"| hit, 1 KiB | varnish | 5,000 | 0.50× |",
		"| HTTP/3 (QUIC) | meridian | 4,000 | 0.50× |",
		"| nginx | 200 | 1 | 55.0 | 511.0 | 520.0 | 450.0 | 0 |",
		"| 1 KiB objects | meridian | 10000 | 15.0 | – | 500 | 230 |",
		"- noisy machine",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md.String())
		}
	}
	if strings.Contains(md.String(), "NaN") {
		t.Errorf("Markdown shows NaN:\n%s", md.String())
	}

	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Samples) != len(r.Samples) || len(back.Summaries) != len(r.Summaries) || back.Machine != r.Machine {
		t.Errorf("JSON round trip lost data: %d samples, %d summaries", len(back.Samples), len(back.Summaries))
	}
}

func TestNum(t *testing.T) {
	for _, tc := range []struct {
		x    float64
		d    int
		want string
	}{{0, 1, "–"}, {12.345, 2, "12.35"}, {1234567.8, 0, "1,234,568"}, {-1790.4, 0, "-1,790"}, {999, 1, "999.0"}} {
		if got := num(tc.x, tc.d); got != tc.want {
			t.Errorf("num(%v, %d) = %q, want %q", tc.x, tc.d, got, tc.want)
		}
	}
}

func TestCPUModel(t *testing.T) {
	info := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
	if got := cpuModel([]byte(info)); got != "AMD EPYC 7B13" {
		t.Errorf("cpuModel = %q", got)
	}
	if m := ReadMachine(Proc{}); m.CPUs < 1 {
		t.Errorf("ReadMachine = %+v", m)
	}
}

func TestSamplesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "samples.jsonl")
	in := runSamples()[:3]
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
	if len(out) != len(in) {
		t.Fatalf("read %d samples, wrote %d", len(out), len(in))
	}
	for i := range in {
		if out[i] != in[i] {
			t.Errorf("sample %d: read %+v, wrote %+v", i, out[i], in[i])
		}
	}
	for _, bad := range []string{`{"scenario":"x"}`, "{", `{"scenario":"x","server":"y","rps":"fast"}`} {
		if _, err := ReadSamples(strings.NewReader("\n" + bad + "\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("ReadSamples(%q) = %v, want an error naming line 2", bad, err)
		}
	}
}

func FuzzReadSamples(f *testing.F) {
	f.Add([]byte(`{"rep":1,"scenario":"hit-1k","server":"nginx","rps":10000,"cpu_us_per_req":30}` + "\n\n"))
	f.Add([]byte(`{"scenario":"mem-1k","server":"meridian","objects":10,"bytes_per_object":-5}`))
	f.Add([]byte("{\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ss, err := ReadSamples(bytes.NewReader(b))
		if err != nil {
			return
		}
		// Whatever parses must summarize and render without NaN or error.
		r := NewReport(ss, Machine{}, nil, time.Time{})
		var md, js bytes.Buffer
		if err := r.WriteMarkdown(&md); err != nil {
			t.Fatal(err)
		}
		if err := r.WriteJSON(&js); err != nil {
			t.Fatalf("WriteJSON: %v", err)
		}
	})
}
