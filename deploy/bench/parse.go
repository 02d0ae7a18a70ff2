package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Markers of the machine-readable lines in the load tools' output.
const (
	// wrkMarker starts the summary line that wrk/bench.lua prints.
	wrkMarker = "WRKJSON "
	// loadMarker starts the summary line that `meridian bench load` prints.
	loadMarker = "BENCHJSON "
)

// wrkSummary is the JSON that wrk/bench.lua's done() prints.
type wrkSummary struct {
	Requests   int64 `json:"requests"`
	DurationUs int64 `json:"duration_us"`
	Errors     struct {
		Connect, Read, Write, Status, Timeout int64
	} `json:"errors"`
	Latency struct {
		P50 float64 `json:"p50"`
		P99 float64 `json:"p99"`
	} `json:"latency_us"`
}

// ErrNoSummary means a tool's output holds no summary that the parser
// knows: the tool failed, or it is not the tool the parser reads.
var ErrNoSummary = errors.New("no summary in the output")

// markedLine returns the rest of the last line of out that starts with
// marker.
func markedLine(out []byte, marker string) ([]byte, bool) {
	i := bytes.LastIndex(out, []byte(marker))
	if i < 0 || (i > 0 && out[i-1] != '\n') {
		return nil, false
	}
	line := out[i+len(marker):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	return line, true
}

// ParseWrk reads the summary line that wrk/bench.lua prints ("WRKJSON
// {...}") from wrk's output: requests, errors (connect, read, write,
// timeouts and statuses of 400 and more), wall time, rate and latency
// percentiles.
func ParseWrk(out []byte) (Sample, error) {
	line, ok := markedLine(out, wrkMarker)
	if !ok {
		return Sample{}, fmt.Errorf("wrk: %w (was it run with -s wrk/bench.lua?)", ErrNoSummary)
	}
	var w wrkSummary
	if err := json.Unmarshal(line, &w); err != nil {
		return Sample{}, fmt.Errorf("wrk summary: %w", err)
	}
	if w.DurationUs <= 0 || w.Requests < 0 {
		return Sample{}, fmt.Errorf("wrk summary: duration %dus, %d requests", w.DurationUs, w.Requests)
	}
	e := w.Errors
	s := Sample{
		Tool:     "wrk",
		Requests: w.Requests,
		Errors:   e.Connect + e.Read + e.Write + e.Status + e.Timeout,
		Seconds:  float64(w.DurationUs) / 1e6,
		P50Ms:    w.Latency.P50 / 1e3,
		P99Ms:    w.Latency.P99 / 1e3,
	}
	s.RPS = float64(s.Requests) / s.Seconds
	return s, nil
}

// ParseH2load reads h2load's closing report: the rate ("finished in 3.00s,
// 11382.50 req/s"), the request counts and the status classes. Requests
// that failed, and answers other than 2xx, count as errors. h2load gives no
// percentiles: read them from its --log-file with ParseH2loadLog.
func ParseH2load(out []byte) (Sample, error) {
	s := Sample{Tool: "h2load"}
	var haveRate, haveCounts bool
	var non2xx int64
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "finished in "):
			// finished in 3.00s, 11382.50 req/s, 12.51MB/s
			f := strings.Split(strings.TrimPrefix(line, "finished in "), ",")
			if len(f) < 2 {
				return s, fmt.Errorf("h2load: bad line %q", line)
			}
			rps, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(f[1]), " req/s"), 64)
			if err != nil || rps < 0 {
				return s, fmt.Errorf("h2load: bad rate in %q", line)
			}
			s.RPS, haveRate = rps, true
		case strings.HasPrefix(line, "requests: "):
			// requests: 22765 total, 22765 started, 22765 done, 22765 succeeded, 0 failed, 0 errored, 0 timeout
			c, err := counts(strings.TrimPrefix(line, "requests: "))
			if err != nil {
				return s, fmt.Errorf("h2load: %w in %q", err, line)
			}
			s.Requests = c["done"]
			s.Errors = c["failed"]
			haveCounts = true
		case strings.HasPrefix(line, "status codes: "):
			c, err := counts(strings.TrimPrefix(line, "status codes: "))
			if err != nil {
				return s, fmt.Errorf("h2load: %w in %q", err, line)
			}
			non2xx = c["3xx"] + c["4xx"] + c["5xx"]
		}
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("h2load: %w", err)
	}
	if !haveRate || !haveCounts {
		return s, fmt.Errorf("h2load: %w", ErrNoSummary)
	}
	// Not done minus 2xx: with --warm-up-time, the status codes count
	// a slightly different set of requests than done does.
	s.Errors += non2xx
	if s.RPS > 0 {
		s.Seconds = float64(s.Requests) / s.RPS // the main duration, warm-up excluded
	}
	return s, nil
}

// counts parses "22765 total, 0 failed, ..." into a map from word to count.
func counts(list string) (map[string]int64, error) {
	m := map[string]int64{}
	for _, item := range strings.Split(list, ",") {
		f := strings.Fields(item)
		if len(f) != 2 {
			return nil, fmt.Errorf("bad count %q", item)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad count %q", item)
		}
		m[f[1]] = n
	}
	return m, nil
}

// ParseH2loadLog reads an h2load --log-file (per request: start time in µs,
// status, duration in µs, tab-separated) and returns the 50th and 99th
// percentile latencies of the 2xx answers and how many lines it read.
func ParseH2loadLog(r io.Reader) (p50, p99 time.Duration, n int, err error) {
	var lat []time.Duration
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		f := strings.Fields(text)
		if len(f) != 3 {
			return 0, 0, 0, fmt.Errorf("h2load log line %d: want 3 fields, got %d", line, len(f))
		}
		status, err1 := strconv.Atoi(f[1])
		us, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || us < 0 || us > int64(time.Hour/time.Microsecond) {
			return 0, 0, 0, fmt.Errorf("h2load log line %d: bad status or duration %q", line, text)
		}
		n++
		if status >= 200 && status < 300 {
			lat = append(lat, time.Duration(us)*time.Microsecond)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, 0, fmt.Errorf("h2load log: %w", err)
	}
	slices.Sort(lat)
	return Percentile(lat, 50), Percentile(lat, 99), n, nil
}

// ParseLoad reads the summary line ("BENCHJSON {...}") that `meridian
// bench load` prints.
func ParseLoad(out []byte) (Sample, error) {
	line, ok := markedLine(out, loadMarker)
	if !ok {
		return Sample{}, fmt.Errorf("load: %w", ErrNoSummary)
	}
	var r LoadResult
	if err := json.Unmarshal(line, &r); err != nil {
		return Sample{}, fmt.Errorf("load summary: %w", err)
	}
	return r.Sample(), nil
}

// ParseTool recognises which tool printed out (wrk with wrk/bench.lua,
// `meridian bench load`, or h2load) and parses it.
func ParseTool(out []byte) (Sample, error) {
	switch {
	case bytes.Contains(out, []byte(wrkMarker)):
		return ParseWrk(out)
	case bytes.Contains(out, []byte(loadMarker)):
		return ParseLoad(out)
	case bytes.Contains(out, []byte("finished in ")):
		return ParseH2load(out)
	}
	return Sample{}, ErrNoSummary
}
