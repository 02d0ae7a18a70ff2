package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meridiancdn/meridian/origin"
)

// What watches an attack: the legitimate client, the server's memory and
// the origin's request count.

// legitClient asks for a cached object at a steady pace on keep-alive
// HTTP/1.1 connections and records what it sees.
type legitClient struct {
	cfg        AttackConfig
	transports []*http.Transport

	mu       sync.Mutex
	lat      []time.Duration
	requests int64
	errors   int64
	notHits  int64
	firstErr error
}

func newLegitClient(cfg AttackConfig) *legitClient {
	l := &legitClient{cfg: cfg}
	for range cfg.HitConns {
		var p http.Protocols
		p.SetHTTP1(true)
		t := &http.Transport{
			Proxy:               nil, // never an environment proxy: the target is on loopback
			MaxIdleConnsPerHost: 1,
			DisableCompression:  true,
			Protocols:           &p,
		}
		if cfg.TLSConfig != nil {
			t.TLSClientConfig = cfg.TLSConfig.Clone()
		}
		l.transports = append(l.transports, t)
	}
	return l
}

// close closes the idle connections.
func (l *legitClient) close() {
	for _, t := range l.transports {
		t.CloseIdleConnections()
	}
}

// get fetches the object once over t and returns how long it took and
// whether the server said it was a hit (see CacheHit).
func (l *legitClient) get(ctx context.Context, t *http.Transport) (time.Duration, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.HitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.cfg.HitURL, nil)
	if err != nil {
		return 0, false, err
	}
	if l.cfg.HitHost != "" {
		req.Host = l.cfg.HitHost
	}
	t0 := l.cfg.Now()
	resp, err := t.RoundTrip(req)
	if err != nil {
		return 0, false, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return 0, false, err
	case resp.StatusCode != http.StatusOK:
		return 0, false, fmt.Errorf("status %s", resp.Status)
	}
	return l.cfg.Now().Sub(t0), CacheHit(resp) != HitNo, nil
}

// Hit says what a response's cache headers tell of it.
type Hit int

// The answers of CacheHit.
const (
	// HitUnknown: the response says nothing of the cache.
	HitUnknown Hit = iota
	// HitYes: served from the cache.
	HitYes
	// HitNo: the cache went upstream for it.
	HitNo
)

// CacheHit reads a response's Cache-Status (RFC 9211: a "hit" parameter
// in its last entry, the one of the cache nearest the client, as Meridian
// sends it), or else nginx's X-Cache-Status ($upstream_cache_status) or
// X-Cache (Varnish, as the benchmark's VCL sets it).
func CacheHit(resp *http.Response) Hit {
	if cs := resp.Header.Values("Cache-Status"); len(cs) > 0 {
		// The last entry is the cache nearest the client.
		entries := strings.Split(strings.Join(cs, ","), ",")
		for _, p := range strings.Split(entries[len(entries)-1], ";")[1:] {
			if strings.TrimSpace(p) == "hit" {
				return HitYes
			}
		}
		return HitNo
	}
	for _, h := range []string{"X-Cache-Status", "X-Cache"} {
		switch v := strings.ToUpper(strings.TrimSpace(resp.Header.Get(h))); {
		case v == "":
		case v == "HIT" || v == "STALE" || v == "UPDATING" || v == "REVALIDATED":
			return HitYes
		default:
			return HitNo
		}
	}
	return HitUnknown
}

// warm fetches the object once on each connection, so that it is cached
// and the connections are open before the attack; it records nothing.
func (l *legitClient) warm(ctx context.Context) error {
	for _, t := range l.transports {
		if _, _, err := l.get(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// run asks for the object every HitInterval on each connection until stop
// is closed or ctx ends. A request that takes longer than the interval
// delays that connection's next one to the next tick.
func (l *legitClient) run(ctx context.Context, stop <-chan struct{}) {
	var wg sync.WaitGroup
	for _, t := range l.transports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.loop(ctx, stop, t)
		}()
	}
	wg.Wait()
}

func (l *legitClient) loop(ctx context.Context, stop <-chan struct{}, t *http.Transport) {
	interval := l.cfg.HitInterval
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	next := l.cfg.Now()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		d, hit, err := l.get(ctx, t)
		l.record(d, hit, err)
		now := l.cfg.Now()
		next = nextTick(next, now, interval)
		timer.Reset(next.Sub(now))
		select {
		case <-timer.C:
		case <-stop:
			return
		case <-ctx.Done():
			return
		}
	}
}

// nextTick returns the first of prev+interval, prev+2·interval, … that is
// not before now (prev+interval when interval is not positive).
func nextTick(prev, now time.Time, interval time.Duration) time.Time {
	next := prev.Add(interval)
	if interval <= 0 || !next.Before(now) {
		return next
	}
	missed := now.Sub(next) / interval
	next = next.Add(missed * interval)
	if next.Before(now) {
		next = next.Add(interval)
	}
	return next
}

func (l *legitClient) record(d time.Duration, hit bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.requests++
	if err != nil {
		l.errors++
		if l.firstErr == nil {
			l.firstErr = err
		}
		return
	}
	if !hit {
		l.notHits++
	}
	if len(l.lat) < maxLatencies {
		l.lat = append(l.lat, d)
	}
}

// result summarizes what the client saw.
func (l *legitClient) result() LegitResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := LegitResult{Requests: l.requests, Errors: l.errors, NotHits: l.notHits}
	if l.firstErr != nil {
		r.FirstError = l.firstErr.Error()
	}
	raw := slices.Clone(l.lat)
	slices.Sort(raw)
	r.RawP99 = Percentile(raw, 99)
	c := correctedLatencies(l.lat, l.cfg.HitInterval, maxLatencies)
	r.P50, r.P99 = Percentile(c, 50), Percentile(c, 99)
	if len(c) > 0 {
		r.Max = c[len(c)-1]
	}
	return r
}

// errExited means a server's root process is gone.
var errExited = errors.New("the server's process is not running")

// rssSampler follows the peak resident memory of a process tree.
type rssSampler struct {
	proc      Proc
	roots     []int
	killAbove int64
	// onDeath is called once when a root has exited or was killed.
	onDeath func()

	pids       []int
	sinceTree  int
	last, peak int64
	samples    int
	exited     bool
	killed     bool
}

// treeEvery is how many samples reuse one reading of the process tree
// (a walk of all of /proc): a second's worth at the default interval.
const treeEvery = 20

// sample reads the tree's RSS once. It returns errExited (wrapped) when a
// root has exited.
func (s *rssSampler) sample() error {
	if s.pids == nil || s.sinceTree >= treeEvery {
		pids, err := s.proc.Tree(s.roots)
		if err != nil {
			for _, r := range s.roots {
				if _, rerr := s.proc.VmRSS(r); rerr != nil {
					return fmt.Errorf("pid %d: %w", r, errExited)
				}
			}
			return err
		}
		s.pids, s.sinceTree = pids, 0
	}
	s.sinceTree++
	var total int64
	for _, pid := range s.pids {
		rss, err := s.proc.VmRSS(pid)
		if err != nil {
			if slices.Contains(s.roots, pid) {
				return fmt.Errorf("pid %d: %w", pid, errExited)
			}
			continue // a child that exited
		}
		total += rss
	}
	s.last = total
	s.peak = max(s.peak, total)
	s.samples++
	return nil
}

// run samples every interval until stop is closed, a root exits, or the
// tree passes killAbove (then it kills the roots).
func (s *rssSampler) run(stop <-chan struct{}, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if err := s.sample(); err != nil {
			if errors.Is(err, errExited) {
				s.exited = true
				s.onDeath()
				return
			}
			continue // /proc was unreadable for a moment: try again
		}
		if s.killAbove > 0 && s.last > s.killAbove {
			for _, r := range s.roots {
				syscall.Kill(r, syscall.SIGKILL)
			}
			s.killed, s.exited = true, true
			s.onDeath()
			return
		}
	}
}

// VmRSS returns pid's resident set size in bytes, from /proc/PID/status.
// A process without one (a zombie) is an error, as one that does not
// exist.
func (p Proc) VmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join(p.dir(), strconv.Itoa(pid), "status"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("proc: process %d is not running", pid)
		}
		return 0, fmt.Errorf("proc: %w", err)
	}
	kb, err := parseVmRSS(b)
	if err != nil {
		return 0, fmt.Errorf("proc: pid %d: %w", pid, err)
	}
	return kb << 10, nil
}

// parseVmRSS returns the VmRSS of a /proc/PID/status, in kB.
func parseVmRSS(b []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("status: bad VmRSS line %q", sc.Text())
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 || n > 1<<42 {
			return 0, fmt.Errorf("status: bad VmRSS %q", f[0])
		}
		return n, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("status: %w", err)
	}
	return 0, errors.New("status: no VmRSS (a zombie or a kernel thread)")
}

// OriginTotal asks the demo origin at statsURL (its GET /_stats) how many
// requests it has served since its counts were last reset.
func OriginTotal(ctx context.Context, statsURL string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, statsURL, nil)
	if err != nil {
		return 0, fmt.Errorf("origin stats: %w", err)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, fmt.Errorf("origin stats: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("origin stats %s: %s", statsURL, resp.Status)
	}
	var st origin.DemoStats
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&st); err != nil {
		return 0, fmt.Errorf("origin stats %s: %w", statsURL, err)
	}
	return st.Total, nil
}

// cpuMeter measures the CPU time of the server's processes and of this
// one over a stretch of wall time.
type cpuMeter struct {
	proc         Proc
	roots        []int
	start        time.Time
	server, self map[int]int64
}

func newCPUMeter(p Proc, roots []int) *cpuMeter {
	m := &cpuMeter{proc: p, roots: roots, start: time.Now()}
	if len(roots) > 0 {
		if pids, err := p.Tree(roots); err == nil {
			m.server = p.CPUTicks(pids)
		}
	}
	m.self = p.CPUTicks([]int{os.Getpid()})
	return m
}

// percent returns the server's and this process's CPU time since the
// meter was made, in percent of one core (0 when unknown).
func (m *cpuMeter) percent() (server, self float64) {
	wall := time.Since(m.start).Seconds()
	if wall <= 0 {
		return 0, 0
	}
	pct := func(before, after map[int]int64) float64 {
		if before == nil || len(after) == 0 {
			return 0
		}
		return float64(CPUDelta(before, after)) / ClockTicksPerSecond / wall * 100
	}
	if m.server != nil {
		// Processes that exited meanwhile are lost: the figure is a floor.
		var pids []int
		for pid := range m.server {
			pids = append(pids, pid)
		}
		if tree, err := m.proc.Tree(m.roots); err == nil {
			pids = tree
		}
		server = pct(m.server, m.proc.CPUTicks(pids))
	}
	self = pct(m.self, m.proc.CPUTicks([]int{os.Getpid()}))
	return server, self
}
