package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"
)

// MeasureConfig configures Measure.
type MeasureConfig struct {
	// Command is the load tool and its arguments: wrk with -s
	// wrk/bench.lua, h2load, or `meridian bench load`. It may start with
	// a taskset. Required.
	Command []string
	// PIDs are the server's root processes; their descendants count too.
	// Required.
	PIDs []int
	// LatencyLog is h2load's --log-file, read for the percentiles that its
	// report lacks. Default "": none.
	LatencyLog string
	// Proc reads the processes. Default /proc.
	Proc Proc
}

// Measure runs one load tool against a server and returns what the tool
// reported plus the server's CPU time per request: the utime+stime of the
// server's processes over the tool's run, divided by the requests.
func Measure(ctx context.Context, cfg MeasureConfig) (Sample, error) {
	if len(cfg.Command) == 0 {
		return Sample{}, errors.New("measure: command: required")
	}
	if len(cfg.PIDs) == 0 {
		return Sample{}, errors.New("measure: pids: required")
	}
	pids, err := cfg.Proc.Tree(cfg.PIDs)
	if err != nil {
		return Sample{}, fmt.Errorf("measure: %w", err)
	}
	before := cfg.Proc.CPUTicks(pids)

	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, cfg.Command[0], cfg.Command[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	began := time.Now()
	runErr := cmd.Run()
	wall := time.Since(began)

	// Processes forked during the run (none expected) count from zero.
	pids, err = cfg.Proc.Tree(cfg.PIDs)
	if err != nil {
		return Sample{}, fmt.Errorf("measure: the server died during %s: %w", cfg.Command[0], err)
	}
	after := cfg.Proc.CPUTicks(pids)
	if runErr != nil {
		return Sample{}, fmt.Errorf("measure: %s: %w\n%s", cfg.Command[0], runErr, tail(out.Bytes(), 2000))
	}
	s, err := ParseTool(out.Bytes())
	if err != nil {
		return Sample{}, fmt.Errorf("measure: %s: %w\n%s", cfg.Command[0], err, tail(out.Bytes(), 2000))
	}
	if cfg.LatencyLog != "" {
		f, err := os.Open(cfg.LatencyLog)
		if err != nil {
			return Sample{}, fmt.Errorf("measure: %w", err)
		}
		p50, p99, _, err := ParseH2loadLog(f)
		f.Close()
		if err != nil {
			return Sample{}, fmt.Errorf("measure: %w", err)
		}
		s.P50Ms, s.P99Ms = ms(p50), ms(p99)
	}
	s.LoadCPUPct = loadCPUPct(cmd.ProcessState, wall)
	s.CPUTicks = CPUDelta(before, after)
	if s.Requests > 0 {
		s.CPUPerReqUs = float64(s.CPUTicks) * (1e6 / ClockTicksPerSecond) / float64(s.Requests)
	}
	return s, nil
}

// loadCPUPct is a finished process's user and system time over wall, in
// percent of one core.
func loadCPUPct(ps *os.ProcessState, wall time.Duration) float64 {
	if ps == nil || wall <= 0 {
		return 0
	}
	return 100 * float64(ps.UserTime()+ps.SystemTime()) / float64(wall)
}

// tail returns at most the last n bytes of b.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
