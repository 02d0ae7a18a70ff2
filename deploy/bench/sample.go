package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// Sample is one measurement of one server in one scenario of one
// repetition: a line of a run's samples file (JSON Lines). Which fields are
// set depends on the scenario: throughput, coalescing or memory.
type Sample struct {
	// Rep numbers the repetition, from 1.
	Rep int `json:"rep"`
	// Scenario names what was measured, e.g. "hit-1k" (see Scenarios).
	Scenario string `json:"scenario"`
	// Server is "meridian", "nginx" or "varnish".
	Server string `json:"server"`
	// Tool is what produced the numbers: "wrk", "h2load", "load" (this
	// package's generator), "coalesce" or "memory".
	Tool string `json:"tool,omitempty"`

	// Requests completed, and how many of them failed (transport errors,
	// timeouts, non-2xx statuses).
	Requests int64 `json:"requests,omitempty"`
	Errors   int64 `json:"errors,omitempty"`
	// Seconds is the measured wall time; RPS = Requests / Seconds.
	Seconds float64 `json:"seconds,omitempty"`
	RPS     float64 `json:"rps,omitempty"`
	// P50Ms and P99Ms are latency percentiles in milliseconds.
	P50Ms float64 `json:"p50_ms,omitempty"`
	P99Ms float64 `json:"p99_ms,omitempty"`
	// CPUTicks is the server processes' utime+stime over the run, in clock
	// ticks (1/100 s); CPUPerReqUs is that per request in microseconds.
	CPUTicks    int64   `json:"cpu_ticks,omitempty"`
	CPUPerReqUs float64 `json:"cpu_us_per_req,omitempty"`
	// LoadCPUPct is the load tool's own utime+stime over its wall time,
	// in percent of one core: near 100, the client set the pace, not the
	// server.
	LoadCPUPct float64 `json:"load_cpu_pct,omitempty"`

	// Coalescing: concurrent clients, origin fetches they caused, and the
	// latency of the fill's own response (the leader) and of the rest.
	Clients       int     `json:"clients,omitempty"`
	OriginFetches int64   `json:"origin_fetches,omitempty"`
	LeaderMs      float64 `json:"leader_ms,omitempty"`
	WaiterP50Ms   float64 `json:"waiter_p50_ms,omitempty"`
	WaiterP99Ms   float64 `json:"waiter_p99_ms,omitempty"`
	// WaitersDoneAfterLeaderMs is the median time from the leader's
	// response being complete to a waiter's (see CoalesceResult).
	WaitersDoneAfterLeaderMs float64 `json:"waiters_done_after_leader_ms,omitempty"`

	// Memory: objects cached, the bytes of their bodies, and the growth of
	// the server's proportional RSS (PSS, so that pages shared by nginx's
	// processes count once), of its on-tmpfs cache files, and (Meridian)
	// of its live Go heap. BytesPerObject is (PSS + files − bodies) per
	// object; HeapBytesPerObject is (heap − bodies) per object.
	Objects            int     `json:"objects,omitempty"`
	BodyBytes          int64   `json:"body_bytes,omitempty"`
	PSSDelta           int64   `json:"pss_delta,omitempty"`
	FilesDelta         int64   `json:"files_delta,omitempty"`
	HeapDelta          int64   `json:"heap_delta,omitempty"`
	BytesPerObject     float64 `json:"bytes_per_object,omitempty"`
	HeapBytesPerObject float64 `json:"heap_bytes_per_object,omitempty"`

	// Attack (see AttackResult): the attack's kind and paced rate, what it
	// sent (Requests, Errors, Seconds and RPS hold the attack's own
	// requests) and how the server answered, the server's peak RSS against
	// the budget, the origin's requests (OriginFetches, when
	// OriginCounted) and the legitimate client's hits during the attack.
	Kind          string  `json:"kind,omitempty"`
	Rate          float64 `json:"rate,omitempty"`
	Planned       int64   `json:"planned,omitempty"`
	Skipped       int64   `json:"skipped,omitempty"`
	Answered      int64   `json:"answered,omitempty"`
	Rejected      int64   `json:"rejected,omitempty"`
	Abandoned     int64   `json:"abandoned,omitempty"`
	Resets        int64   `json:"resets,omitempty"`
	ServerResets  int64   `json:"server_resets,omitempty"`
	Reconnects    int64   `json:"reconnects,omitempty"`
	GoAways       int64   `json:"goaways,omitempty"`
	ServerCPUPct  float64 `json:"server_cpu_pct,omitempty"`
	BaseRSS       int64   `json:"base_rss,omitempty"`
	PeakRSS       int64   `json:"peak_rss,omitempty"`
	BudgetBytes   int64   `json:"budget_bytes,omitempty"`
	RSSRatio      float64 `json:"rss_ratio,omitempty"`
	ServerExited  bool    `json:"server_exited,omitempty"`
	Killed        bool    `json:"killed,omitempty"`
	OriginCounted bool    `json:"origin_counted,omitempty"`
	OriginRPS     float64 `json:"origin_rps,omitempty"`
	OriginCapRPS  float64 `json:"origin_cap_rps,omitempty"`
	// OriginCapBurst is what the caps allow at once beyond the rate.
	OriginCapBurst float64 `json:"origin_cap_burst,omitempty"`
	LegitRequests  int64   `json:"legit_requests,omitempty"`
	LegitErrors    int64   `json:"legit_errors,omitempty"`
	LegitNotHits   int64   `json:"legit_not_hits,omitempty"`
	LegitP50Ms     float64 `json:"legit_p50_ms,omitempty"`
	LegitP99Ms     float64 `json:"legit_p99_ms,omitempty"`
	LegitMaxMs     float64 `json:"legit_max_ms,omitempty"`
	// FirstError is the first error the attack or the legitimate client
	// met, for the reader of the samples file.
	FirstError string `json:"first_error,omitempty"`
}

// ReadSamples reads a samples file: one JSON Sample per line, blank lines
// skipped. An error names the line.
func ReadSamples(r io.Reader) ([]Sample, error) {
	var out []Sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var s Sample
		if err := json.Unmarshal(line, &s); err != nil {
			return nil, fmt.Errorf("samples line %d: %w", n, err)
		}
		if s.Scenario == "" || s.Server == "" {
			return nil, fmt.Errorf("samples line %d: scenario and server are required", n)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("samples: %w", err)
	}
	return out, nil
}

// AppendSample appends s as one line to the samples file at path, creating
// it if needed.
func AppendSample(path string, s Sample) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("samples: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("samples %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("samples %s: %w", path, err)
	}
	return nil
}
