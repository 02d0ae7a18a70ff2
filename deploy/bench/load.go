package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// LoadConfig configures Load. Its zero value plus a URL is a working
// HTTP/3 run: every field documents its default.
type LoadConfig struct {
	// URL is requested over and over with GET. Required; https for h2 and
	// h3.
	URL string
	// Host, when set, is sent as the Host header (the :authority) instead
	// of the URL's host. Default "".
	Host string
	// Proto is "h1" (HTTP/1.1), "h2" (HTTP/2 over TLS) or "h3" (HTTP/3
	// over QUIC). Default "h3".
	Proto string
	// Conns is the number of connections, each with one request in flight
	// at a time (a closed loop, as wrk and h2load -m 1). Default 64.
	Conns int
	// Duration is how long requests are started. Default 5s.
	Duration time.Duration
	// MaxRequests stops the run after this many requests in all. Default 0:
	// only Duration bounds it.
	MaxRequests int64
	// TLSConfig is the client's TLS configuration, e.g. with RootCAs or
	// InsecureSkipVerify for a self-signed certificate. Default nil: the
	// system roots.
	TLSConfig *tls.Config
	// Now is the clock for latencies and the end of the run. Default
	// time.Now.
	Now func() time.Time
}

// maxLatencies bounds the latencies kept per connection (8 MiB each); the
// requests past it are counted but not in the percentiles.
const maxLatencies = 1 << 20

// withDefaults returns c with every unset field given its default.
func (c LoadConfig) withDefaults() LoadConfig {
	if c.Proto == "" {
		c.Proto = "h3"
	}
	if c.Conns == 0 {
		c.Conns = 64
	}
	if c.Duration == 0 {
		c.Duration = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first problem in c (after defaults), naming the
// field.
func (c LoadConfig) Validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return errors.New("url: required")
	case err != nil:
		return fmt.Errorf("url: %w", err)
	case u.Host == "":
		return fmt.Errorf("url: %q has no host", c.URL)
	}
	switch c.Proto {
	case "h1":
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("url: scheme %q, want http or https", u.Scheme)
		}
	case "h2", "h3":
		if u.Scheme != "https" {
			return fmt.Errorf("url: %s needs https, got %q", c.Proto, u.Scheme)
		}
	default:
		return fmt.Errorf("proto: %q, want h1, h2 or h3", c.Proto)
	}
	switch {
	case c.Conns < 0:
		return fmt.Errorf("conns: negative (%d)", c.Conns)
	case c.Duration < 0:
		return fmt.Errorf("duration: negative (%v)", c.Duration)
	case c.MaxRequests < 0:
		return fmt.Errorf("max_requests: negative (%d)", c.MaxRequests)
	}
	return nil
}

// LoadResult is what Load measured.
type LoadResult struct {
	Proto string `json:"proto"`
	Conns int    `json:"conns"`
	// Requests answered (whatever the status) and failed (transport
	// errors and statuses other than 200).
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// Bytes of response bodies read.
	Bytes int64 `json:"bytes"`
	// Seconds from the start to the last answer; RPS = Requests/Seconds.
	Seconds float64 `json:"seconds"`
	RPS     float64 `json:"rps"`
	// P50Ms and P99Ms are latency percentiles (request sent to body read)
	// of the 200 answers, in milliseconds.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
}

// Sample returns r as a Sample of the "load" tool.
func (r LoadResult) Sample() Sample {
	return Sample{Tool: "load", Requests: r.Requests, Errors: r.Errors, Seconds: r.Seconds,
		RPS: r.RPS, P50Ms: r.P50Ms, P99Ms: r.P99Ms}
}

// loadConn is one connection's loop and what it saw.
type loadConn struct {
	rt       http.RoundTripper
	close    func()
	lat      []time.Duration
	requests int64
	errors   int64
	bytes    int64
	firstErr error
}

// Load runs a closed-loop load: cfg.Conns connections, each with its own
// transport (so its own TCP or QUIC connection), send GET cfg.URL one after
// another until cfg.Duration has passed or cfg.MaxRequests were sent. It
// fails if no request succeeded, or if the server answered in another
// protocol than cfg.Proto.
func Load(ctx context.Context, cfg LoadConfig) (LoadResult, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return LoadResult{}, fmt.Errorf("load: %w", err)
	}
	// A hard bound, in case the server stops answering mid-request.
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration+30*time.Second)
	defer cancel()

	conns := make([]*loadConn, cfg.Conns)
	for i := range conns {
		conns[i] = newLoadConn(cfg)
	}
	defer func() {
		for _, c := range conns {
			c.close()
		}
	}()
	var sent atomic.Int64
	start := cfg.Now()
	end := start.Add(cfg.Duration)
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(ctx, cfg, end, &sent)
		}()
	}
	wg.Wait()
	elapsed := cfg.Now().Sub(start)

	res := LoadResult{Proto: cfg.Proto, Conns: cfg.Conns, Seconds: elapsed.Seconds()}
	var lat []time.Duration
	var firstErr error
	for _, c := range conns {
		res.Requests += c.requests
		res.Errors += c.errors
		res.Bytes += c.bytes
		lat = append(lat, c.lat...)
		var pe *protoError
		if errors.As(c.firstErr, &pe) {
			return res, fmt.Errorf("load %s: %w", cfg.URL, pe)
		}
		if firstErr == nil {
			firstErr = c.firstErr
		}
	}
	if len(lat) == 0 {
		if firstErr == nil {
			firstErr = errors.New("no request completed")
		}
		return res, fmt.Errorf("load %s %s: %w", cfg.Proto, cfg.URL, firstErr)
	}
	slices.Sort(lat)
	if res.Seconds > 0 {
		res.RPS = float64(res.Requests) / res.Seconds
	}
	res.P50Ms, res.P99Ms = ms(Percentile(lat, 50)), ms(Percentile(lat, 99))
	return res, nil
}

// newLoadConn makes the transport of one connection.
func newLoadConn(cfg LoadConfig) *loadConn {
	var tlsConf *tls.Config
	if cfg.TLSConfig != nil {
		tlsConf = cfg.TLSConfig.Clone()
	}
	if cfg.Proto == "h3" {
		t := &http3.Transport{TLSClientConfig: tlsConf, DisableCompression: true}
		return &loadConn{rt: t, close: func() { t.Close() }}
	}
	var p http.Protocols
	if cfg.Proto == "h2" {
		p.SetHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	t := &http.Transport{
		Proxy:               nil, // never an environment proxy: the target is on loopback
		TLSClientConfig:     tlsConf,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
		Protocols:           &p,
	}
	return &loadConn{rt: t, close: t.CloseIdleConnections}
}

// protoError means the server answered in another HTTP version.
type protoError struct{ got, want string }

func (e *protoError) Error() string { return fmt.Sprintf("server answered %s, want %s", e.got, e.want) }

var wantMajor = map[string]int{"h1": 1, "h2": 2, "h3": 3}

// run sends requests until end, the request budget or ctx runs out.
func (c *loadConn) run(ctx context.Context, cfg LoadConfig, end time.Time, sent *atomic.Int64) {
	for ctx.Err() == nil {
		t0 := cfg.Now()
		if !t0.Before(end) || (cfg.MaxRequests > 0 && sent.Add(1) > cfg.MaxRequests) {
			return
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.URL, nil)
		if err != nil {
			c.fail(err)
			return
		}
		if cfg.Host != "" {
			req.Host = cfg.Host
		}
		resp, err := c.rt.RoundTrip(req)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.fail(err)
			if c.requests == 0 {
				return // the first request failed: the server is not there
			}
			continue
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		c.requests++
		c.bytes += n
		if resp.ProtoMajor != wantMajor[cfg.Proto] {
			c.fail(&protoError{got: resp.Proto, want: cfg.Proto})
			return
		}
		if err != nil || resp.StatusCode != http.StatusOK {
			if err == nil {
				err = fmt.Errorf("status %s", resp.Status)
			}
			c.fail(err)
			continue
		}
		if len(c.lat) < maxLatencies {
			c.lat = append(c.lat, cfg.Now().Sub(t0))
		}
	}
}

func (c *loadConn) fail(err error) {
	c.errors++
	if c.firstErr == nil {
		c.firstErr = err
	}
}
