package origin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Pool is the upstream side of a site: an [http.RoundTripper] that sends each
// request to one of the origin servers, chosen by smooth weighted round robin
// among the available primaries (backups only when no primary is available,
// and any server rather than none), and retries idempotent requests on
// another server when a try fails before the response headers.
//
// A server is available when active health checks (if enabled) have not
// marked it down and passive outlier detection has not ejected it. Errors
// are [*Error] values whose Kind tells timeouts from other failures.
//
// Each server has caps of its own: at most max_conns connections and
// max_inflight requests in flight (see [PoolConfig.MaxInflight]). A request
// that finds a server at its cap waits in that server's queue, for at most
// queue_timeout over all its tries, and then fails with [KindOverloaded];
// a retry on another server takes a slot there too, so no path around the
// caps exists. Health checks have connections of their own, outside
// max_conns, so that a pool at its cap does not fail its own probes.
//
// A Pool is a prometheus.Collector of its own metrics. Close stops its
// health checks.
type Pool struct {
	cfg       PoolConfig // defaults filled in
	log       *slog.Logger
	now       func() time.Time
	transport *http.Transport
	probes    *http.Transport // health checks: outside the connection cap
	servers   []*server
	metrics   *poolMetrics
	conns     *connCounter // the request transports' open connections, by address
	// plain is true when every server is plain http:// and the lean
	// client (h1client.go) sends the plain requests; the Transport sends
	// the others.
	plain bool

	mu      sync.Mutex // guards the mutable fields of servers and breaker
	breaker breaker

	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

var _ http.RoundTripper = (*Pool)(nil)

// server is one origin server and its state.
type server struct {
	idx  int
	cfg  ServerConfig
	url  *url.URL
	name string // URL as configured: the label in logs and metrics
	addr string // host:port its connections dial (the URL's, default port added)

	slots *slots // the cap on requests in flight; its own lock

	// h1 is the lean client's idle connections to addr, shared by the
	// servers of that address; nil unless the pool is plain.
	h1 *h1Idle

	// transport and probes are the pool's, or the server's own when it
	// is verified under a TLS server name of its own.
	transport, probes *http.Transport

	// Guarded by Pool.mu.
	healthy      bool      // per active health checks
	probeFails   int       // failed probes in a row
	probeOKs     int       // good probes in a row
	errors       int       // failed requests in a row (passive)
	failures     uint64    // failed requests since the pool started
	lastFailure  time.Time // of the last failed request or health check
	lastError    string    // why it failed
	ejectedUntil time.Time // zero unless ejected
	current      int       // smooth weighted round robin state

	metrics atomic.Pointer[serverMetrics] // nil until its first 200 (see poolMetrics.observe)
}

func (s *server) available(now time.Time) bool {
	return s.healthy && !now.Before(s.ejectedUntil)
}

// breaker is the pool's circuit breaker state.
type breaker struct {
	failures  int       // failed requests in a row
	openUntil time.Time // zero while closed
	trial     bool      // a half-open trial request is under way
}

// ServerState is a snapshot of one server, for status pages and metrics.
type ServerState struct {
	// URL is the server's URL as configured.
	URL string
	// Weight is its configured weight.
	Weight int
	// Backup is true for a backup server.
	Backup bool
	// Healthy is false while active health checks have it down.
	Healthy bool
	// EjectedUntil is when its passive ejection ends; zero if not ejected.
	EjectedUntil time.Time
	// ConsecutiveFailures counts its failed requests in a row.
	ConsecutiveFailures int
	// Available is true when it gets requests in the normal course:
	// healthy and not ejected.
	Available bool
	// InFlight counts its requests in flight: sent, or about to be, and
	// their response bodies not yet closed.
	InFlight int
	// Queued counts the requests waiting for one of its slots.
	Queued int
	// MaxInflight is its cap on requests in flight now: max_inflight, or
	// max_conns when that is lower and the server speaks HTTP/1.1. -1
	// means no cap.
	MaxInflight int
	// Conns counts the connections open to its address now, idle ones
	// included (health checks' apart). Servers of one address share
	// them, and the count.
	Conns int
	// Failures counts its failed requests (transport errors, timeouts
	// and 5xx answers) since the pool started.
	Failures uint64
	// LastFailure is when its last request or health check failed, and
	// LastError why; zero and "" if none has.
	LastFailure time.Time
	LastError   string
}

// PoolState is a snapshot of a pool, for status pages.
type PoolState struct {
	// Name is the pool's name (its metrics label).
	Name string
	// HealthChecks reports whether active health checks run: without
	// them every server counts as healthy.
	HealthChecks bool
	// CircuitOpenUntil is when the open circuit breaker lets a trial
	// request through (it stays open until one succeeds, as the
	// meridian_origin_circuit_open metric says); zero while it is closed.
	CircuitOpenUntil time.Time
	// Servers are the servers' states, in configured order.
	Servers []ServerState
}

// NewPool validates cfg and returns a pool of its servers, all assumed
// healthy until checked. With health checks enabled it starts probing in
// the background; Close stops it.
func NewPool(cfg PoolConfig) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("origin pool %s: %w", cfg.Name, err)
	}
	cfg = cfg.WithDefaults()
	p := &Pool{
		cfg:  cfg,
		log:  cfg.Logger.With("pool", cfg.Name),
		now:  cfg.Now,
		done: make(chan struct{}),
	}
	for i, sc := range cfg.Servers {
		u, err := url.Parse(sc.URL)
		if err != nil { // Validate parsed it already
			return nil, fmt.Errorf("origin pool %s: servers[%d].url: %w", cfg.Name, i, err)
		}
		h2Limit := capOf(cfg.MaxInflight)
		p.servers = append(p.servers, &server{idx: i, cfg: sc, url: u, name: sc.URL, addr: dialAddr(u), healthy: true,
			slots: newSlots(min(h2Limit, capOf(cfg.MaxConns)), h2Limit, max(cfg.MaxQueue, 0))})
	}
	tlsConf := cfg.TLSClientConfig
	if !cfg.TLS.isZero() {
		var err error
		if tlsConf, err = cfg.TLS.clientConfig(cfg.TLSClientConfig); err != nil {
			return nil, fmt.Errorf("origin pool %s: %w", cfg.Name, err)
		}
	}
	if tlsConf != nil && tlsConf.InsecureSkipVerify {
		p.log.Warn("origin TLS certificates are not verified (tls.insecure_skip_verify): for staging only")
	}
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	p.conns = &connCounter{open: map[string]int{}}
	p.transport = &http.Transport{
		Proxy:                 nil, // an origin pool never goes through $HTTP_PROXY
		DialContext:           p.conns.dial(dialer.DialContext),
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   cfg.ConnectTimeout,
		ForceAttemptHTTP2:     true, // HTTP/2 to https origins that offer it, despite the custom dialer
		MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // a cache stores what the origin sent, encoded or not
		MaxConnsPerHost:       max(cfg.MaxConns, 0),
	}
	p.probes = p.transport.Clone()
	p.probes.DialContext = dialer.DialContext // not counted: Conns are the requests'
	p.probes.MaxConnsPerHost = 0
	p.probes.MaxIdleConnsPerHost = 1
	for _, s := range p.servers {
		s.transport, s.probes = p.transport, p.probes
		if name := cfg.TLS.serverName(s.cfg, s.url.Hostname()); name != "" && s.url.Scheme == "https" {
			// A server verified under a name of its own needs a
			// transport of its own: the name is the TLS config's.
			conf := &tls.Config{}
			if tlsConf != nil {
				conf = tlsConf.Clone()
			}
			conf.ServerName = name
			s.transport = p.transport.Clone()
			s.transport.TLSClientConfig = conf
			s.probes = p.probes.Clone()
			s.probes.TLSClientConfig = conf
		}
	}
	p.plain = !cfg.stdTransport
	idle := map[string]*h1Idle{}
	for _, s := range p.servers {
		if s.url.Scheme != "http" || !validPlainHost(s.cfg.Host) {
			p.plain = false
		}
		if idle[s.addr] == nil {
			idle[s.addr] = newH1Idle(s.addr, cfg.MaxIdleConnsPerHost)
		}
		s.h1 = idle[s.addr]
	}
	if !p.plain {
		for _, s := range p.servers {
			s.h1 = nil
		}
	} else {
		p.conns.max = max(cfg.MaxConns, 0)
		p.conns.evict = func(addr string) {
			if l := idle[addr]; l != nil {
				l.closeIdle(false)
			}
			p.transport.CloseIdleConnections()
		}
	}
	p.metrics = newPoolMetrics(cfg.Name)

	ctx, stop := context.WithCancel(context.Background())
	p.stop = stop
	if cfg.Health.Enabled {
		go p.healthLoop(ctx)
	} else {
		close(p.done)
	}
	return p, nil
}

// Close stops the health checks, waits for them to end and closes idle
// connections. Requests under way are not interrupted. Close is safe to call
// more than once.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() {
		p.stop()
		<-p.done
		p.transport.CloseIdleConnections()
		p.probes.CloseIdleConnections()
		for _, s := range p.servers {
			s.transport.CloseIdleConnections()
			s.probes.CloseIdleConnections()
			if s.h1 != nil {
				s.h1.closeIdle(true)
			}
		}
	})
	return nil
}

// Servers returns a snapshot of every server's state, in configured order.
func (p *Pool) Servers() []ServerState {
	out := make([]ServerState, len(p.servers))
	for i, s := range p.servers { // before p.mu: the locks never nest
		out[i].InFlight, out[i].Queued, out[i].MaxInflight = s.slots.state()
		if out[i].MaxInflight == unlimited {
			out[i].MaxInflight = -1
		}
	}
	for i, s := range p.servers { // the counter's lock, before p.mu too
		out[i].Conns = p.conns.count(s.addr)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for i, s := range p.servers {
		st := ServerState{
			URL:                 s.name,
			Weight:              s.cfg.Weight,
			Backup:              s.cfg.Backup,
			Healthy:             s.healthy,
			ConsecutiveFailures: s.errors,
			Available:           s.available(now),
			InFlight:            out[i].InFlight,
			Queued:              out[i].Queued,
			MaxInflight:         out[i].MaxInflight,
			Conns:               out[i].Conns,
			Failures:            s.failures,
			LastFailure:         s.lastFailure,
			LastError:           s.lastError,
		}
		if now.Before(s.ejectedUntil) {
			st.EjectedUntil = s.ejectedUntil
		}
		out[i] = st
	}
	return out
}

// State returns a snapshot of the pool: its name, its circuit breaker and
// every server's state.
func (p *Pool) State() PoolState {
	st := PoolState{Name: p.cfg.Name, HealthChecks: p.cfg.Health.Enabled, Servers: p.Servers()}
	p.mu.Lock()
	st.CircuitOpenUntil = p.breaker.openUntil
	p.mu.Unlock()
	return st
}

// RoundTrip sends req to a server of the pool and returns its response. The
// request's path and query are kept byte for byte and so is its Host, unless
// the server's config overrides it. RoundTrip closes req.Body, even on error.
// Failed tries are retried on another server when req is idempotent (GET,
// HEAD, OPTIONS, or with an Idempotency-Key) or was never sent, and its body
// can be replayed (none, or GetBody set). A server at its max_inflight cap
// makes the request wait for a slot; one whose queue is full, or that frees
// no slot in time, counts as a try never sent. The response body must be
// closed: that gives its slot back. Reading it fails with an [*Error] if the
// connection breaks or the overall timeout passes.
func (p *Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	if !p.allow() {
		closeBody(req)
		p.metrics.rejected.Inc()
		return nil, &Error{Kind: KindUnavailable, Pool: p.cfg.Name, Err: errCircuitOpen}
	}
	if p.plain && plainRequest(req) {
		if host, target, ok := plainTarget(req); ok {
			return p.roundTripPlain(req, host, target)
		}
	}
	// The pool's context bounds the tries (timeout) and then each wait
	// for the body (read_timeout), never the body as a whole.
	ctx, cancel := context.WithCancelCause(req.Context())
	headers := time.AfterFunc(p.cfg.Timeout, func() { cancel(errPoolTimeout) })
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	idempotent := isIdempotent(req)
	tried := make([]bool, len(p.servers))
	queueLeft := p.cfg.QueueTimeout // for slots, over every try
	bodyUsed := false               // req.Body went to a try
	var last *Error
	for attempt := 0; attempt <= max(p.cfg.Retries, 0); attempt++ {
		s := p.pick(tried)
		if s == nil {
			break
		}
		tried[s.idx] = true
		if attempt > 0 {
			p.metrics.retries.Inc()
		}
		waited, err := s.slots.acquire(ctx, queueLeft)
		queueLeft -= waited
		if err != nil {
			last = p.refused(req.Context(), s, err, err != errQueueTimeout && context.Cause(ctx) == errPoolTimeout)
			last.Tries = attempt + 1
			if last.Kind == KindOverloaded && ctx.Err() == nil {
				continue // never sent: another server may have a slot
			}
			break
		}
		body := req.Body
		if bodyUsed && req.GetBody != nil {
			b, err := req.GetBody()
			if err != nil {
				s.slots.release()
				last.Err = fmt.Errorf("%w (no retry: GetBody: %v)", last.Err, err)
				break
			}
			body = b
		}
		bodyUsed = true
		tryTimeout := p.cfg.TryTimeout
		if !idempotent || !replayable || !p.canRetry(attempt, tried) {
			tryTimeout = 0 // no server could take over: only timeout bounds it
		}
		resp, tryCancel, terr := p.try(ctx, req, s, body, tryTimeout)
		if terr == nil && !headers.Stop() {
			// The timeout passed just as the headers came.
			resp.Body.Close()
			tryCancel()
			terr = &tryError{Error: &Error{Kind: KindTimeout, Pool: p.cfg.Name, Server: s.name, Err: errPoolTimeout}, sent: true}
		}
		if terr == nil {
			p.settle(resp.StatusCode < 500)
			s.slots.setHTTP2(isHTTP2(resp))
			release := func() { tryCancel(); cancel(nil); s.slots.release() }
			if rwc, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
				// An upgraded connection: the caller's to read and write
				// for as long as it lasts (no read_timeout: the caller
				// bounds its idleness), holding its slot until closed.
				resp.Body = &upgradedBody{ReadWriteCloser: rwc, release: release}
			} else if resp.Body == http.NoBody {
				release()
			} else {
				pb := &poolBody{rc: resp.Body, p: p, parent: req.Context(), ctx: ctx, release: release, s: s,
					timeout: p.cfg.ReadTimeout, epoch: time.Now()}
				// Made far off, then set: checkIdle reads pb.idle.
				pb.idle = time.AfterFunc(math.MaxInt64, func() { pb.checkIdle(cancel) })
				pb.idle.Reset(p.cfg.ReadTimeout)
				resp.Body = pb
			}
			return resp, nil
		}
		s.slots.release()
		terr.Tries = attempt + 1
		last = terr.Error
		if ctx.Err() != nil || !replayable || (!idempotent && terr.sent) {
			break
		}
	}
	headers.Stop()
	cancel(nil)
	if !bodyUsed {
		closeBody(req)
	}
	if last == nil { // unreachable: a pool has a server
		last = &Error{Kind: KindUnavailable, Pool: p.cfg.Name, Err: errors.New("no server to try")}
	}
	p.settleErr(last.Kind)
	return nil, last
}

// refused makes the error of a request that got no slot of s: overloaded
// when the server's queue was full or its wait ran out (queue_timeout or,
// poolTimedOut, the pool's timeout), else the caller's (parent's) deadline
// or cancellation.
func (p *Pool) refused(parent context.Context, s *server, err error, poolTimedOut bool) *Error {
	kind := KindOverloaded
	switch {
	case err == errQueueFull:
		p.metrics.overloaded.WithLabelValues(s.name, "queue_full").Inc()
	case poolTimedOut:
		p.metrics.overloaded.WithLabelValues(s.name, "queue_timeout").Inc()
		err = fmt.Errorf("waiting for a slot: %w", errPoolTimeout)
	case err == errQueueTimeout:
		p.metrics.overloaded.WithLabelValues(s.name, "queue_timeout").Inc()
	case errors.Is(parent.Err(), context.DeadlineExceeded):
		kind = KindTimeout
		err = fmt.Errorf("waiting for a slot: %w", parent.Err())
	default:
		kind = KindCanceled
		err = fmt.Errorf("waiting for a slot: %w", context.Cause(parent))
	}
	return &Error{Kind: kind, Pool: p.cfg.Name, Server: s.name, Err: err}
}

// tryError is an Error plus whether the request reached the server.
type tryError struct {
	*Error
	sent bool
}

// canRetry reports whether a try that fails (the attempt-th, on a
// server now marked in tried) could be retried: retries are left and a
// server is untried. try_timeout is there to fail over, so a try that
// nothing could take over is bounded by the pool's timeout alone: one
// origin behind a site whose timeout is 60 s answers within 60 s, not
// within the default try_timeout.
func (p *Pool) canRetry(attempt int, tried []bool) bool {
	if attempt >= max(p.cfg.Retries, 0) {
		return false
	}
	for _, t := range tried {
		if !t {
			return true
		}
	}
	return false
}

// try sends req to s once, for at most tryTimeout (0: as long as ctx
// allows). On success the try's timer is stopped and the response is the
// caller's, who calls the returned func once done with the body; on
// error it is classified.
func (p *Pool) try(ctx context.Context, req *http.Request, s *server, body io.ReadCloser, tryTimeout time.Duration) (*http.Response, func(), *tryError) {
	tctx, tcancel := context.WithCancelCause(ctx)
	if tryTimeout <= 0 {
		tryTimeout = math.MaxInt64
	}
	timer := time.AfterFunc(tryTimeout, func() { tcancel(errTryTimeout) })
	var sent atomic.Bool
	trace := &httptrace.ClientTrace{WroteHeaders: func() { sent.Store(true) }}
	traced := tctx
	if ct := httptrace.ContextClientTrace(req.Context()); ct != nil && ct.Got1xxResponse != nil {
		// The caller takes 1xx answers: at most maxInformational. The
		// try's trace is the caller's with that count in front (a trace
		// composed on top could not refuse: the Transport sees the
		// caller's hook's result), in place of the caller's.
		own := *ct
		own.WroteHeaders = func() {
			sent.Store(true)
			if ct.WroteHeaders != nil {
				ct.WroteHeaders()
			}
		}
		var informational atomic.Int32
		own.Got1xxResponse = func(code int, h textproto.MIMEHeader) error {
			if informational.Add(1) > maxInformational {
				return errTooManyInformational
			}
			return ct.Got1xxResponse(code, h)
		}
		trace, traced = &own, withoutClientTrace{tctx}
	}

	// A shallow copy: the header is shared with req and every other try,
	// as a RoundTripper must not change it; only the URL differs.
	out := req.WithContext(httptrace.WithClientTrace(traced, trace))
	u := *req.URL
	out.URL = &u
	out.URL.Scheme = s.url.Scheme
	out.URL.Host = s.url.Host
	switch {
	case s.cfg.Host != "":
		out.Host = s.cfg.Host
	case req.Host == "":
		out.Host = req.URL.Host
	}
	out.RequestURI = ""
	out.Body = body
	if body == nil && req.Body != nil {
		out.Body = http.NoBody
	}

	start := p.now()
	resp, err := s.transport.RoundTrip(out)
	if err == nil && !timer.Stop() {
		// The try timed out just as the headers came: the body would fail.
		resp.Body.Close()
		err = context.Cause(tctx)
	}
	elapsed := p.now().Sub(start)
	if err != nil {
		timer.Stop()
		kind := classify(err, req.Context(), ctx, tctx)
		tcancel(nil)
		err = withCause(err, context.Cause(tctx))
		p.tryFailed(s, kind, err, elapsed)
		return nil, nil, &tryError{Error: &Error{Kind: kind, Pool: p.cfg.Name, Server: s.name, Err: err}, sent: sent.Load()}
	}
	p.tryAnswered(s, resp.StatusCode, elapsed)
	return resp, func() { tcancel(nil) }, nil
}

// tryFailed counts a try of s that got no response, after elapsed, and
// holds it against s unless the caller canceled it.
func (p *Pool) tryFailed(s *server, kind Kind, err error, elapsed time.Duration) {
	p.metrics.observe(s, 0, elapsed)
	p.metrics.errors.WithLabelValues(s.name, kind.String()).Inc()
	if kind != KindCanceled {
		p.serverResult(s, false, err)
	}
}

// tryAnswered counts a try of s answered with status after elapsed: a
// 5xx is held against s, anything else is for it.
func (p *Pool) tryAnswered(s *server, status int, elapsed time.Duration) {
	p.metrics.observe(s, status, elapsed)
	if status >= 500 {
		p.serverResult(s, false, fmt.Errorf("status %d", status))
	} else {
		p.serverResult(s, true, nil)
	}
}

// withoutClientTrace is a context that hides its parent's client trace
// (httptrace's key is its own: the trace is recognised by its type), so
// that a trace made from it takes the parent's place instead of being
// composed with it.
type withoutClientTrace struct{ context.Context }

func (c withoutClientTrace) Value(key any) any {
	v := c.Context.Value(key)
	if _, ok := v.(*httptrace.ClientTrace); ok {
		return nil
	}
	return v
}

// withCause makes sure err says which of the pool's timeouts ended it.
func withCause(err, cause error) error {
	if (cause == errTryTimeout || cause == errPoolTimeout || cause == errReadTimeout) && !errors.Is(err, cause) {
		return fmt.Errorf("%w: %v", cause, err)
	}
	return err
}

// poolBody is a response body that releases the request's contexts on Close
// and turns read errors into *Error values, counted against the server.
// upgradedBody is the connection of a 101 (Switching Protocols) response:
// readable and writable, and its server's slot is released when it is
// closed.
type upgradedBody struct {
	io.ReadWriteCloser
	once    sync.Once
	release func()
}

func (b *upgradedBody) Close() error {
	err := b.ReadWriteCloser.Close()
	b.once.Do(b.release)
	return err
}

type poolBody struct {
	rc      io.ReadCloser
	p       *Pool
	parent  context.Context // the caller's
	ctx     context.Context // the pool's, canceled by the idle timer
	release func()
	s       *server
	err     *Error // the first read error, returned again after it
	// idle cancels ctx when one Read waits longer than timeout: it
	// runs every timeout while the body is open, and looks at the Read
	// in progress (waiting, when it began, on the monotonic clock since
	// epoch; 0 when no Read waits). Two atomic stores per Read, where
	// resetting and stopping the timer around each took the runtime's
	// timer locks (four timer operations per 1 KiB miss).
	idle    *time.Timer
	timeout time.Duration
	epoch   time.Time
	waiting atomic.Int64
	closed  atomic.Bool // release runs once, however often Close is called
}

// checkIdle is the idle timer's: it cancels the pool's context when the
// Read in progress has waited timeout, else runs again when the one in
// progress (or the next) would have.
func (b *poolBody) checkIdle(cancel context.CancelCauseFunc) {
	if b.closed.Load() {
		return
	}
	next := b.timeout
	if since := b.waiting.Load(); since != 0 {
		waited := time.Since(b.epoch) - time.Duration(since)
		if waited >= b.timeout {
			cancel(errReadTimeout)
			return
		}
		next = b.timeout - waited
	}
	b.idle.Reset(next)
}

// Buffered reports whether the rest of the body is in memory already,
// so that reading it will not wait (see h1Body.Buffered); false for a
// body that cannot tell.
func (b *poolBody) Buffered() bool {
	bb, ok := b.rc.(interface{ Buffered() bool })
	return ok && b.err == nil && bb.Buffered()
}

func (b *poolBody) Read(buf []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	b.waiting.Store(max(int64(time.Since(b.epoch)), 1))
	n, err := b.rc.Read(buf)
	b.waiting.Store(0)
	if err == nil || err == io.EOF {
		return n, err
	}
	kind := KindTruncated
	switch {
	case context.Cause(b.ctx) == errReadTimeout:
		kind = KindTimeout
	case errors.Is(b.parent.Err(), context.DeadlineExceeded):
		kind = KindTimeout
	case b.parent.Err() != nil:
		kind = KindCanceled
	}
	b.p.metrics.errors.WithLabelValues(b.s.name, kind.String()).Inc()
	if kind != KindCanceled {
		b.p.serverResult(b.s, false, err)
	}
	b.err = &Error{Kind: kind, Pool: b.p.cfg.Name, Server: b.s.name, Tries: 1, Err: withCause(err, context.Cause(b.ctx))}
	return n, b.err
}

func (b *poolBody) Close() error {
	b.idle.Stop()
	err := b.rc.Close()
	if b.closed.CompareAndSwap(false, true) {
		b.release()
	}
	return err
}

// pick chooses the next server among those not yet tried: available
// primaries, else available backups, else (failing open) unavailable
// primaries, else unavailable backups; smooth weighted round robin within
// the first non-empty tier. Nil means every server was tried.
func (p *Pool) pick(tried []bool) *server {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for tier := range 4 {
		wantAvailable, wantBackup := tier < 2, tier%2 == 1
		var best *server
		total := 0
		for _, s := range p.servers {
			if tried[s.idx] || s.cfg.Backup != wantBackup || s.available(now) != wantAvailable {
				continue
			}
			s.current += s.cfg.Weight
			total += s.cfg.Weight
			if best == nil || s.current > best.current {
				best = s
			}
		}
		if best != nil {
			best.current -= total
			return best
		}
	}
	return nil
}

// serverResult feeds passive outlier detection with one request's outcome.
func (p *Pool) serverResult(s *server, ok bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ok {
		s.errors = 0
		return
	}
	s.errors++
	s.failures++
	s.failed(p.now(), err)
	limit := p.cfg.Outlier.ConsecutiveErrors
	if limit > 0 && s.errors >= limit {
		now := p.now()
		if now.Before(s.ejectedUntil) {
			return // already out
		}
		s.ejectedUntil = now.Add(p.cfg.Outlier.Ejection)
		s.errors = 0
		p.log.Warn("origin server ejected", "server", s.name, "failures", limit,
			"for", p.cfg.Outlier.Ejection, "err", err)
	}
}

// allow reports whether the circuit breaker lets a request through.
func (p *Pool) allow() bool {
	if p.cfg.Breaker.MaxFailures <= 0 {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b := &p.breaker
	switch {
	case b.openUntil.IsZero():
		return true
	case p.now().Before(b.openUntil), b.trial:
		return false
	}
	b.trial = true // half-open: this request decides
	return true
}

// settleErr records a failed request with the breaker; a caller's
// cancellation says nothing about the origin, nor does the pool's own cap.
func (p *Pool) settleErr(k Kind) {
	if k == KindCanceled || k == KindOverloaded {
		p.settleNeutral()
		return
	}
	p.settle(false)
}

// settle records a request's outcome with the circuit breaker.
func (p *Pool) settle(ok bool) {
	if p.cfg.Breaker.MaxFailures <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b := &p.breaker
	wasOpen := !b.openUntil.IsZero()
	if ok {
		b.failures, b.trial, b.openUntil = 0, false, time.Time{}
		if wasOpen {
			p.log.Info("origin circuit closed")
		}
		return
	}
	b.failures++
	if b.trial || (!wasOpen && b.failures >= p.cfg.Breaker.MaxFailures) {
		b.trial = false
		b.openUntil = p.now().Add(p.cfg.Breaker.OpenFor)
		p.log.Warn("origin circuit open", "failures", b.failures, "for", p.cfg.Breaker.OpenFor)
	}
}

// settleNeutral ends a half-open trial that told nothing.
func (p *Pool) settleNeutral() {
	if p.cfg.Breaker.MaxFailures <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.breaker.trial = false
}

// isHTTP2 reports whether resp came over HTTP/2, as negotiated with TLS
// (ALPN): an HTTP/1 server's status line may say HTTP/2.0 too.
func isHTTP2(resp *http.Response) bool {
	return resp.ProtoMajor == 2 && resp.TLS != nil && resp.TLS.NegotiatedProtocol == "h2"
}

func isIdempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	_, ok := req.Header["Idempotency-Key"]
	_, xok := req.Header["X-Idempotency-Key"]
	return ok || xok
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
