package origin

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// PoolConfig configures an origin [Pool]: the servers of one site's origin and
// how they are checked, retried and timed out. Its zero value plus one server
// is a working pool; every field documents its default, filled in by
// [PoolConfig.WithDefaults], and [PoolConfig.Validate] names the field of
// any mistake.
type PoolConfig struct {
	// Name labels the pool in logs and metrics. Default "origin".
	Name string `yaml:"name"`
	// Servers are the origin servers. At least one, and at least one that
	// is not a backup, is required.
	Servers []ServerConfig `yaml:"servers"`
	// Health configures active health checks. Off unless enabled.
	Health HealthConfig `yaml:"health"`
	// Outlier configures passive outlier detection: servers that fail
	// requests in a row are ejected for a while.
	Outlier OutlierConfig `yaml:"outlier"`
	// Breaker configures the pool's circuit breaker. Off unless
	// max_failures is set.
	Breaker BreakerConfig `yaml:"circuit_breaker"`

	// ConnectTimeout bounds the TCP connect plus the TLS handshake to one
	// server. Default 2s: on a working network a connect takes
	// milliseconds, so longer means the server is gone.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// TryTimeout bounds one try, from sending the request to receiving the
	// response headers; an idempotent request that runs out is retried on
	// another server. It is for that failover: a try that no other server
	// could take over (one server, retries spent, a request that is not
	// retried) is bounded by Timeout alone. Default 10s.
	TryTimeout time.Duration `yaml:"try_timeout"`
	// Timeout bounds the wait for a response's headers over every try
	// (Varnish's first_byte_timeout, summed over retries). Default 30s.
	// The body is not bounded as a whole: a large download may take as
	// long as it takes while its bytes keep coming (see ReadTimeout).
	Timeout time.Duration `yaml:"timeout"`
	// ReadTimeout bounds each wait for more of the response body (nginx's
	// proxy_read_timeout, Varnish's between_bytes_timeout): a body that
	// stalls this long fails. Time the caller spends between reads does
	// not count. Default 30s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// Retries is how many other servers a request may try after the first
	// one fails. Default 1; -1 means none (0 means the default).
	Retries int `yaml:"retries"`
	// MaxIdleConnsPerHost is how many idle connections are kept to each
	// server. Default 256, enough for a busy edge to reuse connections
	// rather than open new ones under load.
	MaxIdleConnsPerHost int `yaml:"max_idle_conns_per_host"`

	// MaxConns caps the connections to each server, dialing, busy and idle
	// together. Default 256: as many as max_idle_conns_per_host keeps, so
	// that every connection a busy edge opens can be reused, and what a
	// stock Apache httpd (prefork) serves at once, so that a flood of
	// misses on one edge cannot open thousands. -1: no cap.
	// Over HTTP/1.1 a request holds its connection until its body is
	// closed, so at most this many are in flight to the server whatever
	// max_inflight says (see MaxInflight).
	MaxConns int `yaml:"max_conns"`
	// MaxInflight caps the requests in flight to each server, from sending
	// the request until its response body is closed (or the try fails);
	// retries on another server take a slot there too. Default 512: over
	// HTTP/2 a few connections carry that many streams (servers allow
	// 100 to 250 each), over HTTP/1.1 max_conns is the tighter cap, as a
	// server counts as HTTP/1.1 until it answers over HTTP/2. -1: no cap.
	MaxInflight int `yaml:"max_inflight"`
	// MaxQueue is how many requests may wait for a slot of each server;
	// more are refused at once (KindOverloaded). Default 1024: about what
	// a server at its caps frees within queue_timeout when its answers
	// take a quarter second (256 slots, 4 turns); more would only wait to
	// time out, holding their memory. -1: no queue, refuse at once.
	MaxQueue int `yaml:"max_queue"`
	// QueueTimeout bounds a request's wait for a slot, summed over its
	// tries; then it fails with KindOverloaded (the edge answers 503 with
	// Retry-After). Default 1s: long enough to ride out a burst, short
	// enough that a refused client hears so well before a slow origin
	// would have answered. It counts against Timeout, not TryTimeout.
	QueueTimeout time.Duration `yaml:"queue_timeout"`

	// TLS configures the connections to https servers: a private CA, a
	// server name (SNI) override, a client certificate, the minimum
	// version. Default: the system roots, TLS 1.2 or later.
	TLS TLSConfig `yaml:"tls"`

	// TLSClientConfig is the base of the TLS configuration of https
	// servers, under what TLS sets. Nil means a new one. Not read from
	// YAML.
	TLSClientConfig *tls.Config `yaml:"-"`
	// Logger receives server up/down, ejection and circuit events. Nil
	// discards them. Not read from YAML.
	Logger *slog.Logger `yaml:"-"`
	// Now is the clock for ejections, the circuit breaker and latency. Nil
	// means time.Now. Not read from YAML.
	Now func() time.Time `yaml:"-"`

	// stdTransport sends every request through http.Transport, never the
	// lean HTTP/1.1 client: the reference the tests compare it with.
	stdTransport bool
}

// ServerConfig is one origin server.
type ServerConfig struct {
	// URL is the server's scheme and authority, such as
	// "https://origin.example:8443". No path: requests keep theirs.
	// Required.
	URL string `yaml:"url"`
	// Weight is the server's share of requests among its peers, at most
	// 1000000. Default 1.
	Weight int `yaml:"weight"`
	// Backup servers take requests only when no primary is available.
	Backup bool `yaml:"backup"`
	// Host overrides the Host header sent to this server (and its health
	// checks). Default: the Host the client asked for.
	Host string `yaml:"host"`
}

// HealthConfig configures active health checks: each server is probed every
// interval; fall failures in a row mark it down and rise successes in a row
// bring it back.
type HealthConfig struct {
	// Enabled turns the checks on. Default false.
	Enabled bool `yaml:"enabled"`
	// Path is requested with GET, optionally with a query. Default
	// "/healthz".
	Path string `yaml:"path"`
	// Interval between probes of a server. Default 5s.
	Interval time.Duration `yaml:"interval"`
	// Timeout of one probe. Default 2s.
	Timeout time.Duration `yaml:"timeout"`
	// ExpectedStatus is the status of a healthy answer. Default 200.
	ExpectedStatus int `yaml:"expected_status"`
	// Fall is how many failed probes in a row mark a server down.
	// Default 3: one lost probe is noise, three are an outage.
	Fall int `yaml:"fall"`
	// Rise is how many good probes in a row bring it back. Default 2, so a
	// flapping server is not trusted on one answer.
	Rise int `yaml:"rise"`
}

// OutlierConfig configures passive outlier detection.
type OutlierConfig struct {
	// ConsecutiveErrors is how many failed requests in a row (connect
	// errors, resets, timeouts, 5xx) eject a server. Default 5; -1 turns
	// ejection off.
	ConsecutiveErrors int `yaml:"consecutive_errors"`
	// Ejection is how long an ejected server gets no requests (unless no
	// other is left). Default 30s.
	Ejection time.Duration `yaml:"ejection"`
}

// BreakerConfig configures the pool's circuit breaker: after max_failures
// failed requests in a row (every server tried), requests fail at once with
// KindUnavailable for open_for, then one trial request decides whether the
// circuit closes again. It keeps a struggling origin from being hammered
// while the edge serves stale copies.
type BreakerConfig struct {
	// MaxFailures opens the circuit. Default 0: no circuit breaker.
	MaxFailures int `yaml:"max_failures"`
	// OpenFor is how long the circuit stays open. Default 10s.
	OpenFor time.Duration `yaml:"open_for"`
}

// maxWeight keeps the sum of weights far from overflowing.
const maxWeight = 1_000_000

// WithDefaults returns a copy of c with every unset field at its default.
func (c PoolConfig) WithDefaults() PoolConfig {
	setDefault(&c.Name, "origin")
	c.Servers = append([]ServerConfig(nil), c.Servers...)
	for i := range c.Servers {
		setDefault(&c.Servers[i].Weight, 1)
	}
	setDefault(&c.Health.Path, "/healthz")
	setDefault(&c.Health.Interval, 5*time.Second)
	setDefault(&c.Health.Timeout, 2*time.Second)
	setDefault(&c.Health.ExpectedStatus, 200)
	setDefault(&c.Health.Fall, 3)
	setDefault(&c.Health.Rise, 2)
	setDefault(&c.Outlier.ConsecutiveErrors, 5)
	setDefault(&c.Outlier.Ejection, 30*time.Second)
	setDefault(&c.Breaker.OpenFor, 10*time.Second)
	setDefault(&c.ConnectTimeout, 2*time.Second)
	setDefault(&c.TryTimeout, 10*time.Second)
	setDefault(&c.Timeout, 30*time.Second)
	setDefault(&c.ReadTimeout, 30*time.Second)
	setDefault(&c.Retries, 1)
	setDefault(&c.MaxIdleConnsPerHost, 256)
	setDefault(&c.MaxConns, 256)
	setDefault(&c.MaxInflight, 512)
	setDefault(&c.MaxQueue, 1024)
	setDefault(&c.QueueTimeout, time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// Validate reports every mistake in c, each naming its field, such as
// "servers[1].url: missing scheme". Zero values are fine: they mean the
// default.
func (c PoolConfig) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if len(c.Servers) == 0 {
		bad("servers", "empty")
	}
	seen := map[string]int{}
	primaries := 0
	for i, s := range c.Servers {
		field := fmt.Sprintf("servers[%d]", i)
		if err := checkServerURL(s.URL); err != nil {
			bad(field+".url", "%v", err)
		} else if j, dup := seen[strings.ToLower(s.URL)]; dup {
			bad(field+".url", "same as servers[%d]", j)
		} else {
			seen[strings.ToLower(s.URL)] = i
		}
		if s.Weight < 0 {
			bad(field+".weight", "negative (%d)", s.Weight)
		} else if s.Weight > maxWeight {
			bad(field+".weight", "%d above %d", s.Weight, maxWeight)
		}
		if !validHeaderValue(s.Host) || strings.ContainsAny(s.Host, " \t/") {
			bad(field+".host", "%q is not a host name", s.Host)
		}
		if !s.Backup {
			primaries++
		}
	}
	if len(c.Servers) > 0 && primaries == 0 {
		bad("servers", "every server is a backup; at least one must be primary")
	}

	h := c.Health
	if h.Path != "" {
		if _, err := url.ParseRequestURI(h.Path); err != nil || !strings.HasPrefix(h.Path, "/") ||
			strings.ContainsAny(h.Path, " #") || !validHeaderValue(h.Path) {
			bad("health.path", "%q: want an absolute path such as /healthz (a query is allowed)", h.Path)
		}
	}
	nonNegative(bad, "health.interval", h.Interval)
	nonNegative(bad, "health.timeout", h.Timeout)
	if h.ExpectedStatus != 0 && (h.ExpectedStatus < 100 || h.ExpectedStatus > 599) {
		bad("health.expected_status", "%d is not an HTTP status", h.ExpectedStatus)
	}
	nonNegative(bad, "health.fall", h.Fall)
	nonNegative(bad, "health.rise", h.Rise)

	if c.Outlier.ConsecutiveErrors < -1 {
		bad("outlier.consecutive_errors", "%d: want a count, or -1 for off", c.Outlier.ConsecutiveErrors)
	}
	nonNegative(bad, "outlier.ejection", c.Outlier.Ejection)
	nonNegative(bad, "circuit_breaker.max_failures", c.Breaker.MaxFailures)
	nonNegative(bad, "circuit_breaker.open_for", c.Breaker.OpenFor)
	nonNegative(bad, "connect_timeout", c.ConnectTimeout)
	nonNegative(bad, "try_timeout", c.TryTimeout)
	nonNegative(bad, "timeout", c.Timeout)
	nonNegative(bad, "read_timeout", c.ReadTimeout)
	if c.Retries < -1 {
		bad("retries", "%d: want a count, or -1 for none", c.Retries)
	}
	nonNegative(bad, "max_idle_conns_per_host", c.MaxIdleConnsPerHost)
	countOrOff(bad, "max_conns", c.MaxConns, "no cap")
	countOrOff(bad, "max_inflight", c.MaxInflight, "no cap")
	countOrOff(bad, "max_queue", c.MaxQueue, "no queue")
	nonNegative(bad, "queue_timeout", c.QueueTimeout)
	errs = append(errs, c.TLS.validate("tls")...)
	return errors.Join(errs...)
}

func nonNegative[T int | time.Duration](bad func(string, string, ...any), field string, v T) {
	if v < 0 {
		bad(field, "negative (%v)", v)
	}
}

// countOrOff accepts a count, 0 for the default or -1 for off.
func countOrOff(bad func(string, string, ...any), field string, v int, off string) {
	if v < -1 {
		bad(field, "%d: want a count, or -1 for %s", v, off)
	}
}

// capOf is the limit a count-or-off field stands for once defaults are in.
func capOf(v int) int {
	if v < 0 {
		return unlimited
	}
	return v
}

// checkServerURL accepts "http(s)://host[:port]" with at most a "/" path.
func checkServerURL(raw string) error {
	if raw == "" {
		return errors.New("missing")
	}
	if !strings.Contains(raw, "://") {
		return fmt.Errorf("missing scheme in %q (want http:// or https://)", raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q: %w", raw, errors.Unwrap(err))
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("scheme %q not supported (want http or https)", u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("missing host in %q", raw)
	case u.User != nil:
		return fmt.Errorf("user info not supported in %q", raw)
	case u.Path != "" && u.Path != "/":
		return fmt.Errorf("path %q not supported: requests keep their own", u.Path)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return fmt.Errorf("query or fragment not supported in %q", raw)
	}
	if p := u.Port(); p == "" && strings.HasSuffix(u.Host, ":") {
		return fmt.Errorf("empty port in %q", raw)
	} else if n, err := strconv.Atoi(p); p != "" && (err != nil || n < 1 || n > 65535) {
		return fmt.Errorf("port %s out of range in %q", p, raw)
	}
	return nil
}
