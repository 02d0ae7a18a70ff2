package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// AttackKind names one of the abusive request patterns that Attack sends.
type AttackKind string

// The attacks. Each sends its requests at a fixed rate; each request is for
// a key of its own (k=<run>-<n> added to the URL's query), so that every one
// is a miss the server could forward to its origin.
const (
	// AttackH1Close opens a TCP (or TLS) connection, writes one HTTP/1.1
	// GET and closes the connection at once, reading nothing.
	AttackH1Close AttackKind = "h1-close"
	// AttackH2Reset is HTTP/2 rapid reset (CVE-2023-44487): on a few TLS
	// connections, a HEADERS frame (GET, END_STREAM) immediately followed
	// by RST_STREAM(CANCEL) for each request. A connection the server
	// closes is opened again, and counted.
	AttackH2Reset AttackKind = "h2-reset"
	// AttackH3Cancel sends each request over HTTP/3 with quic-go's client
	// and cancels it as soon as it is written (STOP_SENDING and
	// RESET_STREAM).
	AttackH3Cancel AttackKind = "h3-cancel"
	// AttackUniqueKeys is a flood of HTTP/1.1 GETs for distinct keys, each
	// response read to its end.
	AttackUniqueKeys AttackKind = "unique-keys"
	// AttackSlowMisses is a flood of HTTP/1.1 GETs for distinct keys whose
	// origin is slow (delay=2s by default), each read to the end or
	// abandoned after AttackConfig.ClientTimeout.
	AttackSlowMisses AttackKind = "slow-misses"
)

// AttackKinds lists the attacks in the report's order.
func AttackKinds() []AttackKind {
	return []AttackKind{AttackH1Close, AttackH2Reset, AttackH3Cancel, AttackUniqueKeys, AttackSlowMisses}
}

// ParseAttackKind returns the attack named s.
func ParseAttackKind(s string) (AttackKind, error) {
	for _, k := range AttackKinds() {
		if string(k) == s {
			return k, nil
		}
	}
	names := make([]string, 0, 5)
	for _, k := range AttackKinds() {
		names = append(names, string(k))
	}
	return "", fmt.Errorf("kind: %q, want one of %s", s, strings.Join(names, ", "))
}

// DefaultAttackQuery is the query an attack URL without one is given: a
// 1 MiB body that a cache may keep for ten minutes (the demo origin's
// parameters), large enough that a server holding many of them shows it.
// AttackSlowMisses adds "&delay=2s".
const DefaultAttackQuery = "size=1048576&cc=max-age%3D600"

// AttackConfig configures Attack. Its zero value plus Kind and URL is a
// working run: every field documents its default.
type AttackConfig struct {
	// Kind is the attack. Required.
	Kind AttackKind
	// URL is the attack's target: http or https for h1-close,
	// unique-keys and slow-misses (HTTP/1.1), https for h2-reset and
	// h3-cancel. Each request adds k=<RunID>-<n> to its query; a URL
	// without a query first gets DefaultAttackQuery. Required.
	URL string
	// Host, when set, is sent as the Host header (the :authority)
	// instead of the URL's host. Default "".
	Host string
	// Rate is the attack's requests per second, paced evenly. Default 100.
	Rate float64
	// Duration is how long requests are started: Rate×Duration requests
	// (rounded up) in all. Default 10s.
	Duration time.Duration
	// Conns is the number of connections of h2-reset (default 4) and
	// h3-cancel (default 1). The other kinds open connections as their
	// requests need them.
	Conns int
	// MaxInflight bounds the attack's requests in progress at once (for
	// h2-reset: queued for a connection); a request due while it is
	// reached is skipped and counted (AttackResult.Skipped): the
	// generator, not the server, set the limit. Default 1024.
	MaxInflight int
	// ClientTimeout is how long a unique-keys or slow-misses request may
	// take, body included, before the client abandons it; and the dial
	// timeout of every kind. Default 1s for slow-misses, 10s otherwise.
	ClientTimeout time.Duration

	// HitURL is the legitimate client's object, cached before the attack
	// (Attack fetches it once first and fails if it cannot): it is
	// requested over HTTP/1.1 keep-alive every HitInterval from the
	// attack's start until Tail after its end. Default "": no legitimate
	// client.
	HitURL string
	// HitHost is the legitimate client's Host header. Default Host.
	HitHost string
	// HitInterval is the legitimate client's pace. Default 10ms.
	HitInterval time.Duration
	// HitConns is the number of legitimate clients, each on its own
	// connection at HitInterval. Default 1.
	HitConns int
	// HitTimeout bounds one legitimate request (an error past it).
	// Default 5s.
	HitTimeout time.Duration

	// PIDs are the server's root processes: their resident memory, with
	// their descendants', is sampled every SampleInterval for the peak.
	// Default none: no memory reading.
	PIDs []int
	// SampleInterval is how often the server's RSS is read. Default 50ms.
	SampleInterval time.Duration
	// KillAboveBytes, when set, kills the server (SIGKILL to PIDs) once
	// its RSS passes it, and ends the attack: a guard for the machine
	// the benchmark shares. Default 0: never.
	KillAboveBytes int64
	// BudgetBytes is the memory the server was given (for Meridian
	// cache.max_bytes + cache.max_inflight_bytes + 64 MiB): the result
	// reports the peak RSS against it. Default 0: no ratio.
	BudgetBytes int64

	// OriginStatsURL is the demo origin's GET /_stats: its total before
	// the attack and after the tail gives the origin requests. Default "":
	// not counted.
	OriginStatsURL string
	// OriginCapRPS is the origin request rate that the server's caps
	// should hold the attack to; it is only recorded, for the report's
	// verdict (origin requests ≤ OriginCapRPS × Duration). Default 0: no
	// verdict on origin requests.
	OriginCapRPS float64
	// OriginCapBurst is the origin requests the caps allow at once on top
	// of OriginCapRPS × Duration (a token bucket's burst). Default 0.
	OriginCapBurst float64

	// Tail is how long the legitimate client and the memory sampler go on
	// after the attack's last request has ended: fills that outlive their
	// clients show here. Default 1s.
	Tail time.Duration
	// TLSConfig is the clients' TLS configuration, e.g. with
	// InsecureSkipVerify for a self-signed certificate. Default nil: the
	// system roots.
	TLSConfig *tls.Config
	// RunID makes this run's keys distinct from earlier runs' against the
	// same server. Default: the start time in base 36.
	RunID string
	// Proc reads the server's processes. Default /proc.
	Proc Proc
	// Now is the clock of the pacing and the latencies. Default time.Now.
	Now func() time.Time
}

// withDefaults returns c with every unset field given its default.
func (c AttackConfig) withDefaults() AttackConfig {
	if c.Rate == 0 {
		c.Rate = 100
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Conns == 0 {
		c.Conns = 1
		if c.Kind == AttackH2Reset {
			c.Conns = 4
		}
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = 1024
	}
	if c.ClientTimeout == 0 {
		c.ClientTimeout = 10 * time.Second
		if c.Kind == AttackSlowMisses {
			c.ClientTimeout = time.Second
		}
	}
	if c.HitHost == "" {
		c.HitHost = c.Host
	}
	if c.HitInterval == 0 {
		c.HitInterval = 10 * time.Millisecond
	}
	if c.HitConns == 0 {
		c.HitConns = 1
	}
	if c.HitTimeout == 0 {
		c.HitTimeout = 5 * time.Second
	}
	if c.SampleInterval == 0 {
		c.SampleInterval = 50 * time.Millisecond
	}
	if c.Tail == 0 {
		c.Tail = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.RunID == "" {
		c.RunID = strconv.FormatInt(c.Now().UnixNano(), 36)
	}
	return c
}

// Validate reports the first problem in c (after defaults), naming the
// field.
func (c AttackConfig) Validate() error {
	if _, err := ParseAttackKind(string(c.Kind)); err != nil {
		return err
	}
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return errors.New("url: required")
	case err != nil:
		return fmt.Errorf("url: %w", err)
	case u.Host == "":
		return fmt.Errorf("url: %q has no host", c.URL)
	case (c.Kind == AttackH2Reset || c.Kind == AttackH3Cancel) && u.Scheme != "https":
		return fmt.Errorf("url: %s needs https, got %q", c.Kind, u.Scheme)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("url: scheme %q, want http or https", u.Scheme)
	}
	if c.HitURL != "" {
		h, err := url.Parse(c.HitURL)
		switch {
		case err != nil:
			return fmt.Errorf("hit_url: %w", err)
		case h.Scheme != "http" && h.Scheme != "https" || h.Host == "":
			return fmt.Errorf("hit_url: %q is not an http or https URL", c.HitURL)
		}
	}
	switch {
	case !(c.Rate > 0) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("rate: %v, want a positive number of requests per second", c.Rate)
	case c.Duration < 0:
		return fmt.Errorf("duration: negative (%v)", c.Duration)
	case c.Rate*c.Duration.Seconds() > 1e9:
		return fmt.Errorf("rate × duration: %.0f requests, more than 1e9", c.Rate*c.Duration.Seconds())
	case c.Conns < 0:
		return fmt.Errorf("conns: negative (%d)", c.Conns)
	case c.MaxInflight < 0:
		return fmt.Errorf("max_inflight: negative (%d)", c.MaxInflight)
	case c.ClientTimeout < 0:
		return fmt.Errorf("client_timeout: negative (%v)", c.ClientTimeout)
	case c.HitInterval < 0:
		return fmt.Errorf("hit_interval: negative (%v)", c.HitInterval)
	case c.HitConns < 0:
		return fmt.Errorf("hit_conns: negative (%d)", c.HitConns)
	case c.HitTimeout < 0:
		return fmt.Errorf("hit_timeout: negative (%v)", c.HitTimeout)
	case c.SampleInterval < 0:
		return fmt.Errorf("sample_interval: negative (%v)", c.SampleInterval)
	case c.KillAboveBytes < 0:
		return fmt.Errorf("kill_above_bytes: negative (%d)", c.KillAboveBytes)
	case c.BudgetBytes < 0:
		return fmt.Errorf("budget_bytes: negative (%d)", c.BudgetBytes)
	case c.OriginCapRPS < 0:
		return fmt.Errorf("origin_cap_rps: negative (%v)", c.OriginCapRPS)
	case c.OriginCapBurst < 0:
		return fmt.Errorf("origin_cap_burst: negative (%v)", c.OriginCapBurst)
	case c.Tail < 0:
		return fmt.Errorf("tail: negative (%v)", c.Tail)
	case strings.ContainsAny(c.RunID, "&#=?/ \t\r\n"):
		return fmt.Errorf("run_id: %q has URL metacharacters", c.RunID)
	}
	for i, p := range c.PIDs {
		if p <= 0 {
			return fmt.Errorf("pids[%d]: %d, want a process id", i, p)
		}
	}
	if c.OriginStatsURL != "" {
		if _, err := url.Parse(c.OriginStatsURL); err != nil {
			return fmt.Errorf("origin_stats_url: %w", err)
		}
	}
	return nil
}

// AttackResult is what Attack measured.
type AttackResult struct {
	Kind AttackKind `json:"kind"`
	Rate float64    `json:"rate"`
	// Seconds is the time from the attack's first request to its last
	// one's end (the tail not included).
	Seconds float64 `json:"seconds"`
	// Planned is Rate × Duration, rounded up; each planned request was
	// either sent, skipped or failed before it was written.
	Planned int64 `json:"planned"`
	// Sent counts the requests written to a connection.
	Sent int64 `json:"sent"`
	// Skipped counts the requests due while MaxInflight were in progress
	// (or, for h2-reset, while no connection could take them): the
	// generator's limit, not the server's answer.
	Skipped int64 `json:"skipped"`
	// Answered counts the responses received (any status: for h2-reset
	// and h3-cancel, the ones that beat the cancel), Rejected those of
	// them with 429 or 503: the server shedding load.
	Answered int64 `json:"answered"`
	Rejected int64 `json:"rejected"`
	// Abandoned counts the unique-keys and slow-misses requests given up
	// after ClientTimeout, or in progress when the attack stopped.
	Abandoned int64 `json:"abandoned"`
	// Errors counts the requests that failed: refused or reset
	// connections, failed dials and writes, broken responses.
	Errors int64 `json:"errors"`
	// Resets counts the streams the client cancelled (h2-reset:
	// RST_STREAM sent; h3-cancel: streams cancelled after their request
	// was written); ServerResets the RST_STREAM frames the server sent
	// (h2-reset).
	Resets       int64 `json:"resets"`
	ServerResets int64 `json:"server_resets"`
	// Reconnects counts the connections opened after the first Conns,
	// because the server closed one (h2-reset, h3-cancel); GoAways the
	// GOAWAY frames received (h2-reset). A server that closes abusive
	// connections shows here: a good outcome.
	Reconnects int64 `json:"reconnects"`
	GoAways    int64 `json:"goaways"`
	// FirstError is the attack's first error, if any.
	FirstError string `json:"first_error,omitempty"`

	// BaseRSS, PeakRSS and EndRSS are the server processes' resident
	// memory (VmRSS summed over the process tree) before the attack, at
	// its highest sample, and at the end of the tail, in bytes; 0 without
	// PIDs.
	BaseRSS int64 `json:"base_rss"`
	PeakRSS int64 `json:"peak_rss"`
	EndRSS  int64 `json:"end_rss"`
	// RSSSamples counts the memory readings.
	RSSSamples int `json:"rss_samples"`
	// BudgetBytes is the configured budget; RSSRatio = PeakRSS/BudgetBytes.
	BudgetBytes int64   `json:"budget_bytes"`
	RSSRatio    float64 `json:"rss_ratio"`
	// ServerCPUPct is the server processes' CPU time (utime+stime) from the
	// attack's start to the end of the tail, in percent of one core
	// (about 100 × its cores when it was saturated); LoadCPUPct is the
	// attack tool's own (this process, legitimate client included): near
	// 100 × its cores, the generator, not the server, set the pace and
	// the legitimate latencies include its own delays. 0 when unknown.
	ServerCPUPct float64 `json:"server_cpu_pct"`
	LoadCPUPct   float64 `json:"load_cpu_pct"`
	// ServerExited says the server's root process ended during the run;
	// Killed that Attack killed it for passing KillAboveBytes.
	ServerExited bool `json:"server_exited"`
	Killed       bool `json:"killed"`

	// OriginCounted says OriginRequests was read (OriginStatsURL set):
	// the requests the demo origin served from just before the attack to
	// the end of the tail; OriginRPS is that per second of Duration.
	OriginCounted  bool    `json:"origin_counted"`
	OriginRequests int64   `json:"origin_requests"`
	OriginRPS      float64 `json:"origin_rps"`
	OriginCapRPS   float64 `json:"origin_cap_rps"`
	OriginCapBurst float64 `json:"origin_cap_burst"`

	// Legit is what the legitimate client saw, from the attack's start to
	// the end of the tail.
	Legit LegitResult `json:"legit"`
}

// LegitResult is what the legitimate client of an attack saw.
type LegitResult struct {
	// Requests sent and failed (transport errors, timeouts, statuses
	// other than 200).
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// NotHits counts the 200 answers that the server said were not hits
	// (CacheHit): the object had been evicted, or was never cached.
	NotHits int64 `json:"not_hits"`
	// P50, P99 and Max are the latencies of the 200 answers, corrected
	// for coordinated omission: a request that took longer than the
	// client's interval also counts, for each interval it held the client
	// back, the latency a request sent on time would have had (see
	// correctedLatencies). RawP99 is the uncorrected p99.
	P50    time.Duration `json:"p50"`
	P99    time.Duration `json:"p99"`
	Max    time.Duration `json:"max"`
	RawP99 time.Duration `json:"raw_p99"`
	// FirstError is the first failure, if any.
	FirstError string `json:"first_error,omitempty"`
}

// Sample returns r as a Sample of the "attack" tool.
func (r AttackResult) Sample() Sample {
	s := Sample{Tool: "attack", Kind: string(r.Kind), Rate: r.Rate, Planned: r.Planned,
		Requests: r.Sent, Errors: r.Errors, Seconds: r.Seconds,
		Skipped: r.Skipped, Answered: r.Answered, Rejected: r.Rejected, Abandoned: r.Abandoned,
		Resets: r.Resets, ServerResets: r.ServerResets, Reconnects: r.Reconnects, GoAways: r.GoAways,
		ServerCPUPct: r.ServerCPUPct, LoadCPUPct: r.LoadCPUPct,
		BaseRSS: r.BaseRSS, PeakRSS: r.PeakRSS, BudgetBytes: r.BudgetBytes, RSSRatio: r.RSSRatio,
		ServerExited: r.ServerExited, Killed: r.Killed,
		OriginCounted: r.OriginCounted, OriginFetches: r.OriginRequests, OriginRPS: r.OriginRPS, OriginCapRPS: r.OriginCapRPS, OriginCapBurst: r.OriginCapBurst,
		LegitRequests: r.Legit.Requests, LegitErrors: r.Legit.Errors, LegitNotHits: r.Legit.NotHits,
		LegitP50Ms: ms(r.Legit.P50), LegitP99Ms: ms(r.Legit.P99), LegitMaxMs: ms(r.Legit.Max),
		FirstError: r.FirstError}
	if r.Seconds > 0 {
		s.RPS = float64(r.Sent) / r.Seconds
	}
	if s.FirstError == "" && r.Legit.FirstError != "" {
		s.FirstError = "legit: " + r.Legit.FirstError
	}
	return s
}

// attackCounters are the attack's counts, shared by its goroutines.
type attackCounters struct {
	sent, skipped, answered, rejected, abandoned, errors atomic.Int64
	resets, serverResets, dials, goAways                 atomic.Int64

	mu       sync.Mutex
	firstErr error
}

// fail counts a failed request and keeps the first error.
func (c *attackCounters) fail(err error) {
	c.errors.Add(1)
	c.note(err)
}

// note keeps err if it is the first.
func (c *attackCounters) note(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.firstErr == nil {
		c.firstErr = err
	}
}

// answer counts a response with the given status.
func (c *attackCounters) answer(status int) {
	c.answered.Add(1)
	if status == 429 || status == 503 {
		c.rejected.Add(1)
	}
}

// attacker is one kind of attack.
type attacker interface {
	// start opens what the attack needs before its first request (h2's
	// connections); an error means the server cannot be attacked at all.
	start(ctx context.Context) error
	// fire sends request n, or hands it to a goroutine that will; it
	// never blocks, and returns false when the request had to be skipped.
	fire(ctx context.Context, n int64) bool
	// finish waits for the requests in progress and releases everything.
	finish()
}

// target builds the attack's request URLs.
type target struct {
	// url is the full URL up to the key's number, e.g.
	// "http://h/p?size=1&k=run-".
	url string
	// requestURI is the same from the path on.
	requestURI string
	// host is the Host header (the :authority).
	host string
	// addr is host:port to dial.
	addr string
	// tls says https.
	tls bool
}

// newTarget parses cfg.URL and adds the default query and the key prefix.
func newTarget(cfg AttackConfig) (target, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return target{}, err
	}
	u.Fragment, u.RawFragment = "", ""
	if u.RawQuery == "" {
		u.RawQuery = DefaultAttackQuery
		if cfg.Kind == AttackSlowMisses {
			u.RawQuery += "&delay=2s"
		}
	}
	u.RawQuery += "&k=" + url.QueryEscape(cfg.RunID) + "-"
	t := target{url: u.String(), requestURI: u.RequestURI(), host: u.Host, tls: u.Scheme == "https"}
	if cfg.Host != "" {
		t.host = cfg.Host
	}
	t.addr = u.Host
	if u.Port() == "" {
		port := "80"
		if t.tls {
			port = "443"
		}
		t.addr = u.Hostname() + ":" + port
		if strings.Contains(u.Hostname(), ":") {
			t.addr = "[" + u.Hostname() + "]:" + port
		}
	}
	return t, nil
}

// pacer spreads total events evenly from start at rate per second: event i
// (from 0) is due at start + i/rate.
type pacer struct {
	start time.Time
	rate  float64
	total int64
	taken int64
}

// plannedRequests is rate × d rounded up: the events due before d has
// passed (a tiny tolerance absorbs float error, so 50/s over 300ms is 15).
func plannedRequests(rate float64, d time.Duration) int64 {
	return int64(math.Ceil(rate*d.Seconds() - 1e-9))
}

// take returns how many events are due at now and not yet taken (marking
// them taken), how long until the next one is due, and whether every event
// has been taken.
func (p *pacer) take(now time.Time) (n int64, wait time.Duration, done bool) {
	elapsed := now.Sub(p.start).Seconds()
	due := p.total
	if elapsed < float64(p.total)/p.rate {
		// The tolerance keeps float error from holding back an event
		// whose time has come (next, below, is rounded up for the same
		// reason), so that the caller never spins.
		due = min(int64(math.Floor(elapsed*p.rate+1e-9))+1, p.total)
	}
	if elapsed < 0 {
		due = 0
	}
	n = max(due-p.taken, 0)
	p.taken += n
	if p.taken >= p.total {
		return n, 0, true
	}
	next := p.start.Add(time.Duration(math.Ceil(float64(p.taken) / p.rate * float64(time.Second))))
	return n, max(next.Sub(now), 0), false
}

// Attack runs cfg.Kind at cfg.Rate for cfg.Duration against cfg.URL while a
// legitimate client asks for cfg.HitURL, the server's memory is sampled and
// the origin's requests are counted, and reports what happened. It fails
// only when the attack cannot run at all: a bad config, a legitimate object
// that cannot be fetched before the attack, a server that cannot be
// reached or does not speak the attack's protocol. A server that dies or
// sheds the attack is a result, not an error.
func Attack(ctx context.Context, cfg AttackConfig) (AttackResult, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return AttackResult{}, fmt.Errorf("attack: %w", err)
	}
	tgt, err := newTarget(cfg)
	if err != nil {
		return AttackResult{}, fmt.Errorf("attack: url: %w", err)
	}
	// A hard bound on the whole run, in case the server stops answering.
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration+cfg.ClientTimeout+cfg.Tail+cfg.HitTimeout+30*time.Second)
	defer cancel()

	res := AttackResult{Kind: cfg.Kind, Rate: cfg.Rate, Planned: plannedRequests(cfg.Rate, cfg.Duration),
		BudgetBytes: cfg.BudgetBytes, OriginCapRPS: cfg.OriginCapRPS, OriginCapBurst: cfg.OriginCapBurst}

	var legit *legitClient
	if cfg.HitURL != "" {
		legit = newLegitClient(cfg)
		defer legit.close()
		if err := legit.warm(ctx); err != nil {
			return res, fmt.Errorf("attack: the legitimate object %s before the attack: %w", cfg.HitURL, err)
		}
	}
	// The attack's connections open before the origin is counted: h3's
	// first request on each is let finish.
	c := &attackCounters{}
	a := newAttacker(cfg, tgt, c)
	if err := a.start(ctx); err != nil {
		a.finish()
		return res, fmt.Errorf("attack %s %s: %w", cfg.Kind, cfg.URL, err)
	}
	var originBefore int64
	if cfg.OriginStatsURL != "" {
		if originBefore, err = OriginTotal(ctx, cfg.OriginStatsURL); err != nil {
			a.finish()
			return res, fmt.Errorf("attack: %w", err)
		}
	}
	// abort ends the attack early: the server died or was killed.
	abortCtx, abort := context.WithCancel(ctx)
	defer abort()
	var sampler *rssSampler
	if len(cfg.PIDs) > 0 {
		sampler = &rssSampler{proc: cfg.Proc, roots: cfg.PIDs, killAbove: cfg.KillAboveBytes, onDeath: abort}
		if err := sampler.sample(); err != nil {
			a.finish()
			return res, fmt.Errorf("attack: %w", err)
		}
		res.BaseRSS = sampler.last
	}

	// The watchers run from the attack's start to the end of the tail.
	stop := make(chan struct{})
	var watchers sync.WaitGroup
	if sampler != nil {
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			sampler.run(stop, cfg.SampleInterval)
		}()
	}
	if legit != nil {
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			legit.run(ctx, stop)
		}()
	}

	cpu := newCPUMeter(cfg.Proc, cfg.PIDs)
	start := cfg.Now()
	p := &pacer{start: start, rate: cfg.Rate, total: res.Planned}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
pace:
	for abortCtx.Err() == nil {
		n, wait, done := p.take(cfg.Now())
		for i := p.taken - n; i < p.taken; i++ {
			if !a.fire(abortCtx, i) {
				c.skipped.Add(1)
			}
		}
		if done {
			break
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-abortCtx.Done():
			break pace
		}
	}
	// Requests never due because the run was cut short count as skipped.
	c.skipped.Add(res.Planned - p.taken)
	a.finish()
	res.Seconds = cfg.Now().Sub(start).Seconds()

	select {
	case <-time.After(cfg.Tail):
	case <-abortCtx.Done():
	}
	close(stop)
	watchers.Wait()
	res.ServerCPUPct, res.LoadCPUPct = cpu.percent()

	res.Sent, res.Skipped = c.sent.Load(), c.skipped.Load()
	res.Answered, res.Rejected, res.Abandoned = c.answered.Load(), c.rejected.Load(), c.abandoned.Load()
	res.Errors, res.Resets, res.ServerResets = c.errors.Load(), c.resets.Load(), c.serverResets.Load()
	res.Reconnects = max(c.dials.Load()-int64(cfg.Conns), 0)
	res.GoAways = c.goAways.Load()
	if c.firstErr != nil {
		res.FirstError = c.firstErr.Error()
	}
	if sampler != nil {
		res.PeakRSS, res.EndRSS, res.RSSSamples = sampler.peak, sampler.last, sampler.samples
		res.ServerExited, res.Killed = sampler.exited, sampler.killed
		if cfg.BudgetBytes > 0 {
			res.RSSRatio = float64(res.PeakRSS) / float64(cfg.BudgetBytes)
		}
	}
	if legit != nil {
		res.Legit = legit.result()
	}
	if cfg.OriginStatsURL != "" {
		// The origin is a process of its own: it is there to ask even if
		// the server died.
		after, err := OriginTotal(ctx, cfg.OriginStatsURL)
		if err != nil {
			return res, fmt.Errorf("attack: after the attack: %w", err)
		}
		res.OriginCounted, res.OriginRequests = true, after-originBefore
		if d := cfg.Duration.Seconds(); d > 0 {
			res.OriginRPS = float64(res.OriginRequests) / d
		}
	}
	return res, nil
}

// newAttacker returns the attack of cfg.Kind.
func newAttacker(cfg AttackConfig, t target, c *attackCounters) attacker {
	switch cfg.Kind {
	case AttackH1Close:
		return &h1CloseAttack{cfg: cfg, t: t, c: c, f: newFanout(cfg.MaxInflight)}
	case AttackH2Reset:
		return newH2ResetAttack(cfg, t, c)
	case AttackH3Cancel:
		return newH3CancelAttack(cfg, t, c)
	default:
		return newGetAttack(cfg, t, c)
	}
}

// fanout runs functions in goroutines, at most cap at once.
type fanout struct {
	sem chan struct{}
	wg  sync.WaitGroup
}

func newFanout(n int) *fanout { return &fanout{sem: make(chan struct{}, n)} }

// try runs fn in a goroutine of its own unless the cap is reached.
func (f *fanout) try(fn func()) bool {
	select {
	case f.sem <- struct{}{}:
	default:
		return false
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer func() { <-f.sem }()
		fn()
	}()
	return true
}

// wait waits for the goroutines.
func (f *fanout) wait() { f.wg.Wait() }

// correctedLatencies returns the latencies a client that means to send a
// request every interval would have seen (HdrHistogram's
// recordValueWithExpectedInterval): each l, plus, when l is longer than the
// interval, l−interval, l−2·interval, … down to one interval, the
// latencies of the requests it could not send while it waited. Without it
// a 2 s stall would be one sample among hundreds and vanish from the p99.
// At most limit latencies are returned.
func correctedLatencies(lat []time.Duration, interval time.Duration, limit int) []time.Duration {
	out := make([]time.Duration, 0, min(len(lat), limit))
	for _, l := range lat {
		if len(out) >= limit {
			break
		}
		out = append(out, l)
		if interval <= 0 {
			continue
		}
		for m := l - interval; m >= interval && len(out) < limit; m -= interval {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}

// byteUnits are the suffixes ParseBytes accepts, with their sizes.
var byteUnits = []struct {
	suffix string
	size   int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

// ParseBytes parses a byte count: a whole number of bytes, optionally
// followed (a space between allowed) by B, KiB, MiB, GiB or TiB, e.g.
// "150994944", "144MiB", "2 GiB". It refuses negative numbers, fractions,
// other units (an "MB" may mean either) and counts that overflow int64.
func ParseBytes(s string) (int64, error) {
	num, size := strings.TrimSpace(s), int64(1)
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, size = strings.TrimSpace(n), u.size
			break
		}
	}
	if num == "" || strings.TrimLeft(num, "0123456789") != "" {
		return 0, fmt.Errorf("bytes %q: want a whole number, optionally followed by B, KiB, MiB, GiB or TiB", s)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt64/size {
		return 0, fmt.Errorf("bytes %q: too large", s)
	}
	return n * size, nil
}
