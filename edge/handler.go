// Package edge is Meridian's edge node's request semantics: an RFC 9111
// shared cache in front of the configured sites' origins, with request
// coalescing that streams a fill to every waiter as it arrives, stale
// serving (RFC 5861), Cache-Status (RFC 9211), purge, admin and metrics.
//
// The front door is [New], which builds a [Handler] from a [Config];
// package edge/listen puts it on the configured listeners (HTTP/1.1,
// HTTP/2, HTTP/3), and edge/node assembles a whole node. Package edge
// never imports the listeners. A request's path through the handler
// is: route by Host → the site's rules, if it has any (redirects, geo
// access, signed URLs, rewrites, request headers; its response header
// rules wrap the writer: siterules.go, edge/rules) → key → local lookup → (fresh: serve) / (stale within
// stale-while-revalidate: serve and refresh in the background) / (miss or
// stale: one coalesced fill upstream, its body streamed to every waiter) →
// degrade to a stale copy when upstream fails. On a site with slice_bytes
// a GET or HEAD is answered from slices of the object, each an internal
// subrequest through that same path with its own key (slice.go). With a
// disk tier, a storable body above max_object_bytes is filled to disk as
// it arrives, its waiters reading the file as it grows (fill_disk.go: why
// the file rather than the stream, and what any failure leaves).
//
// Stored responses live in package edge/store (its byte layout, the
// byte budget and its eviction); this package decides what is stored and
// when a stored response may be reused (edge/policy).
//
// Every front books its answers in one place: a front that writes hits
// itself (the fast HTTP/1.1 front) gets them from [Handler.LookupHit] and
// reports them with [Handler.Delivered], which books them as ServeHTTP's
// paths book theirs (hit.go).
//
// Concurrency: Handler.mu guards the flights, hit-for-miss and peer-fill
// tables; a flight's mu guards its parties and result; a body's lock its
// bytes. The order is Handler.mu → flight.mu → body's lock (the fill, when
// it stores an entry, holds the body's and takes Handler.mu, never a
// flight's). The store's locks (package store) come after all of these:
// an entry is stored under the body's lock, and nothing is called back
// under the store's. A flight's hintMu is a leaf: it is held only while a
// 1xx hint is written to the leader's client, under no other lock. No
// other network I/O happens under these locks; a fill to disk commits its
// file (sync, rename) under none of them. Closing and the start of
// background work (Handler.background) take no lock: one atomic word,
// Handler.life, says whether Close was called and counts the work
// running, so that nothing starts after Close. A sliced answer's lock
// (slicer.mu, its subrequests still attached to the client) is a leaf as
// well, and so are the lock of the handler's list of running fills
// (fillList.mu) and a fill context's (flightContext.mu): a fill context
// is ended under none of them, and what it runs then (the origin
// client's abort) takes no lock.
package edge

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridiancdn/meridian/edge/compress"
	"github.com/meridiancdn/meridian/edge/fill"
	"github.com/meridiancdn/meridian/edge/geoip"
	"github.com/meridiancdn/meridian/edge/limit"
	"github.com/meridiancdn/meridian/edge/policy"
	"github.com/meridiancdn/meridian/edge/rules"
	"github.com/meridiancdn/meridian/edge/store"
	"github.com/meridiancdn/meridian/edge/tracing"
	"github.com/meridiancdn/meridian/origin"
)

// Options are the hooks a Handler is built with. The zero value works.
type Options struct {
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Logger receives event logs. Nil means slog.Default().
	Logger *slog.Logger
	// AccessLog, when set, receives one line per answered request, from
	// every front (see AccessLog). Nil logs none.
	AccessLog *AccessLog
	// Tracer records a span per request and passes its context upstream
	// (see tracing.Tracer). Nil records none: a valid traceparent from
	// the client goes upstream as it came, and a request without one
	// gets a new trace context when it goes upstream.
	Tracer *tracing.Tracer
	// Registerer receives the edge's Prometheus collectors. Nil means they
	// are kept but not registered anywhere.
	Registerer prometheus.Registerer
	// Upstream returns the RoundTripper that fills a site's misses and
	// forwards its uncacheable requests; req.URL already points at the
	// site's origin. Nil means the site's origin pool (origin.Pool).
	Upstream func(SiteConfig) http.RoundTripper
	// WrapUpstream, when set, builds the path of each site's fills on top
	// of its origin (fill.Origin of Upstream): a region's peer fill (ask
	// the key's owner first), the failover regions and the origin shield
	// go here. Each fill is given its fill.Info as a parameter. It is
	// called for every site at New and at each Reload. Requests passed
	// through uncached go to the origin directly. Nil means fills go to
	// the origin as they are.
	WrapUpstream func(site SiteConfig, origin fill.Upstream) fill.Upstream
	// PurgeMethod, when set, answers a request with the PURGE method for a
	// configured site: see Admin.ServePurgeMethod (the admin purge token
	// is required). Nil answers PURGE with 405. A PURGE is never
	// forwarded to the origin.
	PurgeMethod http.Handler
}

// Handler is the edge cache's http.Handler. It is safe for concurrent use;
// Close stops its background refreshes.
type Handler struct {
	cfg       Config
	sites     atomic.Pointer[siteTable] // swapped by Reload
	cache     atomic.Pointer[CacheConfig]
	opt       Options
	store     *store.Store
	hot       *store.Store // short-lived copies of hot objects owned by a peer
	disk      *store.Disk  // the disk tier under store; nil without one
	now       func() time.Time
	log       *slog.Logger
	gen       atomic.Uint64 // vary index generations (see New: with a disk tier they start from the time)
	via       string        // this cache's Via entry
	trusted   proxyList     // server.trusted_proxies
	metrics   *metrics
	purges    recentPurges
	bans      banList
	purgeCfg  atomic.Pointer[PurgeConfig]
	accessLog *AccessLog
	tracer    *tracing.Tracer // nil: propagation only
	dates     dateCache       // hits' Date values kept as numbers, formatted (dates.go)
	stamps    stampCache      // hits' Age and Cache-Status, per recently hit entry (hit.go)

	upgraded atomic.Int64 // upgraded connections open (server.max_upgraded)
	drain    upgradeDrain // closes upgraded connections when the edge drains

	inflight *byteBudget  // bodies of fills in progress
	failures *failedFills // keys whose fills failed recently

	mu        sync.Mutex
	flights   map[string]*flight
	hfm       *simplelru.LRU[string, time.Time] // hit-for-miss: key → until
	peerFills *simplelru.LRU[string, int]       // key → fills from its owner peer

	// flightsEnded counts the shared flights unregistered so far; it is
	// written under mu and read without it (see flightEpoch).
	flightsEnded atomic.Uint64

	ctx    context.Context // canceled by Close: background work waits on it
	cancel context.CancelFunc
	// fills lists the fills whose context has not ended, for Close to
	// end them (a fill's context is not a child of ctx: see
	// flightContext).
	fills fillList
	// firstByteTimers holds stopped first-byte timers for fills to
	// re-arm (see firstByteTimer).
	firstByteTimers sync.Pool
	// draining ends when the node is about to stop: requests still
	// waiting on upstream are answered at once (see StopWaiting).
	draining    context.Context
	stopWaiting context.CancelFunc
	// steerAway makes the public /healthz fail (SetDraining).
	steerAway atomic.Bool
	// life is the handler's state for background work: closedBit once
	// Close has been called, and below it the pieces of background work
	// admitted and not yet done. background admits work with one
	// compare-and-swap, only while closedBit is clear, so that nothing
	// starts after Close; the piece that brings the count to zero after
	// Close closes lifeEnded, which Close waits for. (A mutex and a
	// WaitGroup did this with a lock per miss.)
	life      atomic.Int64
	lifeEnded chan struct{}
	// jobs hands background work to an idle worker (see background);
	// workers counts the workers, idle or not, for Close to wait for.
	jobs    chan func()
	workers sync.WaitGroup
	// workerIdle is how long a worker waits for work (see worker); 0
	// means the constant workerIdle (tests shorten it).
	workerIdle time.Duration
}

// site is one configured site, ready to serve.
type site struct {
	cfg      SiteConfig
	origin   *url.URL
	upstream http.RoundTripper // the origin: passes go here
	fills    fill.Upstream     // the path of fills: upstream, wrapped (Options.WrapUpstream)
	opts     policy.Options
	proxy    *httputil.ReverseProxy
	trusted  proxyList      // the handler's trusted proxies, for the scheme
	limiter  *limit.Limiter // the site's per-client limits; nil: none
	rules    *rules.Set     // the site's rules (siterules.go); nil: none
	// altSvcField is the site's own Alt-Svc value (alt_svc neither
	// auto nor off), nil otherwise (altsvc.go).
	altSvcField []string
	coder       *compress.Coder // the site's compression; nil: off
	counters    *siteCounters   // its request metrics
	// purgeToken is the site's purge token (purge_token or the content
	// of purge_token_file); empty: none.
	purgeToken string
}

// New builds a Handler from a validated config (see Config.WithDefaults and
// Config.Validate).
func New(cfg Config, opt Options) (*Handler, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &Handler{
		stamps:  stampCache{seed: maphash.MakeSeed()},
		cfg:     cfg,
		store:   store.New(cfg.Cache.MaxBytes),
		hot:     store.New(cfg.Cache.HotBytes),
		now:     opt.Now,
		log:     opt.Logger,
		flights: map[string]*flight{},
		via:     "1.1 " + cfg.Name,

		inflight: newByteBudget(cfg.Cache.MaxInflightBytes),
		failures: newFailedFills(),
	}
	h.trusted, _ = parseProxies(cfg.Server.TrustedProxies) // validated
	if h.now == nil {
		h.now = time.Now
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if dc := cfg.Cache.Disk; dc.Path != "" {
		// Variants left on disk by an earlier process never meet a new
		// vary index's.
		h.gen.Store(uint64(time.Now().UnixNano()))
		d, err := store.OpenDisk(store.DiskOptions{Dir: dc.Path, MaxBytes: dc.MaxBytes, Logger: h.log.With("component", "disk"), Now: h.now})
		if err != nil {
			return nil, fmt.Errorf("cache.disk: %w", err)
		}
		h.disk = d
		h.store.OnEvict(func(e *store.Entry) { d.Admit(e) })
	}
	h.metrics = newMetrics(opt.Registerer, h)
	h.hfm, _ = simplelru.NewLRU[string, time.Time](1<<16, nil)
	h.peerFills, _ = simplelru.NewLRU[string, int](1<<16, nil)
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.jobs = make(chan func())
	h.lifeEnded = make(chan struct{})
	h.draining, h.stopWaiting = context.WithCancel(context.Background())
	h.opt = opt
	h.accessLog = opt.AccessLog
	h.tracer = opt.Tracer
	h.cache.Store(&cfg.Cache)
	h.purgeCfg.Store(&cfg.Purge)
	sites, err := h.buildSites(cfg)
	if err != nil {
		h.Close()
		return nil, err
	}
	h.sites.Store(sites)
	return h, nil
}

// siteTable is the routing table of one configuration, swapped whole on
// reload; in-flight requests keep the table they started with.
type siteTable struct {
	byHost map[string]*site
	pools  []*origin.Pool
}

func (h *Handler) buildSites(cfg Config) (*siteTable, error) {
	t := &siteTable{byHost: map[string]*site{}}
	dbs := map[string]*geoip.DB{} // GeoIP databases of geo rules, by file
	for i, sc := range cfg.Sites {
		token, err := sc.readPurgeToken()
		if err != nil {
			t.close()
			return nil, fmt.Errorf("sites[%d].%w", i, err)
		}
		u, _ := url.Parse(sc.Pool.Servers[0].URL) // validated; the pool picks the server
		st := &site{
			cfg:        sc,
			origin:     u,
			trusted:    h.trusted,
			purgeToken: token,
			counters:   h.metrics.site(siteLabel(sc)),
			opts: policy.Options{
				GraceWhileRevalidate: sc.Grace.WhileRevalidate,
				GraceIfError:         sc.Grace.IfError,
				StoreUnvalidated:     sc.StoreUnvalidated,
				DefaultTTL:           sc.DefaultTTL,
				IgnoreRequestNoStore: !sc.HonorClientCacheControl,
			},
		}
		if h.opt.Upstream != nil {
			st.upstream = h.opt.Upstream(sc)
		} else {
			pc := sc.Pool
			pc.Logger = h.log // the pool adds its name ("pool")
			pool, err := origin.NewPool(pc)
			if err != nil {
				t.close()
				return nil, fmt.Errorf("site %s: %w", sc.Hosts[0], err)
			}
			t.pools = append(t.pools, pool)
			if h.opt.Registerer != nil {
				// A reload brings a pool of the same name: replace its
				// collector.
				h.opt.Registerer.Unregister(pool)
				if err := h.opt.Registerer.Register(pool); err != nil {
					h.log.Warn("origin pool metrics not registered", "pool", pc.Name, "err", err)
				}
			}
			st.upstream = pool
		}
		if sc.Compression.Enabled {
			c, err := compress.New(sc.Compression)
			if err != nil {
				t.close()
				return nil, fmt.Errorf("site %s: compression: %w", sc.Hosts[0], err)
			}
			st.coder = c
		}
		st.fills = fill.Origin(st.upstream)
		if h.opt.WrapUpstream != nil {
			st.fills = h.opt.WrapUpstream(sc, st.fills)
		}
		st.proxy = h.newProxy(st)
		rs, err := compileRules(sc, cfg, dbs, h.metrics.ruleMatches)
		if err != nil {
			t.close()
			return nil, fmt.Errorf("sites[%d].%w", i, err)
		}
		st.rules = rs
		if sc.AltSvc != AltSvcAuto && sc.AltSvc != AltSvcOff && sc.AltSvc != "" {
			st.altSvcField = []string{sc.AltSvc}
		}
		if sc.Limits.Enabled() {
			lc := sc.Limits
			if lc.Now == nil {
				lc.Now = h.now
			}
			l, err := limit.New(lc)
			if err != nil {
				t.close()
				return nil, fmt.Errorf("site %s: %w", sc.Hosts[0], err)
			}
			st.limiter = l
			if h.opt.Registerer != nil {
				h.opt.Registerer.Unregister(l) // a reload brings a limiter of the same name
				if err := h.opt.Registerer.Register(l); err != nil {
					h.log.Warn("limiter metrics not registered", "site", sc.Hosts[0], "err", err)
				}
			}
		}
		for _, host := range sc.Hosts {
			// As requests' hosts are normalized (see normalizeHost).
			t.byHost[strings.TrimSuffix(strings.ToLower(host), ".")] = st
		}
	}
	return t, nil
}

func (t *siteTable) close() {
	for _, p := range t.pools {
		p.Close()
	}
	for _, st := range t.byHost {
		if c, ok := st.upstream.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
	}
}

// Reload applies a new configuration without dropping in-flight requests:
// sites, origins and pools, cache budgets and policy. The store is kept.
// A config that does not validate, or that changes what only a restart can
// (the name), is refused and the old one keeps serving. Listener and
// server settings take effect at the next restart.
func (h *Handler) Reload(cfg Config) error {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("reload refused: %w", err)
	}
	if cfg.Name != h.cfg.Name {
		return fmt.Errorf("reload refused: name: %q cannot change to %q without a restart", h.cfg.Name, cfg.Name)
	}
	sites, err := h.buildSites(cfg)
	if err != nil {
		return fmt.Errorf("reload refused: %w", err)
	}
	cache, purge := cfg.Cache, cfg.Purge
	h.cache.Store(&cache)
	h.purgeCfg.Store(&purge)
	h.store.SetMax(cache.MaxBytes)
	h.hot.SetMax(cache.HotBytes)
	h.inflight.setMax(cache.MaxInflightBytes)
	old := h.sites.Swap(sites)
	// Requests that started on the old table may still be filling through
	// its pools: close those once in-flight work has had time to finish.
	grace := cfg.Server.ShutdownTimeout
	started := h.background(func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
		case <-h.ctx.Done():
		}
		old.close()
	})
	if !started { // closed: nothing is in flight any longer
		old.close()
	}
	h.log.Info("config reloaded", "sites", len(cfg.Sites))
	return nil
}

// Close stops background refreshes and waits for in-flight fills to end.
// It is safe to call more than once.
func (h *Handler) Close() error {
	if h.isClosed() {
		return nil
	}
	// Before closedBit, so that work refused by background sees the
	// contexts ended already.
	h.stopWaitingAll()
	h.cancel()
	old := h.life.Or(closedBit)
	if old&closedBit != 0 {
		return nil // another Close came first
	}
	// Every fill that background admitted was listed before (newFlight
	// lists it before startFill asks background): it is ended here. One
	// it refuses ends itself (startFill).
	h.fills.endAll(nil)
	if old == 0 {
		close(h.lifeEnded) // nothing was running
	}
	<-h.lifeEnded
	close(h.jobs)    // no background call is between its admission and its send now
	h.workers.Wait() // idle ones end with jobs closed
	if t := h.sites.Load(); t != nil {
		t.close()
	}
	if h.disk != nil {
		// What memory holds goes to disk too, for a warm restart.
		start := time.Now()
		n := h.disk.Flush(h.store.Entries(), start.Add(h.cfg.Server.ShutdownTimeout))
		h.log.Info("memory store written to the disk tier", "entries", n, "duration", time.Since(start))
		h.disk.Close()
	}
	return nil
}

// background runs fn in a goroutine that Close waits for, unless the
// handler is closed: then it reports false and fn does not run.
//
// The goroutine is an idle worker's when one waits, else a new worker's.
// A worker waits for more work for workerIdle after each piece, so that
// a fill runs on a stack that earlier fills grew: a fill on a new
// goroutine grew its stack, copying it, on every miss (about 6 % of a
// miss's CPU in the bench's all-miss profile). Workers are as many as the
// background work that ran at once, and end between one and two
// workerIdle after their last piece, or when Close is called.
func (h *Handler) background(fn func()) bool {
	if !h.admit() {
		return false
	}
	h.dispatch(fn)
	return true
}

// admit counts one piece of work that Close waits for, unless the
// handler is closed (then it reports false). The work ends with
// backgroundDone, or is handed to a worker by dispatch, which calls it.
// A fill that runs on its leader's goroutine is admitted so too (see
// startFillInline).
func (h *Handler) admit() bool {
	for {
		n := h.life.Load()
		if n&closedBit != 0 {
			return false
		}
		if h.life.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// dispatch runs fn, admitted already, on a worker (see background).
// Close closes jobs only once every admitted piece has ended, so the
// send cannot meet a closed channel.
func (h *Handler) dispatch(fn func()) {
	select {
	case h.jobs <- fn:
	default:
		h.workers.Add(1)
		go h.worker(fn)
	}
}

// workerIdle is how long a worker of background waits for more work.
const workerIdle = 10 * time.Second

// worker runs fn and then whatever background hands it, until a whole
// period of workerIdle passed without work (it ends between one and two
// periods after its last piece) or the handler is closed (Close closes
// jobs). Each piece of work is counted in h.life while it runs
// (backgroundDone).
//
// The idle timer runs on across pieces of work and is looked at only
// when it fires: resetting it after every piece cost a timer operation
// per miss.
func (h *Handler) worker(fn func()) {
	defer h.workers.Done()
	period := h.workerIdle
	if period <= 0 {
		period = workerIdle
	}
	idle := time.NewTimer(period)
	defer idle.Stop()
	worked := true // since the timer was last set
	for {
		fn()
		h.backgroundDone()
		fn = nil
		for fn == nil {
			select {
			case next, ok := <-h.jobs:
				if !ok {
					return // closed
				}
				fn, worked = next, true
			case <-idle.C:
				if !worked {
					return
				}
				worked = false
				idle.Reset(period)
			}
		}
	}
}

// closedBit is the bit of Handler.life that Close sets.
const closedBit = 1 << 62

// backgroundDone counts a piece of background work done; the last one
// after Close lets Close go on.
func (h *Handler) backgroundDone() {
	if h.life.Add(-1) == closedBit {
		close(h.lifeEnded)
	}
}

// isClosed reports whether Close has been called.
func (h *Handler) isClosed() bool { return h.life.Load()&closedBit != 0 }

// StopWaiting answers every request still waiting on upstream at once,
// and every later one that would wait: from a stale copy it may use, else
// 503 with Retry-After and Connection: close. A node calls it shortly
// before its drain deadline, so that a request that cannot finish in
// time gets a clean answer rather than a connection closed without one.
// Bodies already being sent go on until the deadline.
func (h *Handler) StopWaiting() { h.stopWaitingAll() }

// stopWaitingAll ends draining, which the requests waiting on a fill
// run by a worker watch, and then ends the fills whose leaders wait on
// their own goroutine for the response's head (startFillInline): their
// leaders then answer as answerDraining does.
func (h *Handler) stopWaitingAll() {
	h.stopWaiting()
	h.fills.endHeadWaits(errDraining)
}

// StoreStats reports how many entries the store holds, the bytes they are
// charged, and how many entries were evicted to make room.
func (h *Handler) StoreStats() (entries int, bytes, evicted int64) {
	st := h.store.Stats()
	return st.Entries, st.Bytes, st.Evicted
}

// DiskStats reports the disk tier's counts; ok is false without one.
func (h *Handler) DiskStats() (st store.DiskStats, ok bool) {
	if h.disk == nil {
		return st, false
	}
	return h.disk.Stats(), true
}

// ServeHTTP routes the request to its site and serves it from cache or
// upstream.
// SetDraining makes the public port's /healthz answer 503 "draining"
// while on, so that geo steering and load balancers, which probe it,
// send new clients elsewhere; every request that still comes is served
// as ever. A node drains so before it stops, and while its cluster
// membership drains (cluster.draining).
func (h *Handler) SetDraining(on bool) { h.steerAway.Store(on) }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.accessLog != nil || h.tracer != nil {
		h.serveObserved(w, r)
		return
	}
	h.serve(w, r)
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	host, ok := normalizeHost(r.Host)
	if !ok {
		// RFC 9110 §7.2: a Host that is not a valid host[:port] is a 400;
		// it is never routed, keyed or forwarded.
		h.writeError(w, r, http.StatusBadRequest, fmt.Sprintf("malformed Host %q", r.Host), cacheStatus{fwd: "request", detail: "bad-host"})
		return
	}
	st := h.route(host)
	if st == nil {
		if v := autoAltSvc(r.Context()); v != nil {
			w.Header()["Alt-Svc"] = v
		}
	} else if v, set := st.altSvc(r); set {
		w = &altSvcWriter{ResponseWriter: w, value: v}
	}
	if st == nil && r.URL.Path == "/healthz" {
		// Health probes (geo steering, load balancers) address the node,
		// not a site: answer them on the public port too.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if h.steerAway.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "draining\n")
			return
		}
		io.WriteString(w, "ok\n")
		return
	}
	if st == nil {
		// Never forward a request for a host we do not serve: no open proxy.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusMisdirectedRequest)
		fmt.Fprintf(w, "meridian: no site is configured for host %q\n", host)
		return
	}
	if r.Method == http.MethodConnect {
		// A tunnel to a site's host is no request for the site: never
		// forwarded (this is no forward proxy).
		w.Header().Set("Allow", "GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE")
		h.writeError(w, r, http.StatusMethodNotAllowed, "CONNECT is not served", cacheStatus{fwd: "request", detail: "connect"})
		return
	}
	if st.rules != nil && r.Method != methodPurge {
		// The site's rules, at this one place for every front (see
		// siterules.go); PURGE is the CDN's own API, not the site's.
		// They apply to upgrades too: a geo rule or a redirect holds
		// for a WebSocket as for any request.
		var done bool
		if w, r, done = h.applyRules(w, r, st); done {
			return
		}
	}
	if proto, ok := st.upgradeProtocol(r); ok {
		h.serveUpgrade(w, r, st, proto)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.serveCacheable(w, r, st)
	case http.MethodTrace, http.MethodOptions:
		h.serveMaxForwards(w, r, st)
	case methodPurge:
		h.servePurgeMethod(w, r)
	default:
		h.passLimited(w, r, st, "method")
	}
}

// route returns the site that serves a normalized host (see
// normalizeHost), nil if none does.
func (h *Handler) route(host string) *site {
	return h.sites.Load().byHost[host]
}

// requestTarget is r's request target as the client sent it, in origin
// form.
func requestTarget(r *http.Request) string {
	if t := r.RequestURI; t != "" && t[0] == '/' {
		return t
	}
	return r.URL.RequestURI()
}

// cacheKey is the primary cache key of a request routed to st (whose Host
// is therefore well-formed): see keyFor.
func (st *site) cacheKey(r *http.Request) string {
	host, _ := normalizeHost(r.Host)
	return st.keyFor(st.trusted.scheme(r), host, requestTarget(r))
}

// keyFor is the primary cache key of a request for target at the
// normalized host over scheme: the host, then the target byte for byte
// unless the site's cache_key rewrites the query; an HTTPS key starts with
// "https://" (a plain HTTP key with the host itself, which contains no
// colon, so the two never meet).
//
// The scheme is in the key because an origin may answer differently by
// scheme (a redirect to HTTPS stored for plain HTTP would send HTTPS
// clients round in circles): it is the scheme the edge saw, or the one a
// trusted proxy reports (see proxyList.scheme), and the origin is told
// exactly that one. HTTP/1.1 over TLS, HTTP/2 and HTTP/3 share the HTTPS
// entries. The port is not in the key (see normalizeHost).
func (st *site) keyFor(scheme, host, target string) string {
	return keyPrefix(scheme) + host + st.cfg.CacheKey.target(target)
}

// keyPrefix is what a key of scheme starts with, before the host.
func keyPrefix(scheme string) string {
	if scheme == "https" {
		return "https://"
	}
	return ""
}

// keysFor are the primary keys of target at host (a Host value or URL
// authority, normalized here) under every scheme, with the rules of the
// site that serves host (none when no site does): what a purge of the
// client's URL removes (its site's rewrites and signed URLs applied
// first). A malformed host has none.
func (h *Handler) keysFor(host, target string) []string {
	return h.keysOf(host, target, true)
}

// keysOf is keysFor; clientURL says whether target is a client's URL,
// which the site's rules (edge/rules KeyTarget) turn into the one keyed,
// or one keyed already (an invalidation: the URL sent upstream).
func (h *Handler) keysOf(host, target string, clientURL bool) []string {
	name, ok := normalizeHost(host)
	if !ok {
		return nil
	}
	if st := h.route(name); st != nil {
		if st.rules != nil && clientURL {
			target = st.rules.KeyTarget(name, target)
		}
		target = st.cfg.CacheKey.target(target)
	}
	return []string{name + target, keyPrefix("https") + name + target}
}

// variantKey is where the variant of a varying response lives.
func variantKey(primary string, gen uint64, secondary string) string {
	return fmt.Sprintf("%s\x00%d\x00%s", primary, gen, secondary)
}

// lookup finds the stored entry for a request: the primary entry, or the
// variant that the request's headers select when the primary key holds a
// vary index (req is called only then); in memory, among the hot copies,
// then on disk. key is where a response for the request would be stored.
func (h *Handler) lookup(primary string, req func() *http.Request) (key string, e *store.Entry, varyMiss bool) {
	return h.lookupTiers(primary, func(s tier) (string, *store.Entry, bool) { return h.lookupIn(s, primary, req) })
}

// lookupTiers runs in, a lookup in one tier, over the tiers in order.
func (h *Handler) lookupTiers(primary string, in func(tier) (string, *store.Entry, bool)) (key string, e *store.Entry, varyMiss bool) {
	key, e, varyMiss = in(h.store)
	if e == nil {
		if k, he, _ := in(h.hot); he != nil {
			return k, he, false
		}
	}
	if e == nil && h.disk != nil {
		if varyMiss && key != primary {
			// The vary index is in memory; its variant may be on disk.
			if de := h.unbanned(h.disk, key, h.disk.Get(key)); de != nil {
				return key, de, false
			}
		} else if k, de, _ := in(h.disk); de != nil {
			return k, de, false
		}
	}
	return key, e, varyMiss
}

// tier is a cache tier lookups and bans apply to: a memory store or
// the disk.
type tier interface {
	Get(key string) *store.Entry
	Peek(key string) *store.Entry
	Remove(key string) bool
	Keys() []string
}

func (h *Handler) lookupIn(s tier, primary string, req func() *http.Request) (key string, e *store.Entry, varyMiss bool) {
	e = s.Get(primary)
	if e == nil {
		return primary, nil, false
	}
	fields, gen, isIndex := e.VaryIndex()
	if !isIndex {
		return primary, h.unbanned(s, primary, e), false
	}
	sk, ok := policy.SecondaryKey(fields, req().Header)
	if !ok {
		return primary, nil, true
	}
	key = variantKey(primary, gen, sk)
	v := h.unbanned(s, key, s.Get(key))
	return key, v, v == nil
}

// put stores a complete entry for the primary key in s, under a variant
// key when the response varies. The entry is sealed there: its fields
// take their stored form (see store.Entry.Seal).
func (h *Handler) put(s *store.Store, primary string, reqHeader http.Header, e *store.Entry) bool {
	if h.sealFor(s, primary, reqHeader, e) {
		s.Put(e)
		return true
	}
	return false
}

// sealFor seals e under its key in s (the primary key, or its variant's
// under the vary index, which it stores in s when missing) and drops the
// disk tier's older copy there (see supersede); it reports false when e
// is not to be stored (an unusable Vary).
func (h *Handler) sealFor(s *store.Store, primary string, reqHeader http.Header, e *store.Entry) bool {
	base := e.BaseHeader()
	fields, ok := policy.VaryFields(base["Vary"])
	if !ok {
		return false
	}
	if len(fields) == 0 {
		e.Seal(primary, base, h.via)
		h.supersede(s, primary)
		return true
	}
	idx := s.Get(primary)
	if idxFields, _, isIndex := idx.VaryIndex(); !isIndex || !equalStrings(idxFields, fields) {
		idx = store.NewVaryIndex(primary, fields, h.gen.Add(1))
		h.supersede(s, primary)
		s.Put(idx)
	}
	_, gen, _ := idx.VaryIndex()
	sk, _ := policy.SecondaryKey(fields, reqHeader)
	e.Seal(variantKey(primary, gen, sk), base, h.via)
	h.supersede(s, e.Key())
	return true
}

// supersede drops the disk tier's copy at key, before s (the main store)
// stores a newer one there: once that one is gone from memory, the older
// one must not answer. It comes before the store, which may hand the new
// entry straight to the disk.
func (h *Handler) supersede(s *store.Store, key string) {
	if h.disk != nil && s == h.store {
		h.disk.Supersede(key)
	}
}

// peerFillIsHot counts a peer fill of key and reports whether the key has
// been filled from its owner often enough to keep a local copy.
func (h *Handler) peerFillIsHot(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	n, _ := h.peerFills.Get(key)
	n++
	h.peerFills.Add(key, n)
	return n >= hotAfter
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// invalidate removes the stored responses for a URL of a site (RFC 9111
// §4.4), under either scheme: the state behind the URL changed for both.
// Variants go with their vary index, slices with their object. The URL
// is upstream's (after the site's rewrites), not a client's.
func (h *Handler) invalidate(host, requestURI string) bool {
	removed := false
	for _, key := range h.keysOf(host, requestURI, false) {
		a, b := h.store.Remove(key), h.hot.Remove(key)
		c := h.removeSlices(key, nil)
		removed = removed || a || b || c
		if h.disk != nil {
			h.disk.Supersede(key) // in the background: this is a client's request
		}
	}
	return removed
}

// hitForMiss reports whether key was recently found uncacheable, so that
// requests for it skip coalescing and go upstream in parallel.
func (h *Handler) hitForMiss(key string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	until, ok := h.hfm.Get(key)
	if !ok {
		return false
	}
	if now.After(until) {
		h.hfm.Remove(key)
		return false
	}
	return true
}

func (h *Handler) markHitForMiss(key string, now time.Time) {
	h.mu.Lock()
	h.hfm.Add(key, now.Add(h.cache.Load().HitForMiss))
	h.mu.Unlock()
}

func (h *Handler) clearHitForMiss(key string) {
	h.mu.Lock()
	h.hfm.Remove(key)
	h.mu.Unlock()
}

// isTimeout reports whether an upstream error is a timeout (504) rather
// than a failure to connect or a broken response (502).
func isTimeout(err error) bool {
	if origin.IsTimeout(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errFirstByteTimeout) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
