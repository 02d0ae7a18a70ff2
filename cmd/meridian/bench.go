package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/meridiancdn/meridian/deploy/bench"
)

const benchUsage = `usage: meridian bench <tool> [flags]

The tools of the side-by-side benchmark (deploy/bench/run.sh runs them all):
  h3, load   closed-loop HTTP/3 (or --proto h1, h2) load: --url U --conns N --duration D
  measure    run a load tool, add the server's CPU per request: --pids P,Q -- wrk ...
  coalesce   N concurrent requests for one cold key: --url U --warm-url W
  memory     cache N new objects and read the server's memory growth
  attack     one attack at a fixed rate (--kind h1-close|h2-reset|h3-cancel|unique-keys|slow-misses)
             while a legitimate client asks for a cached object: peak RSS, origin requests, hit p99;
             'attack report --in F --md F' turns its samples into a table
  report     turn a samples file into latest.md and latest.json
  edge       run an edge (as 'meridian edge') plus a debug listener for heap and CPU profiles
  floor      the all-miss row's calibration: the least a Go server does for a miss
             (--listen A --origin HOST:PORT; see bench.Floor)`

// runBench dispatches the benchmark's tools.
func runBench(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("bench: no tool\n%s", benchUsage)
	}
	tool, rest := args[0], args[1:]
	switch tool {
	case "h3", "load":
		return runBenchLoad(ctx, tool, rest)
	case "measure":
		return runBenchMeasure(ctx, rest)
	case "coalesce":
		return runBenchCoalesce(ctx, rest)
	case "memory":
		return runBenchMemory(ctx, rest)
	case "attack":
		return runBenchAttack(ctx, rest)
	case "report":
		return runBenchReport(rest)
	case "edge":
		return runBenchEdge(ctx, rest)
	case "floor":
		return runBenchFloor(ctx, rest)
	case "help", "-h", "--help":
		fmt.Println(benchUsage)
		return nil
	}
	return fmt.Errorf("bench: unknown tool %q\n%s", tool, benchUsage)
}

// sampleFlags are the flags that label a sample and say where it goes.
type sampleFlags struct {
	rep              *int
	scenario, server *string
	out              *string
}

func addSampleFlags(fs *flag.FlagSet) sampleFlags {
	return sampleFlags{
		rep:      fs.Int("rep", 1, "repetition number"),
		scenario: fs.String("scenario", "", "scenario name, e.g. hit-1k"),
		server:   fs.String("server", "", "server name: meridian, nginx or varnish"),
		out:      fs.String("out", "", "samples file to append to (default: print the sample)"),
	}
}

// emit labels s and appends it to the samples file, or prints it.
func (f sampleFlags) emit(s bench.Sample) error {
	s.Rep, s.Scenario, s.Server = *f.rep, *f.scenario, *f.server
	if *f.out == "" {
		b, err := json.Marshal(s)
		if err != nil {
			return err
		}
		fmt.Println(string(b))
		return nil
	}
	if s.Scenario == "" || s.Server == "" {
		return errors.New("bench: --scenario and --server are required with --out")
	}
	return bench.AppendSample(*f.out, s)
}

func parsePIDs(s string) ([]int, error) {
	var pids []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("--pids: bad pid %q", f)
		}
		pids = append(pids, pid)
	}
	if len(pids) == 0 {
		return nil, errors.New("--pids: required")
	}
	return pids, nil
}

func runBenchLoad(ctx context.Context, name string, args []string) error {
	fs := flag.NewFlagSet("bench "+name, flag.ContinueOnError)
	u := fs.String("url", "", "URL to request (https for h2 and h3)")
	host := fs.String("host", "", "Host header (default: the URL's)")
	proto := fs.String("proto", "h3", "protocol: h1, h2 or h3")
	conns := fs.Int("conns", 64, "connections, one request in flight each")
	dur := fs.Duration("duration", 5*time.Second, "how long to send requests")
	insecure := fs.Bool("insecure", false, "accept any server certificate (self-signed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := bench.LoadConfig{URL: *u, Host: *host, Proto: *proto, Conns: *conns, Duration: *dur}
	if *insecure {
		cfg.TLSConfig = &tls.Config{InsecureSkipVerify: true}
	}
	res, err := bench.Load(ctx, cfg)
	if err != nil {
		return err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%s %d conns: %d requests (%d errors) in %.2fs, %.0f req/s, p50 %.2f ms, p99 %.2f ms\n",
		res.Proto, res.Conns, res.Requests, res.Errors, res.Seconds, res.RPS, res.P50Ms, res.P99Ms)
	fmt.Printf("BENCHJSON %s\n", b)
	return nil
}

func runBenchMeasure(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench measure", flag.ContinueOnError)
	sf := addSampleFlags(fs)
	pids := fs.String("pids", "", "the server's root process ids, comma-separated")
	latLog := fs.String("latency-log", "", "h2load --log-file to read percentiles from")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p, err := parsePIDs(*pids)
	if err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("bench measure: no command after the flags (-- wrk ...)")
	}
	s, err := bench.Measure(ctx, bench.MeasureConfig{Command: fs.Args(), PIDs: p, LatencyLog: *latLog})
	if err != nil {
		return err
	}
	return sf.emit(s)
}

func runBenchCoalesce(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench coalesce", flag.ContinueOnError)
	sf := addSampleFlags(fs)
	u := fs.String("url", "", "the cold object's URL (new key, slow origin)")
	warm := fs.String("warm-url", "", "a cached object's URL, to open each connection first")
	host := fs.String("host", "", "Host header (default: the URL's)")
	clients := fs.Int("clients", 200, "concurrent clients")
	stats := fs.String("stats-url", "", "the demo origin's /_stats, to count origin fetches")
	if err := fs.Parse(args); err != nil {
		return err
	}
	res, err := bench.Coalesce(ctx, bench.CoalesceConfig{URL: *u, WarmURL: *warm, Host: *host, Clients: *clients, StatsURL: *stats})
	if err != nil {
		return err
	}
	return sf.emit(res.Sample())
}

func runBenchMemory(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench memory", flag.ContinueOnError)
	sf := addSampleFlags(fs)
	cfg := bench.MemoryConfig{}
	fs.StringVar(&cfg.BaseURL, "url", "", "the server's base URL, e.g. http://127.0.0.1:18080")
	fs.StringVar(&cfg.Host, "host", "", "Host header")
	fs.StringVar(&cfg.Prefix, "prefix", "", "path prefix new to the server, e.g. /mem/r1-1k/")
	fs.IntVar(&cfg.Objects, "objects", 10000, "objects to cache")
	fs.Int64Var(&cfg.Size, "size", 1024, "body size in bytes")
	fs.IntVar(&cfg.Conns, "conns", 16, "concurrent clients")
	fs.StringVar(&cfg.Dir, "dir", "", "the server's on-tmpfs cache directory (nginx)")
	fs.StringVar(&cfg.DebugURL, "debug-url", "", "the server's /debug/memstats (meridian bench edge)")
	pids := fs.String("pids", "", "the server's root process ids, comma-separated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if cfg.PIDs, err = parsePIDs(*pids); err != nil {
		return err
	}
	s, err := bench.Memory(ctx, cfg)
	if err != nil {
		return err
	}
	return sf.emit(s)
}

func runBenchReport(args []string) error {
	fs := flag.NewFlagSet("bench report", flag.ContinueOnError)
	in := fs.String("in", "", "samples file (JSON Lines)")
	md := fs.String("md", "", "Markdown file to write")
	js := fs.String("json", "", "JSON file to write")
	notes := fs.String("notes", "", "file of notes, one a line, shown under the tables")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" {
		return errors.New("bench report: --in FILE is required")
	}
	f, err := os.Open(*in)
	if err != nil {
		return fmt.Errorf("bench report: %w", err)
	}
	samples, err := bench.ReadSamples(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("bench report: %s: %w", *in, err)
	}
	var lines []string
	if *notes != "" {
		b, err := os.ReadFile(*notes)
		if err != nil {
			return fmt.Errorf("bench report: %w", err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, l)
			}
		}
	}
	r := bench.NewReport(samples, bench.ReadMachine(bench.Proc{}), lines, time.Now())
	write := func(path string, fn func(*bytes.Buffer) error) error {
		var buf bytes.Buffer
		if err := fn(&buf); err != nil {
			return err
		}
		if path == "" || path == "-" {
			_, err := os.Stdout.Write(buf.Bytes())
			return err
		}
		return os.WriteFile(path, buf.Bytes(), 0o644)
	}
	if err := write(*md, func(b *bytes.Buffer) error { return r.WriteMarkdown(b) }); err != nil {
		return fmt.Errorf("bench report: %w", err)
	}
	if *js != "" {
		if err := write(*js, func(b *bytes.Buffer) error { return r.WriteJSON(b) }); err != nil {
			return fmt.Errorf("bench report: %w", err)
		}
	}
	return nil
}

// runBenchEdge runs an edge exactly as 'meridian edge' does, plus, with
// --debug-listen, bench.DebugHandler on a listener of its own.
func runBenchEdge(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench edge", flag.ContinueOnError)
	config := fs.String("config", "", "edge config file (YAML)")
	debug := fs.String("debug-listen", "", "address for /debug/memstats and /debug/pprof/profile, e.g. 127.0.0.1:18090")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *debug != "" {
		ln, err := net.Listen("tcp", *debug)
		if err != nil {
			return fmt.Errorf("bench edge: --debug-listen: %w", err)
		}
		srv := &http.Server{Handler: bench.DebugHandler(), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
	}
	return runEdge(ctx, []string{"--config", *config})
}

// runBenchFloor runs a bench.Floor until ctx ends.
func runBenchFloor(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench floor", flag.ContinueOnError)
	listen := fs.String("listen", "", "address to serve on, e.g. 127.0.0.1:18085")
	origin := fs.String("origin", "", "the origin's host:port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *listen == "" || *origin == "" {
		return errors.New("bench floor: --listen and --origin are required")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("bench floor: %w", err)
	}
	f := &bench.Floor{Origin: *origin}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	if err := f.Serve(ln); ctx.Err() == nil {
		return fmt.Errorf("bench floor: %w", err)
	}
	return nil
}

// runBenchAttack runs one attack (bench.Attack), or with "report" first,
// writes the attack samples' table.
func runBenchAttack(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "report" {
		return runBenchAttackReport(args[1:])
	}
	fs := flag.NewFlagSet("bench attack", flag.ContinueOnError)
	sf := addSampleFlags(fs)
	var cfg bench.AttackConfig
	kind := fs.String("kind", "", "attack: h1-close, h2-reset, h3-cancel, unique-keys or slow-misses")
	fs.StringVar(&cfg.URL, "url", "", "attack target; each request adds k=<run>-<n> to its query (without a query: "+bench.DefaultAttackQuery+")")
	fs.StringVar(&cfg.Host, "host", "", "Host header (default: the URL's)")
	fs.Float64Var(&cfg.Rate, "rate", 100, "attack requests per second")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long the attack sends")
	fs.IntVar(&cfg.Conns, "conns", 0, "connections of h2-reset (default 4) and h3-cancel (default 1)")
	fs.IntVar(&cfg.MaxInflight, "max-inflight", 0, "attack requests in progress at most; more are skipped (default 1024)")
	fs.DurationVar(&cfg.ClientTimeout, "client-timeout", 0, "abandon a unique-keys or slow-misses request after this (default 1s for slow-misses, else 10s)")
	pids := fs.String("pid", "", "the server's root process ids, comma-separated, for its peak RSS")
	fs.StringVar(&cfg.OriginStatsURL, "origin-stats", "", "the demo origin's /_stats, to count origin requests")
	fs.StringVar(&cfg.HitURL, "hit-url", "", "a cached object the legitimate client asks for every --hit-interval")
	fs.StringVar(&cfg.HitHost, "hit-host", "", "the legitimate client's Host header (default --host)")
	fs.DurationVar(&cfg.HitInterval, "hit-interval", 10*time.Millisecond, "the legitimate client's pace")
	budget := fs.String("budget-bytes", "", "the server's memory budget (max_bytes + max_inflight_bytes + 64 MiB), e.g. 150994944 or 144MiB")
	killAbove := fs.String("kill-above", "", "kill the server (SIGKILL to --pid) when its RSS passes this, e.g. 2GiB (default: never)")
	fs.Float64Var(&cfg.OriginCapRPS, "origin-cap-rps", 0, "origin requests per second that the server's caps allow, for the verdict")
	fs.Float64Var(&cfg.OriginCapBurst, "origin-cap-burst", 0, "origin requests the server's caps allow at once on top of that rate (a rate limit's burst), for the verdict")
	fs.DurationVar(&cfg.Tail, "tail", time.Second, "how long to keep watching after the attack")
	insecure := fs.Bool("insecure", false, "accept any server certificate (self-signed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench attack: unexpected arguments %q", fs.Args())
	}
	k, err := bench.ParseAttackKind(*kind)
	if err != nil {
		return fmt.Errorf("bench attack: --%w", err)
	}
	cfg.Kind = k
	if *pids != "" {
		if cfg.PIDs, err = parsePIDs(*pids); err != nil {
			return fmt.Errorf("bench attack: %w", err)
		}
	}
	if *budget != "" {
		if cfg.BudgetBytes, err = bench.ParseBytes(*budget); err != nil {
			return fmt.Errorf("bench attack: --budget-bytes: %w", err)
		}
	}
	if *killAbove != "" {
		if cfg.KillAboveBytes, err = bench.ParseBytes(*killAbove); err != nil {
			return fmt.Errorf("bench attack: --kill-above: %w", err)
		}
	}
	if *insecure {
		cfg.TLSConfig = &tls.Config{InsecureSkipVerify: true}
	}
	if *sf.scenario == "" {
		*sf.scenario = "attack-" + *kind
	}
	if *sf.out != "" && *sf.server == "" {
		return errors.New("bench attack: --scenario and --server are required with --out")
	}
	res, err := bench.Attack(ctx, cfg)
	if err != nil {
		return err
	}
	s := res.Sample()
	fmt.Fprintf(os.Stderr, "%s %.0f/s × %v: sent %d, skipped %d, answered %d (%d 429/503), abandoned %d, resets %d/%d, reconnects %d, errors %d; "+
		"peak RSS %.0f MiB (%.2f× budget); origin %d (%.1f/s); legit p50 %.1f ms p99 %.1f ms max %.1f ms, %d errors of %d; %s\n",
		res.Kind, res.Rate, cfg.Duration, res.Sent, res.Skipped, res.Answered, res.Rejected, res.Abandoned, res.Resets, res.ServerResets,
		res.Reconnects, res.Errors, float64(res.PeakRSS)/(1<<20), res.RSSRatio, res.OriginRequests, res.OriginRPS,
		s.LegitP50Ms, s.LegitP99Ms, s.LegitMaxMs, res.Legit.Errors, res.Legit.Requests, bench.DefaultAttackTargets().Verdict(s))
	return sf.emit(s)
}

// runBenchAttackReport writes the table of a samples file's attacks.
func runBenchAttackReport(args []string) error {
	fs := flag.NewFlagSet("bench attack report", flag.ContinueOnError)
	in := fs.String("in", "", "samples file (JSON Lines) of 'bench attack --out'")
	md := fs.String("md", "", "Markdown file to write (default: standard output)")
	notes := fs.String("notes", "", "file of notes, one a line, shown under the table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" {
		return errors.New("bench attack report: --in FILE is required")
	}
	f, err := os.Open(*in)
	if err != nil {
		return fmt.Errorf("bench attack report: %w", err)
	}
	samples, err := bench.ReadSamples(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("bench attack report: %s: %w", *in, err)
	}
	var lines []string
	if *notes != "" {
		b, err := os.ReadFile(*notes)
		if err != nil {
			return fmt.Errorf("bench attack report: %w", err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, l)
			}
		}
	}
	var buf bytes.Buffer
	if err := bench.WriteAttackMarkdown(&buf, samples, bench.DefaultAttackTargets(), bench.ReadMachine(bench.Proc{}), lines, time.Now()); err != nil {
		return err
	}
	if *md == "" || *md == "-" {
		_, err = os.Stdout.Write(buf.Bytes())
		return err
	}
	return os.WriteFile(*md, buf.Bytes(), 0o644)
}
