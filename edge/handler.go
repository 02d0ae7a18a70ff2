// Package edge is Meridian's edge node's request semantics: an RFC 9111
// shared cache in front of the configured sites' origins, with request
// coalescing that streams a fill to every waiter as it arrives, stale
// serving (RFC 5861), Cache-Status (RFC 9211), purge, admin and metrics.
//
// The front door is [New], which builds a [Handler] from a [Config];
// package edge/listen puts it on the configured listeners (HTTP/1.1,
// HTTP/2, HTTP/3), and edge/node assembles a whole node. Package edge
// never imports the listeners. A request's path through the handler
// is: route by Host → key → local lookup → (fresh: serve) / (stale within
// stale-while-revalidate: serve and refresh in the background) / (miss or
// stale: one coalesced fill upstream, its body streamed to every waiter) →
// degrade to a stale copy when upstream fails. On a site with slice_bytes
// a GET or HEAD is answered from slices of the object, each an internal
// subrequest through that same path with its own key (slice.go).
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
// flight's). A flight's hintMu is a leaf: it is held only while a 1xx
// hint is written to the leader's client, under no other lock. No other
// network I/O happens under these locks. Handler.life is a leaf too: it
// guards closing and the start of background work (Handler.background),
// so that nothing starts after Close. A sliced answer's lock (slicer.mu,
// its subrequests still attached to the client) is a leaf as well.
package edge

import (
	"context"
	"errors"
	"fmt"
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

	"github.com/meridiancdn/meridian/edge/limit"
	"github.com/meridiancdn/meridian/edge/policy"
	"github.com/meridiancdn/meridian/origin"
)

// Options are the hooks a Handler is built with. The zero value works.
type Options struct {
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Logger receives event logs. Nil means slog.Default().
	Logger *slog.Logger
	// AccessLog, when set, receives one line per request (method, host,
	// URI, status, bytes, Cache-Status, duration). Nil logs none.
	AccessLog *slog.Logger
	// Registerer receives the edge's Prometheus collectors. Nil means they
	// are kept but not registered anywhere.
	Registerer prometheus.Registerer
	// Upstream returns the RoundTripper that fills a site's misses and
	// forwards its uncacheable requests; req.URL already points at the
	// site's origin. Nil means the site's origin pool (origin.Pool).
	Upstream func(SiteConfig) http.RoundTripper
	// WrapUpstream, when set, wraps each site's upstream: a region's peer
	// fill (ask the key's owner first) or an origin shield goes here. Nil
	// means the upstream is used as it is.
	WrapUpstream func(site SiteConfig, upstream http.RoundTripper) http.RoundTripper
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
	store     *store
	hot       *store // short-lived copies of hot objects owned by a peer
	now       func() time.Time
	log       *slog.Logger
	gen       atomic.Uint64 // vary index generations
	via       string        // this cache's Via entry
	trusted   proxyList     // server.trusted_proxies
	metrics   *metrics
	purges    recentPurges
	accessLog *slog.Logger

	inflight *byteBudget  // bodies of fills in progress
	failures *failedFills // keys whose fills failed recently

	mu        sync.Mutex
	flights   map[string]*flight
	hfm       *simplelru.LRU[string, time.Time] // hit-for-miss: key → until
	peerFills *simplelru.LRU[string, int]       // key → fills from its owner peer

	ctx    context.Context // parent of every fill; canceled by Close
	cancel context.CancelFunc
	// draining ends when the node is about to stop: requests still
	// waiting on upstream are answered at once (see StopWaiting).
	draining    context.Context
	stopWaiting context.CancelFunc
	// life guards closed and every wg.Add: background work is started
	// only under it and only before Close (see background), so that no
	// Add races Close's Wait and nothing starts after Close returns.
	life   sync.Mutex
	closed bool // guarded by life
	wg     sync.WaitGroup
}

// site is one configured site, ready to serve.
type site struct {
	cfg      SiteConfig
	origin   *url.URL
	upstream http.RoundTripper
	opts     policy.Options
	proxy    *httputil.ReverseProxy
	trusted  proxyList      // the handler's trusted proxies, for the scheme
	limiter  *limit.Limiter // the site's per-client limits; nil: none
}

// New builds a Handler from a validated config (see Config.WithDefaults and
// Config.Validate).
func New(cfg Config, opt Options) (*Handler, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &Handler{
		cfg:     cfg,
		store:   newStore(cfg.Cache.MaxBytes),
		hot:     newStore(cfg.Cache.HotBytes),
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
	h.metrics = newMetrics(opt.Registerer, h)
	h.hfm, _ = simplelru.NewLRU[string, time.Time](1<<16, nil)
	h.peerFills, _ = simplelru.NewLRU[string, int](1<<16, nil)
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.draining, h.stopWaiting = context.WithCancel(context.Background())
	h.opt = opt
	h.accessLog = opt.AccessLog
	h.cache.Store(&cfg.Cache)
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
	for _, sc := range cfg.Sites {
		u, _ := url.Parse(sc.Pool.Servers[0].URL) // validated; the pool picks the server
		st := &site{
			cfg:     sc,
			origin:  u,
			trusted: h.trusted,
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
			pc.Logger = h.log.With("pool", pc.Name)
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
		if h.opt.WrapUpstream != nil {
			st.upstream = h.opt.WrapUpstream(sc, st.upstream)
		}
		st.proxy = h.newProxy(st)
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
	cache := cfg.Cache
	h.cache.Store(&cache)
	h.store.setMax(cache.MaxBytes)
	h.hot.setMax(cache.HotBytes)
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
	h.life.Lock()
	if h.closed {
		h.life.Unlock()
		return nil
	}
	h.closed = true
	// Under life, so that work refused by background sees the contexts
	// ended already.
	h.stopWaiting()
	h.cancel()
	h.life.Unlock()
	h.wg.Wait()
	if t := h.sites.Load(); t != nil {
		t.close()
	}
	return nil
}

// background runs fn in a goroutine that Close waits for, unless the
// handler is closed: then it reports false and fn does not run.
func (h *Handler) background(fn func()) bool {
	h.life.Lock()
	defer h.life.Unlock()
	if h.closed {
		return false
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		fn()
	}()
	return true
}

// isClosed reports whether Close has been called.
func (h *Handler) isClosed() bool {
	h.life.Lock()
	defer h.life.Unlock()
	return h.closed
}

// StopWaiting answers every request still waiting on upstream at once,
// and every later one that would wait: from a stale copy it may use, else
// 503 with Retry-After and Connection: close. A node calls it shortly
// before its drain deadline, so that a request that cannot finish in
// time gets a clean answer rather than a connection closed without one.
// Bodies already being sent go on until the deadline.
func (h *Handler) StopWaiting() { h.stopWaiting() }

// StoreStats reports how many entries the store holds, the bytes they are
// charged, and how many entries were evicted to make room.
func (h *Handler) StoreStats() (entries int, bytes, evicted int64) {
	n, b := h.store.stats()
	h.store.mu.Lock()
	ev := h.store.evicted
	h.store.mu.Unlock()
	return n, b, ev
}

// ServeHTTP routes the request to its site and serves it from cache or
// upstream.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.accessLog != nil {
		h.serveLogged(w, r)
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
	if st == nil && r.URL.Path == "/healthz" {
		// Health probes (geo steering, load balancers) address the node,
		// not a site: answer them on the public port too.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
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
// site that serves host (none when no site does): what a purge or an
// invalidation of the URL removes. A malformed host has none.
func (h *Handler) keysFor(host, target string) []string {
	name, ok := normalizeHost(host)
	if !ok {
		return nil
	}
	if st := h.route(name); st != nil {
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
// vary index (req is called only then). key is where a response for the
// request would be stored.
func (h *Handler) lookup(primary string, req func() *http.Request) (key string, e *entry, varyMiss bool) {
	key, e, varyMiss = lookupIn(h.store, primary, req)
	if e == nil {
		if k, he, _ := lookupIn(h.hot, primary, req); he != nil {
			return k, he, false
		}
	}
	return key, e, varyMiss
}

func lookupIn(s *store, primary string, req func() *http.Request) (key string, e *entry, varyMiss bool) {
	e = s.get(primary)
	if e == nil {
		return primary, nil, false
	}
	fields, gen, isIndex := e.varyIndex()
	if !isIndex {
		return primary, e, false
	}
	sk, ok := policy.SecondaryKey(fields, req().Header)
	if !ok {
		return primary, nil, true
	}
	key = variantKey(primary, gen, sk)
	v := s.get(key)
	return key, v, v == nil
}

// put stores a complete entry for the primary key in s, under a variant
// key when the response varies. The entry is sealed there: its fields
// take their stored form (see seal).
func (h *Handler) put(s *store, primary string, reqHeader http.Header, e *entry) {
	base := e.baseHeader()
	fields, ok := policy.VaryFields(base["Vary"])
	if !ok {
		return
	}
	if len(fields) == 0 {
		h.seal(e, primary, base)
		s.put(e)
		return
	}
	idx := s.get(primary)
	if idxFields, _, isIndex := idx.varyIndex(); !isIndex || !equalStrings(idxFields, fields) {
		idx = newVaryIndex(fields, h.gen.Add(1))
		sealIndex(idx, primary)
		s.put(idx)
	}
	_, gen, _ := idx.varyIndex()
	sk, _ := policy.SecondaryKey(fields, reqHeader)
	h.seal(e, variantKey(primary, gen, sk), base)
	s.put(e)
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
// Variants go with their vary index, slices with their object.
func (h *Handler) invalidate(host, requestURI string) bool {
	removed := false
	for _, key := range h.keysFor(host, requestURI) {
		a, b := h.store.remove(key), h.hot.remove(key)
		c := h.removeSlices(key, nil)
		removed = removed || a || b || c
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
