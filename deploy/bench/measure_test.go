package bench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMeasure(t *testing.T) {
	summary := `WRKJSON {"requests":1000,"duration_us":1000000,"errors":{},"latency_us":{"p50":500,"p99":900}}`
	s, err := Measure(context.Background(), MeasureConfig{
		Command: []string{"sh", "-c", "echo 'Running 1s test'; echo '" + summary + "'"},
		PIDs:    []int{os.Getpid()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Tool != "wrk" || s.Requests != 1000 || s.RPS != 1000 || s.P99Ms != 0.9 {
		t.Errorf("Measure = %+v", s)
	}
	if s.CPUTicks < 0 || s.CPUPerReqUs != float64(s.CPUTicks)*1e4/1000 {
		t.Errorf("CPU: %d ticks, %v µs/req", s.CPUTicks, s.CPUPerReqUs)
	}

	// The load tool's own CPU: a busy tool shows more than a sleeping one.
	load := func(script string) float64 {
		t.Helper()
		s, err := Measure(context.Background(), MeasureConfig{
			Command: []string{"sh", "-c", script + "; echo '" + summary + "'"},
			PIDs:    []int{os.Getpid()},
		})
		if err != nil {
			t.Fatal(err)
		}
		return s.LoadCPUPct
	}
	busy := load("i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done")
	idle := load("sleep 0.3")
	if busy <= idle || idle > 50 || busy > 200 {
		t.Errorf("load core: busy tool %.0f %%, sleeping tool %.0f %%", busy, idle)
	}
	if loadCPUPct(nil, time.Second) != 0 {
		t.Error("loadCPUPct of no process state is not 0")
	}

	// h2load's percentiles come from its log file.
	log := filepath.Join(t.TempDir(), "h2.log")
	os.WriteFile(log, []byte("1\t200\t1000\n2\t200\t3000\n"), 0o644)
	h2 := "finished in 1.00s, 2.00 req/s, 1KB/s\nrequests: 2 total, 2 started, 2 done, 2 succeeded, 0 failed, 0 errored, 0 timeout\n"
	s, err = Measure(context.Background(), MeasureConfig{
		Command:    []string{"printf", "%s", h2},
		PIDs:       []int{os.Getpid()},
		LatencyLog: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Tool != "h2load" || s.P50Ms != 1 || s.P99Ms != 3 {
		t.Errorf("h2load with log = %+v", s)
	}

	for _, tc := range []struct {
		name string
		cfg  MeasureConfig
		want string
	}{
		{"no command", MeasureConfig{PIDs: []int{1}}, "command: required"},
		{"no pids", MeasureConfig{Command: []string{"true"}}, "pids: required"},
		{"tool fails", MeasureConfig{Command: []string{"sh", "-c", "echo unable to connect; exit 1"}, PIDs: []int{os.Getpid()}}, "unable to connect"},
		{"no summary", MeasureConfig{Command: []string{"echo", "hello"}, PIDs: []int{os.Getpid()}}, ErrNoSummary.Error()},
		{"missing log", MeasureConfig{Command: []string{"printf", "%s", h2}, PIDs: []int{os.Getpid()}, LatencyLog: "/nonexistent/h2.log"}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Measure(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Measure = %v, want an error with %q", err, tc.want)
			}
		})
	}
	_, err = Measure(context.Background(), MeasureConfig{Command: []string{"echo", "x"}, PIDs: []int{os.Getpid()}})
	if !errors.Is(err, ErrNoSummary) {
		t.Errorf("Measure of garbage = %v, want ErrNoSummary", err)
	}
}
