package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meridiancdn/meridian/origin"
)

// CoalesceConfig configures Coalesce. Its zero value plus URL and WarmURL
// works.
type CoalesceConfig struct {
	// URL is the cold object that every client asks for at once: a key
	// never requested before, whose origin answer is slow (the demo
	// origin's delay=50ms). Required.
	URL string
	// WarmURL is a cached object that each client fetches first, so that
	// its connection is open and the burst measures the cache, not the
	// TCP handshakes. Required.
	WarmURL string
	// Host, when set, is sent as the Host header. Default "".
	Host string
	// Clients is the number of concurrent clients, each on its own
	// connection. Default 200.
	Clients int
	// Timeout bounds the whole measurement. Default 30s (nginx's waiters
	// alone take about 510 ms).
	Timeout time.Duration
	// IsFill reports whether a response is the fill's own (the leader's):
	// it says which client the cache sent upstream. Default FillResponse.
	IsFill func(*http.Response) bool
	// StatsURL, when set, is the demo origin's /_stats: Coalesce then
	// counts the origin's requests for URL's path (see OriginFetches), and
	// fails if there were none, as when the origin's per-key table is
	// full. Default "".
	StatsURL string
	// Now is the clock for latencies. Default time.Now.
	Now func() time.Time
}

// CoalesceResult is what Coalesce measured.
type CoalesceResult struct {
	// Clients that asked, and how many of them failed.
	Clients int `json:"clients"`
	Errors  int `json:"errors"`
	// Fills counts the responses that said they came from upstream.
	Fills int `json:"fills"`
	// Leader is the latency of the fill's response (the fastest, if
	// several said so; the fastest of all if none did).
	Leader time.Duration `json:"leader"`
	// WaiterP50 and WaiterP99 are the latency percentiles of the others.
	WaiterP50 time.Duration `json:"waiter_p50"`
	WaiterP99 time.Duration `json:"waiter_p99"`
	// WaitersDoneAfterLeader is the median of when each waiter's response
	// was complete, less when the leader's was: whether the waiters are
	// held back past the fill. Latencies alone cannot say it: one load
	// generator core sends the burst's requests one after another, over
	// some milliseconds, and the leader's is the first.
	WaitersDoneAfterLeader time.Duration `json:"waiters_done_after_leader"`
	// OriginFetches counts the origin's requests for the object (with
	// CoalesceConfig.StatsURL; else 0).
	OriginFetches int64 `json:"origin_fetches"`
}

// FillResponse is the default CoalesceConfig.IsFill. It reads Meridian's
// Cache-Status (forwarded, and not "collapsed" onto another request's
// fill), nginx's X-Cache-Status: MISS (from $upstream_cache_status) and
// X-Cache: MISS (Varnish, set in the benchmark's VCL).
func FillResponse(resp *http.Response) bool {
	if cs := resp.Header.Get("Cache-Status"); cs != "" {
		return strings.Contains(cs, "fwd=") && !strings.Contains(cs, "collapsed")
	}
	if v := resp.Header.Get("X-Cache-Status"); v != "" {
		return strings.EqualFold(v, "MISS")
	}
	return strings.EqualFold(resp.Header.Get("X-Cache"), "MISS")
}

type coalesceClient struct {
	t        *http.Transport
	lat      time.Duration
	done     time.Duration // when the response was complete, after the burst began
	fill, ok bool
	err      error
}

// Coalesce measures request coalescing: cfg.Clients clients, each on its own
// warmed-up connection, ask for cfg.URL at the same moment. A cache that
// coalesces sends one request upstream (count them with OriginFetches) and
// answers the others once it can; the waiters' latency over the leader's
// shows how soon.
func Coalesce(ctx context.Context, cfg CoalesceConfig) (CoalesceResult, error) {
	if cfg.Clients == 0 {
		cfg.Clients = 200
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.IsFill == nil {
		cfg.IsFill = FillResponse
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	u, err := url.Parse(cfg.URL)
	switch {
	case cfg.URL == "":
		return CoalesceResult{}, errors.New("coalesce: url: required")
	case err != nil:
		return CoalesceResult{}, fmt.Errorf("coalesce: url: %w", err)
	case cfg.WarmURL == "":
		return CoalesceResult{}, errors.New("coalesce: warm_url: required")
	case cfg.Clients < 0:
		return CoalesceResult{}, fmt.Errorf("coalesce: clients: negative (%d)", cfg.Clients)
	case cfg.Timeout < 0:
		return CoalesceResult{}, errors.New("coalesce: timeout: negative")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	clients := make([]*coalesceClient, cfg.Clients)
	for i := range clients {
		clients[i] = &coalesceClient{t: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1, DisableCompression: true}}
		defer clients[i].t.CloseIdleConnections()
	}
	get := func(c *coalesceClient, u string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		if cfg.Host != "" {
			req.Host = cfg.Host
		}
		resp, err := c.t.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %s", resp.Status)
		}
		return resp, err
	}

	// Warm every connection at once, so that each client has its own.
	var warm sync.WaitGroup
	warmErr := make([]error, len(clients))
	for i, c := range clients {
		warm.Add(1)
		go func() {
			defer warm.Done()
			_, warmErr[i] = get(c, cfg.WarmURL)
		}()
	}
	warm.Wait()
	if err := errors.Join(warmErr...); err != nil {
		return CoalesceResult{}, fmt.Errorf("coalesce: warming up with %s: %w", cfg.WarmURL, err)
	}

	start := make(chan struct{})
	var burst sync.WaitGroup
	var began time.Time
	for _, c := range clients {
		burst.Add(1)
		go func() {
			defer burst.Done()
			<-start
			t0 := cfg.Now()
			resp, err := get(c, cfg.URL)
			t1 := cfg.Now()
			c.lat, c.done = t1.Sub(t0), t1.Sub(began)
			c.err = err
			c.ok = err == nil
			c.fill = err == nil && cfg.IsFill(resp)
		}()
	}
	began = cfg.Now()
	close(start)
	burst.Wait()
	res := summarizeCoalesce(clients)
	if cfg.StatsURL != "" {
		if res.OriginFetches, err = OriginFetches(ctx, cfg.StatsURL, u.EscapedPath()); err != nil {
			return res, fmt.Errorf("coalesce: %w", err)
		}
		if res.OriginFetches == 0 && res.Errors < res.Clients {
			// The key was new, so someone fetched it: the demo origin did
			// not count it (its per-key table holds 100,000 keys).
			return res, fmt.Errorf("coalesce: the origin counted no request for %s: reset its counts first (POST /_stats/reset)", u.EscapedPath())
		}
	}
	return res, nil
}

// summarizeCoalesce picks the leader and the waiters' percentiles.
func summarizeCoalesce(clients []*coalesceClient) CoalesceResult {
	res := CoalesceResult{Clients: len(clients)}
	leader := -1
	for i, c := range clients {
		switch {
		case !c.ok:
			res.Errors++
		case c.fill:
			res.Fills++
			if leader < 0 || !clients[leader].fill || c.lat < clients[leader].lat {
				leader = i
			}
		case leader < 0 || (!clients[leader].fill && c.lat < clients[leader].lat):
			leader = i
		}
	}
	if leader < 0 {
		return res
	}
	res.Leader = clients[leader].lat
	var waiters, after []time.Duration
	for i, c := range clients {
		if c.ok && i != leader {
			waiters = append(waiters, c.lat)
			after = append(after, c.done-clients[leader].done)
		}
	}
	slices.Sort(waiters)
	slices.Sort(after)
	res.WaiterP50, res.WaiterP99 = Percentile(waiters, 50), Percentile(waiters, 99)
	res.WaitersDoneAfterLeader = Percentile(after, 50)
	return res
}

// OriginFetches asks the demo origin at statsURL (its /_stats) how many
// requests it served for paths starting with pathPrefix.
func OriginFetches(ctx context.Context, statsURL, pathPrefix string) (int64, error) {
	if _, err := url.Parse(statsURL); err != nil {
		return 0, fmt.Errorf("origin stats: %w", err)
	}
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
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, fmt.Errorf("origin stats %s: %w", statsURL, err)
	}
	var n int64
	for k, v := range st.Requests {
		if strings.HasPrefix(k, pathPrefix) {
			n += v
		}
	}
	return n, nil
}

// Sample returns r as a Sample of the "coalesce" tool.
func (r CoalesceResult) Sample() Sample {
	return Sample{Tool: "coalesce", Clients: r.Clients, Errors: int64(r.Errors), OriginFetches: r.OriginFetches,
		LeaderMs: ms(r.Leader), WaiterP50Ms: ms(r.WaiterP50), WaiterP99Ms: ms(r.WaiterP99),
		WaitersDoneAfterLeaderMs: ms(r.WaitersDoneAfterLeader)}
}
