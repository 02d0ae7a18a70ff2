package bench

import (
	"errors"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseWrk(t *testing.T) {
	s, err := ParseWrk(readTestdata(t, "wrk.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := Sample{Tool: "wrk", Requests: 7334, Seconds: 1.530733, P50Ms: 0.288, P99Ms: 478.906, RPS: s.RPS}
	if s != want || !near(s.RPS, 4791.17) {
		t.Errorf("ParseWrk = %+v\nwant %+v", s, want)
	}

	errs := `WRKJSON {"requests":100,"duration_us":2000000,"errors":{"connect":1,"read":2,"write":3,"status":4,"timeout":5},"latency_us":{"p50":1000,"p99":3000}}`
	s, err = ParseWrk([]byte("noise\n" + errs + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Errors != 15 || s.RPS != 50 || s.P50Ms != 1 || s.P99Ms != 3 {
		t.Errorf("errors, rate, latency = %d, %v, %v, %v; want 15, 50, 1, 3", s.Errors, s.RPS, s.P50Ms, s.P99Ms)
	}

	for _, tc := range []struct{ name, out string }{
		{"no summary", "Requests/sec: 100\n"},
		{"marker mid-line", "xWRKJSON {}\n"},
		{"bad json", "WRKJSON {\n"},
		{"zero duration", `WRKJSON {"requests":1,"duration_us":0}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseWrk([]byte(tc.out)); err == nil {
				t.Errorf("ParseWrk(%q): no error", tc.out)
			}
		})
	}
	if _, err := ParseWrk(nil); !errors.Is(err, ErrNoSummary) {
		t.Errorf("ParseWrk(nil) = %v, want ErrNoSummary", err)
	}
}

// near reports whether a and b agree to 0.01%.
func near(a, b float64) bool { return math.Abs(a-b) <= 1e-4*math.Abs(b) }

func TestParseH2load(t *testing.T) {
	s, err := ParseH2load(readTestdata(t, "h2load.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Tool != "h2load" || s.Requests != 22765 || s.Errors != 0 || s.RPS != 11382.50 {
		t.Errorf("ParseH2load = %+v", s)
	}
	if want := 22765 / 11382.50; s.Seconds != want {
		t.Errorf("Seconds = %v, want %v (the main duration, warm-up excluded)", s.Seconds, want)
	}

	const head = "finished in 2.00s, 100.00 req/s, 1MB/s\n"
	for _, tc := range []struct {
		name       string
		out        string
		errs, reqs int64
	}{
		{"failed", head + "requests: 200 total, 200 started, 200 done, 190 succeeded, 10 failed, 10 errored, 0 timeout\n", 10, 200},
		{"non-2xx", head + "requests: 200 total, 200 started, 200 done, 200 succeeded, 0 failed, 0 errored, 0 timeout\nstatus codes: 150 2xx, 0 3xx, 50 4xx, 0 5xx\n", 50, 200},
		// With --warm-up-time, h2load's status codes count a slightly
		// different set of requests than "done" (seen in a real run):
		// fewer 2xx than done is not an error when nothing failed.
		{"warm-up skew", head + "requests: 86431 total, 86431 started, 86431 done, 86431 succeeded, 0 failed, 0 errored, 0 timeout\nstatus codes: 86399 2xx, 0 3xx, 0 4xx, 0 5xx\n", 0, 86431},
		{"timeouts", head + "requests: 200 total, 200 started, 200 done, 197 succeeded, 3 failed, 0 errored, 3 timeout\nstatus codes: 197 2xx, 0 3xx, 0 4xx, 0 5xx\n", 3, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseH2load([]byte(tc.out))
			if err != nil {
				t.Fatal(err)
			}
			if s.Errors != tc.errs || s.Requests != tc.reqs {
				t.Errorf("errors %d of %d, want %d of %d", s.Errors, s.Requests, tc.errs, tc.reqs)
			}
		})
	}
	for _, tc := range []struct{ name, out string }{
		{"empty", ""},
		{"no counts", head},
		{"no rate", "requests: 1 total, 1 done\n"},
		{"bad rate", "finished in 2.00s, fast req/s\nrequests: 1 done\n"},
		{"bad count", head + "requests: many done\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseH2load([]byte(tc.out)); err == nil {
				t.Errorf("ParseH2load(%q): no error", tc.out)
			}
		})
	}
}

func TestParseH2loadLog(t *testing.T) {
	p50, p99, n, err := ParseH2loadLog(strings.NewReader(string(readTestdata(t, "h2load.log"))))
	if err != nil {
		t.Fatal(err)
	}
	if n != 5 || p50 != 2118*time.Microsecond || p99 != 2216*time.Microsecond {
		t.Errorf("ParseH2loadLog = %v, %v, %d; want 2.118ms, 2.216ms, 5", p50, p99, n)
	}
	// Non-2xx answers are left out of the percentiles.
	p50, _, n, err = ParseH2loadLog(strings.NewReader("1\t200\t10\n2\t503\t99999\n3\t200\t30\n\n4\t200\t20\n"))
	if err != nil || n != 4 || p50 != 20*time.Microsecond {
		t.Errorf("with a 503: p50 %v, n %d, err %v; want 20µs, 4, nil", p50, n, err)
	}
	for _, bad := range []string{"1 200\n", "1\tOK\t5\n", "1\t200\t-5\n", "1\t200\t5\t6\n"} {
		if _, _, _, err := ParseH2loadLog(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseH2loadLog(%q): no error", bad)
		}
	}
}

func TestParseTool(t *testing.T) {
	load := `BENCHJSON {"proto":"h3","conns":2,"requests":10,"errors":1,"seconds":2,"rps":5,"p50_ms":1.5,"p99_ms":9}`
	for _, tc := range []struct {
		name, out, tool string
		rps             float64
	}{
		{"wrk", string(readTestdata(t, "wrk.txt")), "wrk", 4791.17},
		{"h2load", string(readTestdata(t, "h2load.txt")), "h2load", 11382.5},
		{"load", "h3 2 conns: ...\n" + load + "\n", "load", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseTool([]byte(tc.out))
			if err != nil {
				t.Fatal(err)
			}
			if s.Tool != tc.tool || !near(s.RPS, tc.rps) {
				t.Errorf("ParseTool = tool %q rps %v, want %q %v", s.Tool, s.RPS, tc.tool, tc.rps)
			}
		})
	}
	if _, err := ParseTool([]byte("Segmentation fault\n")); !errors.Is(err, ErrNoSummary) {
		t.Errorf("ParseTool(garbage) = %v, want ErrNoSummary", err)
	}
	if _, err := ParseLoad([]byte("BENCHJSON {")); err == nil {
		t.Error("ParseLoad(bad json): no error")
	}
}

func FuzzParseWrk(f *testing.F) {
	f.Add(readTestdata(f, "wrk.txt"))
	f.Add([]byte(`WRKJSON {"requests":1,"duration_us":1,"errors":{},"latency_us":{}}`))
	f.Add([]byte("WRKJSON {\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		s, err := ParseWrk(out)
		if err != nil {
			return
		}
		if s.Seconds <= 0 || s.Requests < 0 || s.Tool != "wrk" {
			t.Errorf("ParseWrk(%q) = %+v: accepted an impossible summary", out, s)
		}
	})
}

func FuzzParseH2load(f *testing.F) {
	f.Add(readTestdata(f, "h2load.txt"))
	f.Add([]byte("finished in 2.00s, 100.00 req/s, 1MB/s\nrequests: 200 total, 200 done, 10 failed\nstatus codes: 150 2xx\n"))
	f.Add([]byte("finished in , req/s\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		s, err := ParseH2load(out)
		if err != nil {
			return
		}
		if s.Requests < 0 || s.Errors < 0 || s.RPS < 0 || s.Seconds < 0 {
			t.Errorf("ParseH2load(%q) = %+v: negative numbers", out, s)
		}
	})
}

func FuzzParseH2loadLog(f *testing.F) {
	f.Add(readTestdata(f, "h2load.log"))
	f.Add([]byte("1\t200\t10\n2\t503\t99999\n"))
	f.Add([]byte("1\t200\n"))
	f.Fuzz(func(t *testing.T, log []byte) {
		p50, p99, n, err := ParseH2loadLog(strings.NewReader(string(log)))
		if err != nil {
			return
		}
		if p50 < 0 || p99 < p50 || n < 0 {
			t.Errorf("ParseH2loadLog(%q) = %v, %v, %d", log, p50, p99, n)
		}
	})
}
