package edge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/meridiancdn/meridian/edge/limit"
	"github.com/meridiancdn/meridian/edge/policy"
	"github.com/meridiancdn/meridian/origin"
)

// Config is one edge node's configuration, read from one YAML file. Its zero
// value (plus at least one site) is a working node: every field documents its
// default, and the defaults are filled in by [Config.WithDefaults].
type Config struct {
	// Name identifies this cache in Cache-Status, Via and CDN-Loop: a
	// token (letters, digits and !#$%&'*+-.^_`|~), distinct for every node
	// of a CDN, since a request whose CDN-Loop already names this edge is
	// answered 508 Loop Detected. Default "meridian".
	Name string `yaml:"name"`

	// Listen is the plain HTTP/1.1 address. Default "127.0.0.1:8080".
	Listen string `yaml:"listen"`
	// TLS, when set, serves HTTPS with HTTP/2 on its address and HTTP/3 on
	// the same port number over UDP, advertised with Alt-Svc.
	TLS *TLSConfig `yaml:"tls"`

	// Cache bounds the in-memory store.
	Cache CacheConfig `yaml:"cache"`
	// Server holds the client-facing timeouts and limits.
	Server ServerConfig `yaml:"server"`

	// Sites maps Host names to origins. A request for any other Host is
	// refused with 421 and never forwarded.
	Sites []SiteConfig `yaml:"sites"`
}

// TLSConfig names the certificate for the HTTPS (HTTP/2) and HTTP/3 listener.
type TLSConfig struct {
	// Listen is the TCP (HTTPS) and UDP (HTTP/3) address. Required.
	Listen string `yaml:"listen"`
	// CertFile and KeyFile are PEM files. Both required.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// DisableHTTP3 turns off the QUIC listener and Alt-Svc. Default false.
	DisableHTTP3 bool `yaml:"disable_http3"`
}

// CacheConfig bounds the store.
type CacheConfig struct {
	// MaxBytes is the store's budget in bytes, headers and bodies counted.
	// Default 256 MiB.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxObjectBytes is the largest body stored; larger responses stream
	// through without being held whole in memory. Default 8 MiB.
	MaxObjectBytes int64 `yaml:"max_object_bytes"`
	// HotBytes is the budget for short-lived copies of hot objects that a
	// peer owns, on top of MaxBytes. Default MaxBytes/8.
	HotBytes int64 `yaml:"hot_bytes"`
	// HitForMiss is how long a key whose response was uncacheable skips
	// request coalescing (Varnish's hit-for-miss). Default 10s.
	HitForMiss time.Duration `yaml:"hit_for_miss"`

	// MaxInflightBytes bounds the bodies of fills in progress, which the
	// store does not hold yet: a fill holds a first chunk (32 KiB) from
	// its start, its announced length (up to MaxObjectBytes) once the
	// headers come, and a body of unknown length as it grows. When the
	// budget is full, new misses wait up to InflightWait, then get 503
	// with Retry-After (or a stale copy); hits are served as ever.
	// Default MaxBytes/4.
	MaxInflightBytes int64 `yaml:"max_inflight_bytes"`
	// InflightWait is how long a fill waits for room in MaxInflightBytes.
	// Default 500ms.
	InflightWait time.Duration `yaml:"inflight_wait"`
	// FinishAbandoned is the share of its announced length a fill must
	// have received to be finished (and stored) when every client
	// waiting on it has gone; below it the upstream request is called
	// off, so that work follows demand. A body of unknown length is
	// always called off. 1 calls off every abandoned fill. Default 0.5.
	FinishAbandoned float64 `yaml:"finish_abandoned"`
	// ErrorBackoff is how long a key whose fill failed (a 5xx that may
	// not be stored, a timeout, a refused connection) gets that failure
	// again (or its stale copy) without a request upstream; it doubles
	// with each failure in a row up to MaxErrorBackoff. Default 1s.
	ErrorBackoff time.Duration `yaml:"error_backoff"`
	// MaxErrorBackoff caps ErrorBackoff's doubling. Default 16s.
	MaxErrorBackoff time.Duration `yaml:"max_error_backoff"`
}

// ServerConfig holds client-side timeouts and limits.
type ServerConfig struct {
	// ReadHeaderTimeout bounds reading a request's header. Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes idle keep-alive connections. Default 120s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes limits a request's header size. Default 64 KiB.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ShutdownTimeout bounds the graceful drain on stop. Default 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// TrustedProxies are CIDRs (or single addresses) of the proxies in
	// front of this edge (load balancers, TLS terminators) whose
	// X-Forwarded-For and X-Forwarded-Proto are believed, and whose
	// X-Forwarded-*, Forwarded and X-Real-IP are passed on (this hop
	// appended). From any other client those fields are replaced by what
	// the edge saw. Default none. Takes effect at restart.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Front is the server of the plain HTTP/1.1 listener: FrontNetHTTP
	// (net/http) or FrontFast (plain fresh hits written straight from the
	// entry, everything else handed to net/http). Both serve the same
	// cache with the same semantics. Default "fast": in the side-by-side
	// benchmark (deploy/bench) it serves 1 KiB hits at about twice
	// net/http's rate and half nginx's CPU per request.
	Front string `yaml:"front"`
	// MaxConnections caps the client connections open at once, over the
	// plain, HTTPS and QUIC listeners together; a connection past it is
	// closed as it is accepted (meridian_edge_connections_rejected_total
	// {reason="max_connections"}). Default 4096: an idle connection costs
	// the edge about 12-17 KiB on the plain listener, 40 KiB over TLS and
	// HTTP/2 and 70 KiB over QUIC (goroutine stacks, buffers, TLS and
	// flow-control state; measured with Go 1.26 and quic-go 0.65), so 4096
	// of them hold at most 160 MiB over TLS (280 MiB if all were QUIC),
	// the order of the default 256 MiB cache. nginx's default is 512 per
	// worker. Raise it with the memory: the Kubernetes manifests' 2 GiB
	// pods use 8192. -1 removes the cap.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP caps the connections from one client address
	// (an IPv6 client by its /64, which one host commonly owns whole),
	// counted like MaxConnections. Default 128: a browser opens at most 6
	// HTTP/1.1 connections per host and 1 over HTTP/2 or HTTP/3, so 128
	// lets some 20 HTTP/1.1 or 128 HTTP/2 users share one NAT address,
	// while one address holds at most 1/32 of the default
	// MaxConnections: filling the edge takes 32 addresses. -1 removes
	// the cap.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// AllowTrace forwards TRACE requests to the origin, honouring
	// Max-Forwards (RFC 9110 §7.6.2). Default false: TRACE is answered
	// 405, as it only reflects a request (cookies and credentials
	// included) back to whoever can make the client send it.
	AllowTrace bool `yaml:"allow_trace"`
}

// The values of ServerConfig.Front.
const (
	// FrontNetHTTP serves HTTP/1.1 with net/http alone.
	FrontNetHTTP = "nethttp"
	// FrontFast answers plain fresh hits with Meridian's own HTTP/1.1
	// reader and writer, and hands every other request to net/http.
	FrontFast = "fast"
)

// SiteConfig is one site: the Host names it answers and where misses go.
type SiteConfig struct {
	// Hosts are the Host header values (without port) this site answers.
	// Required; matching is case-insensitive.
	Hosts []string `yaml:"hosts"`
	// Origin is the upstream base URL (scheme and host[:port]; no path):
	// shorthand for a pool of this one server. Either origin or
	// pool.servers is required.
	Origin string `yaml:"origin"`
	// Pool is the origin pool: servers with weights and backups, health
	// checks, outlier ejection, retries, circuit breaking (see
	// origin.PoolConfig). Its name defaults to the site's first host, its
	// timeouts to the site's.
	Pool origin.PoolConfig `yaml:"pool"`
	// OriginHost, when set, replaces the Host header sent upstream.
	// Default: the client's Host, normalized as it is keyed (lower case,
	// no port, no trailing dot), is forwarded.
	OriginHost string `yaml:"origin_host"`
	// Timeout bounds the wait for an upstream response's headers, retries
	// included. Default 30s. A body is bounded only between reads
	// (ReadTimeout), so that large downloads are not cut off.
	Timeout time.Duration `yaml:"timeout"`
	// ReadTimeout bounds each wait for more of an upstream body (nginx's
	// proxy_read_timeout). Default 30s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// ConnectTimeout bounds the TCP/TLS connect to origin. Default 5s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`

	// Shield names the origin shield regions for this site (used by the
	// node's wiring; see edge/node). Default none: fills go to the origin.
	Shield ShieldConfig `yaml:"shield"`

	// Grace gives stale windows for responses that carry none.
	Grace GraceConfig `yaml:"grace"`
	// StoreUnvalidated stores responses with neither explicit freshness
	// nor a validator, for DefaultTTL. Default false: they are not stored.
	StoreUnvalidated bool `yaml:"store_unvalidated"`
	// DefaultTTL is the freshness given to such responses. Default 0.
	DefaultTTL time.Duration `yaml:"default_ttl"`
	// DeceptionArmor refuses to store a response whose Content-Type does
	// not match the extension of the request's path (a .css that is not
	// text/css, a .jpg that is not an image, ...), as Cloudflare's Cache
	// Deception Armor: /account/settings/x.css answered with the account
	// page is not stored. Paths without a known extension are not checked.
	// Default false. (Responses to requests with Cookie or Authorization
	// get no heuristic freshness or default_ttl whatever this says: see
	// policy.Evaluate.)
	DeceptionArmor bool `yaml:"deception_armor"`
	// HonorClientCacheControl lets a client's request Cache-Control
	// (no-cache, max-age, min-fresh, max-stale) steer this cache. Default
	// false, as Varnish and nginx: clients cannot bust a shared cache.
	HonorClientCacheControl bool `yaml:"honor_client_cache_control"`
	// AcceptEncoding is what cacheable requests' Accept-Encoding becomes
	// before lookup and fill: "normalize" (default) reduces it to the
	// accepted codings among br, gzip and zstd (see
	// policy.NormalizeAcceptEncoding), so that the browsers' many spellings
	// share one variant of a response with Vary: Accept-Encoding, as
	// Varnish and Fastly do; "as_sent" keeps it, a variant per spelling.
	AcceptEncoding string `yaml:"accept_encoding"`
	// CacheKey shapes the query part of the cache key (sorted, ignored,
	// marketing parameters left out). Default: the target as sent. The
	// origin gets the query as keyed (for GET and HEAD).
	CacheKey CacheKeyConfig `yaml:"cache_key"`
	// SliceBytes, when not 0, answers the site's GETs and HEADs from
	// slices of this many bytes (nginx's slice module): each fetched
	// upstream with "Range: bytes=a-b", stored as its own entry, filled
	// once however many clients want it, and owned on the region's ring
	// on its own, so that objects larger than cache.max_object_bytes are
	// cached and spread over the region. Every object of the site is
	// sliced (a small one is one slice): turn it on for the sites that
	// serve large files. Between 64 KiB and cache.max_object_bytes;
	// 1-4 MiB suits video and downloads. Default 0: off.
	SliceBytes int64 `yaml:"slice_bytes"`
	// Limits caps each client's rate of requests and its requests in
	// flight on this site, keyed by the client's address (an IPv6
	// client's /64), over a bounded table of clients (see limit.Config).
	// Default: no limits. Its name defaults to the site's first host.
	Limits limit.Config `yaml:"limits"`
}

// Accept-Encoding handling of a site (SiteConfig.AcceptEncoding).
const (
	AcceptEncodingNormalize = "normalize"
	AcceptEncodingAsSent    = "as_sent"
)

// ShieldConfig is a site's origin shield: edges in other regions fill their
// misses from the owner of the key in the first shield region that
// answers, and only the shield talks to the origin.
type ShieldConfig struct {
	// Regions are shield regions in order of preference (the first is the
	// shield, the rest its fallbacks). A region's own edges use only the
	// regions listed before their own. Default none.
	Regions []string `yaml:"regions"`
	// Direct allows a fill straight from the origin when no shield region
	// answers. Default true; false gives a clear 502/504 (or stale)
	// instead, to protect an origin that must only see the shield.
	Direct *bool `yaml:"direct"`
}

// DirectAllowed reports whether fills may fall back to the origin.
func (s ShieldConfig) DirectAllowed() bool { return s.Direct == nil || *s.Direct }

// GraceConfig gives default RFC 5861 windows for a site's responses that
// send no stale-while-revalidate / stale-if-error of their own. They never
// apply to must-revalidate, proxy-revalidate or no-cache responses.
type GraceConfig struct {
	// WhileRevalidate is the default stale-while-revalidate. Default 0.
	WhileRevalidate time.Duration `yaml:"while_revalidate"`
	// IfError is the default stale-if-error. Default 0.
	IfError time.Duration `yaml:"if_error"`
	// IfUnreachable is how long past its freshness a stored response may
	// be served when the origin cannot be reached at all (refused,
	// reset, timed out; not when it answers 5xx, which stale-if-error
	// governs): RFC 9111 §4.2.4 lets a disconnected cache serve stale,
	// as Squid and Traffic Server do by default. Default 24h; 0 turns it
	// off.
	IfUnreachable *time.Duration `yaml:"if_unreachable"`
	// StaleTimeout is how long a request that has a stale copy it may use
	// (within stale-if-error, IfError or IfUnreachable) waits for the
	// origin before it is answered from that copy; the fill goes on in
	// the background and refreshes the entry (Varnish's grace with a
	// backend timeout). Default 1s; 0 waits for the origin.
	StaleTimeout *time.Duration `yaml:"stale_timeout"`
}

// Default stale windows of GraceConfig.
const (
	defaultIfUnreachable = 24 * time.Hour
	defaultStaleTimeout  = time.Second
)

// ifUnreachable is IfUnreachable with its default.
func (g GraceConfig) ifUnreachable() time.Duration {
	if g.IfUnreachable == nil {
		return defaultIfUnreachable
	}
	return *g.IfUnreachable
}

// staleTimeout is StaleTimeout with its default.
func (g GraceConfig) staleTimeout() time.Duration {
	if g.StaleTimeout == nil {
		return defaultStaleTimeout
	}
	return *g.StaleTimeout
}

// WithDefaults returns a copy of c with every unset field given its default.
// It is the one place where defaults live.
func (c Config) WithDefaults() Config {
	if c.Name == "" {
		c.Name = "meridian"
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.Cache.MaxBytes == 0 {
		c.Cache.MaxBytes = 256 << 20
	}
	if c.Cache.MaxObjectBytes == 0 {
		c.Cache.MaxObjectBytes = 8 << 20
	}
	if c.Cache.HotBytes == 0 {
		c.Cache.HotBytes = c.Cache.MaxBytes / 8
	}
	if c.Cache.HitForMiss == 0 {
		c.Cache.HitForMiss = 10 * time.Second
	}
	if c.Cache.MaxInflightBytes == 0 {
		c.Cache.MaxInflightBytes = c.Cache.MaxBytes / 4
	}
	if c.Cache.InflightWait == 0 {
		c.Cache.InflightWait = 500 * time.Millisecond
	}
	if c.Cache.FinishAbandoned == 0 {
		c.Cache.FinishAbandoned = 0.5
	}
	if c.Cache.ErrorBackoff == 0 {
		c.Cache.ErrorBackoff = time.Second
	}
	if c.Cache.MaxErrorBackoff == 0 {
		c.Cache.MaxErrorBackoff = 16 * time.Second
	}
	if c.Server.ReadHeaderTimeout == 0 {
		c.Server.ReadHeaderTimeout = 10 * time.Second
	}
	if c.Server.IdleTimeout == 0 {
		c.Server.IdleTimeout = 120 * time.Second
	}
	if c.Server.MaxHeaderBytes == 0 {
		c.Server.MaxHeaderBytes = 64 << 10
	}
	if c.Server.ShutdownTimeout == 0 {
		c.Server.ShutdownTimeout = 30 * time.Second
	}
	if c.Server.Front == "" {
		c.Server.Front = FrontFast
	}
	if c.Server.MaxConnections == 0 {
		c.Server.MaxConnections = 4096
	}
	if c.Server.MaxConnectionsPerIP == 0 {
		c.Server.MaxConnectionsPerIP = 128
	}
	sites := make([]SiteConfig, len(c.Sites))
	for i, s := range c.Sites {
		if s.Timeout == 0 {
			s.Timeout = 30 * time.Second
		}
		if s.ConnectTimeout == 0 {
			s.ConnectTimeout = 5 * time.Second
		}
		if s.ReadTimeout == 0 {
			s.ReadTimeout = 30 * time.Second
		}
		if s.AcceptEncoding == "" {
			s.AcceptEncoding = AcceptEncodingNormalize
		}
		s.CacheKey = s.CacheKey.withDefaults()
		if len(s.Pool.Servers) == 0 && s.Origin != "" {
			s.Pool.Servers = []origin.ServerConfig{{URL: s.Origin}}
		}
		if s.Pool.Name == "" && len(s.Hosts) > 0 {
			s.Pool.Name = s.Hosts[0]
		}
		if s.Limits.Name == "" && len(s.Hosts) > 0 {
			s.Limits.Name = s.Hosts[0]
		}
		if s.Pool.Timeout == 0 {
			s.Pool.Timeout = s.Timeout
		}
		if s.Pool.ConnectTimeout == 0 {
			s.Pool.ConnectTimeout = s.ConnectTimeout
		}
		if s.Pool.ReadTimeout == 0 {
			s.Pool.ReadTimeout = s.ReadTimeout
		}
		if s.Pool.TryTimeout == 0 && s.Timeout < 10*time.Second {
			s.Pool.TryTimeout = s.Timeout
		}
		sites[i] = s
	}
	c.Sites = sites
	return c
}

// Validate reports the first problem in c, naming the field. Call it on the
// result of WithDefaults.
func (c Config) Validate() error {
	if c.Name == "" || !isToken(c.Name) {
		return fmt.Errorf("name: %q is not a token (letters, digits and !#$%%&'*+-.^_`|~)", c.Name)
	}
	if err := checkAddr("listen", c.Listen); err != nil {
		return err
	}
	if c.TLS != nil {
		if err := checkAddr("tls.listen", c.TLS.Listen); err != nil {
			return err
		}
		if c.TLS.CertFile == "" {
			return errors.New("tls.cert_file: required")
		}
		if c.TLS.KeyFile == "" {
			return errors.New("tls.key_file: required")
		}
	}
	switch {
	case c.Cache.MaxBytes < 0:
		return fmt.Errorf("cache.max_bytes: negative (%d)", c.Cache.MaxBytes)
	case c.Cache.MaxObjectBytes < 0:
		return fmt.Errorf("cache.max_object_bytes: negative (%d)", c.Cache.MaxObjectBytes)
	case c.Cache.MaxObjectBytes > c.Cache.MaxBytes:
		return fmt.Errorf("cache.max_object_bytes: %d exceeds cache.max_bytes %d", c.Cache.MaxObjectBytes, c.Cache.MaxBytes)
	case c.Cache.HotBytes < 0:
		return fmt.Errorf("cache.hot_bytes: negative (%d)", c.Cache.HotBytes)
	case c.Cache.HitForMiss < 0:
		return errors.New("cache.hit_for_miss: negative")
	case c.Cache.MaxInflightBytes < 0:
		return fmt.Errorf("cache.max_inflight_bytes: negative (%d)", c.Cache.MaxInflightBytes)
	case c.Cache.InflightWait < 0:
		return errors.New("cache.inflight_wait: negative")
	case !(c.Cache.FinishAbandoned >= 0 && c.Cache.FinishAbandoned <= 1):
		return fmt.Errorf("cache.finish_abandoned: %v not in [0, 1]", c.Cache.FinishAbandoned)
	case c.Cache.ErrorBackoff < 0:
		return errors.New("cache.error_backoff: negative")
	case c.Cache.MaxErrorBackoff < c.Cache.ErrorBackoff:
		return fmt.Errorf("cache.max_error_backoff: %v is less than cache.error_backoff %v", c.Cache.MaxErrorBackoff, c.Cache.ErrorBackoff)
	case c.Server.ReadHeaderTimeout < 0:
		return errors.New("server.read_header_timeout: negative")
	case c.Server.IdleTimeout < 0:
		return errors.New("server.idle_timeout: negative")
	case c.Server.MaxHeaderBytes < 0:
		return errors.New("server.max_header_bytes: negative")
	case c.Server.ShutdownTimeout < 0:
		return errors.New("server.shutdown_timeout: negative")
	case c.Server.Front != FrontNetHTTP && c.Server.Front != FrontFast:
		return fmt.Errorf("server.front: unknown %q (want %q or %q)", c.Server.Front, FrontNetHTTP, FrontFast)
	case c.Server.MaxConnections < -1:
		return fmt.Errorf("server.max_connections: %d: want a count, or -1 for no cap", c.Server.MaxConnections)
	case c.Server.MaxConnectionsPerIP < -1:
		return fmt.Errorf("server.max_connections_per_ip: %d: want a count, or -1 for no cap", c.Server.MaxConnectionsPerIP)
	case c.Server.MaxConnections > 0 && c.Server.MaxConnectionsPerIP > c.Server.MaxConnections:
		return fmt.Errorf("server.max_connections_per_ip: %d exceeds server.max_connections %d", c.Server.MaxConnectionsPerIP, c.Server.MaxConnections)
	}
	if _, err := parseProxies(c.Server.TrustedProxies); err != nil {
		return fmt.Errorf("server.trusted_proxies%w", err)
	}
	if len(c.Sites) == 0 {
		return errors.New("sites: empty (at least one site is needed)")
	}
	seen := map[string]int{}
	for i, s := range c.Sites {
		f := fmt.Sprintf("sites[%d]", i)
		if len(s.Hosts) == 0 {
			return fmt.Errorf("%s.hosts: empty", f)
		}
		for j, h := range s.Hosts {
			hf := fmt.Sprintf("%s.hosts[%d]", f, j)
			if name, ok := splitHost(h); !ok || len(name) != len(strings.TrimSuffix(h, ".")) {
				return fmt.Errorf("%s: invalid host %q (a bare host name, no port)", hf, h)
			}
			if k, dup := seen[strings.ToLower(h)]; dup {
				return fmt.Errorf("%s: host %q already belongs to sites[%d]", hf, h, k)
			}
			seen[strings.ToLower(h)] = i
		}
		if s.Origin == "" && len(s.Pool.Servers) == 0 {
			return fmt.Errorf("%s.origin: required (or %s.pool.servers)", f, f)
		}
		if s.Origin != "" {
			u, err := url.Parse(s.Origin)
			if err != nil {
				return fmt.Errorf("%s.origin: %v", f, err)
			}
			if u.Scheme != "http" && u.Scheme != "https" {
				return fmt.Errorf("%s.origin: scheme must be http or https, got %q", f, u.Scheme)
			}
			if u.Host == "" {
				return fmt.Errorf("%s.origin: missing host", f)
			}
			if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
				return fmt.Errorf("%s.origin: must not have a path or query (%q)", f, s.Origin)
			}
		}
		switch {
		case s.Timeout < 0:
			return fmt.Errorf("%s.timeout: negative", f)
		case s.ConnectTimeout < 0:
			return fmt.Errorf("%s.connect_timeout: negative", f)
		case s.ReadTimeout < 0:
			return fmt.Errorf("%s.read_timeout: negative", f)
		case s.AcceptEncoding != AcceptEncodingNormalize && s.AcceptEncoding != AcceptEncodingAsSent:
			return fmt.Errorf("%s.accept_encoding: %q (want %s or %s)", f, s.AcceptEncoding, AcceptEncodingNormalize, AcceptEncodingAsSent)
		}
		if err := s.CacheKey.validate(f + ".cache_key"); err != nil {
			return err
		}
		switch {
		case s.Grace.WhileRevalidate < 0:
			return fmt.Errorf("%s.grace.while_revalidate: negative", f)
		case s.Grace.IfError < 0:
			return fmt.Errorf("%s.grace.if_error: negative", f)
		case s.Grace.IfUnreachable != nil && *s.Grace.IfUnreachable < 0:
			return fmt.Errorf("%s.grace.if_unreachable: negative", f)
		case s.Grace.StaleTimeout != nil && *s.Grace.StaleTimeout < 0:
			return fmt.Errorf("%s.grace.stale_timeout: negative", f)
		case s.DefaultTTL < 0:
			return fmt.Errorf("%s.default_ttl: negative", f)
		case s.SliceBytes < 0:
			return fmt.Errorf("%s.slice_bytes: negative (%d)", f, s.SliceBytes)
		case s.SliceBytes > 0 && s.SliceBytes < minSliceBytes:
			return fmt.Errorf("%s.slice_bytes: %d is below the minimum %d (64 KiB); 0 turns slicing off", f, s.SliceBytes, minSliceBytes)
		case s.SliceBytes > c.Cache.MaxObjectBytes:
			return fmt.Errorf("%s.slice_bytes: %d exceeds cache.max_object_bytes %d (a slice must be storable)", f, s.SliceBytes, c.Cache.MaxObjectBytes)
		}
		seenShield := map[string]bool{}
		for j, r := range s.Shield.Regions {
			if r == "" {
				return fmt.Errorf("%s.shield.regions[%d]: empty", f, j)
			}
			if seenShield[r] {
				return fmt.Errorf("%s.shield.regions[%d]: %q listed twice (a shield loop)", f, j, r)
			}
			seenShield[r] = true
		}
		if err := s.Pool.Validate(); err != nil {
			return fmt.Errorf("%s.pool: %w", f, err)
		}
		if err := s.Limits.Validate(); err != nil {
			return fmt.Errorf("%s.limits: %w", f, err)
		}
	}
	return nil
}

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !policy.IsTchar(s[i]) {
			return false
		}
	}
	return s != ""
}

func checkAddr(field, addr string) error {
	if addr == "" {
		return fmt.Errorf("%s: required", field)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%s: %v", field, err)
	}
	return nil
}

// ParseConfig decodes an edge's part of a node config strictly (unknown
// fields are errors), fills in defaults and validates. A node's whole file
// (admin, cluster, regions) is read by edge/node.Load.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return c, nil
}
