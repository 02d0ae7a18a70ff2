package edge

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/meridiancdn/meridian/edge/certs"
	"github.com/meridiancdn/meridian/edge/compress"
	"github.com/meridiancdn/meridian/edge/limit"
	"github.com/meridiancdn/meridian/edge/policy"
	"github.com/meridiancdn/meridian/edge/rules"
	"github.com/meridiancdn/meridian/edge/store"
	"github.com/meridiancdn/meridian/origin"
	"github.com/meridiancdn/meridian/origin/yamlconf"
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

	// Purge bounds the bans (prefix, host, site and expression purges).
	Purge PurgeConfig `yaml:"purge"`

	// Sites maps Host names to origins. A request for any other Host is
	// refused with 421 and never forwarded.
	Sites []SiteConfig `yaml:"sites"`

	// AccessLog is where and how one line per answered request is
	// written. Default: JSON lines on stdout.
	AccessLog AccessLogConfig `yaml:"access_log"`
	// Tracing is W3C trace context propagation and OTLP span export.
	// Default: propagation only, no export.
	Tracing TracingConfig `yaml:"tracing"`
}

// PurgeConfig bounds the bans that prefix, host, site and expression
// purges make (see the purge API in deploy/README.md): a ban is checked
// at every lookup of an entry older than it, and by a background sweeper
// that retires it once it has checked the whole store.
type PurgeConfig struct {
	// MaxBans caps the active bans; past it a new ban is refused (429 on
	// the purge API) until the sweeper retires some. Default 1024: each
	// lookup of an entry older than a ban checks it, so the cap bounds
	// what bans add to a hit (a regular expression of at most 1 KiB each);
	// a repeated ban replaces its twin instead of counting twice.
	MaxBans int `yaml:"max_bans"`
	// BanSweepInterval is how long the sweeper waits after a ban before
	// it walks the store, and between walks while bans remain: a burst of
	// bans shares one walk. Lookups apply bans at once whatever it says.
	// Default 5s.
	BanSweepInterval time.Duration `yaml:"ban_sweep_interval"`
}

// AccessLogConfig is the access log: one line per answered request, on
// every front and protocol (see AccessLog). In YAML it is a mapping, or a
// scalar that gives its destination alone ("access_log: off").
type AccessLogConfig struct {
	// Destination is "stdout", "stderr", "off", or the absolute path of
	// a file, opened for appending (created with mode 0640) and reopened
	// on SIGUSR1, the logrotate convention (move the file, then signal;
	// no copytruncate needed). Default "stdout", as nginx's access log.
	Destination string `yaml:"destination"`
	// Format is "json" (one object per line) or "combined" (the
	// Apache/nginx combined log format, which goaccess, awstats and
	// most log tools read). Default "json".
	Format string `yaml:"format"`
}

// UnmarshalYAML reads a mapping, or a scalar as the destination alone.
// An unknown key is an error, as everywhere in the config.
func (a *AccessLogConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*a = AccessLogConfig{Destination: n.Value}
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: access_log: want a destination (stdout, stderr, off or a file path) or a mapping of destination and format", n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: access_log.%s: want a string", v.Line, k.Value)
		}
		switch k.Value {
		case "destination":
			a.Destination = v.Value
		case "format":
			a.Format = v.Value
		default:
			hint := "want destination or format"
			if near := yamlconf.Nearest(k.Value, []string{"destination", "format"}); near != "" {
				hint = "did you mean " + near + "?"
			}
			return fmt.Errorf("line %d: access_log.%s: unknown field (%s)", k.Line, k.Value, hint)
		}
	}
	return nil
}

// WithDefaults fills in the unset fields.
func (a AccessLogConfig) WithDefaults() AccessLogConfig {
	if a.Destination == "" {
		a.Destination = "stdout"
	}
	if a.Format == "" {
		a.Format = AccessLogJSON
	}
	return a
}

// Validate reports the first problem, naming the field below access_log.
func (a AccessLogConfig) Validate() error {
	switch a.Format {
	case AccessLogJSON, AccessLogCombined:
	default:
		return fmt.Errorf("format: %q (want json or combined)", a.Format)
	}
	switch d := a.Destination; {
	case d == "stdout" || d == "stderr" || d == "off":
	case strings.HasPrefix(d, "/") && !strings.HasSuffix(d, "/"):
	default:
		return fmt.Errorf("destination: %q (want stdout, stderr, off or an absolute file path)", d)
	}
	return nil
}

// TracingConfig is W3C trace context (traceparent, tracestate). A valid
// traceparent from the client is passed on to peers, the shield and the
// origin, and a request without one (or with a malformed one) gets a new
// trace there, so that the origin's logs and the edge's access log
// (trace_id) can be joined. With OTLPEndpoint set, each edge also
// records a span per request it serves, the parent of what it sends
// upstream, and exports them: a request can be followed edge → owner →
// shield → origin. Without it nothing is recorded (no cost on hits).
type TracingConfig struct {
	// OTLPEndpoint is the OTLP/HTTP collector's base URL, such as
	// "http://otel-collector:4318" (spans go to its /v1/traces; https
	// for TLS). The OTEL_EXPORTER_OTLP_HEADERS environment variable adds
	// headers (an API key). Default "": no spans are recorded.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// SampleRatio is the share of the traces this edge starts that are
	// recorded, from 0 to 1; a request whose traceparent comes with a
	// sampling decision follows it (parent-based sampling, as the
	// OpenTelemetry SDK's default). Default 1, the SDK's default: lower
	// it for busy edges (0.01 records one trace in a hundred).
	SampleRatio float64 `yaml:"sample_ratio"`
	// ServiceName is the spans' service.name. Default "meridian".
	ServiceName string `yaml:"service_name"`
}

// Exporting reports whether spans are recorded and exported.
func (t TracingConfig) Exporting() bool { return t.OTLPEndpoint != "" }

// TLSConfig is the HTTPS (HTTP/1.1 and HTTP/2) and HTTP/3 listener and the
// certificates it serves, chosen by the client's server name (SNI): a
// site's own (SiteConfig.TLS), then Certificates by exact name, then by
// wildcard, then the default one (CertFile and KeyFile). See edge/certs.
type TLSConfig struct {
	// Listen is the TCP (HTTPS) and UDP (HTTP/3) address. Required.
	Listen string `yaml:"listen"`
	// CertFile and KeyFile are PEM files: the default certificate, for
	// clients whose server name no other certificate covers or that send
	// none. Optional when Certificates or a site's tls gives others
	// (without it such clients fail the handshake).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Certificates are more certificates, each served for the DNS names
	// of its subject alternative names (a wildcard one label deep). When
	// two cover one name, the first listed wins. Default none.
	Certificates []certs.KeyPair `yaml:"certificates"`
	// ReloadInterval is how often the certificate files are checked for a
	// change (modification time or size); a changed one is served from
	// the next handshake on, and one that does not load is logged and
	// the running one kept. Every file is also re-read on SIGHUP.
	// Default 30s; negative: only on SIGHUP.
	ReloadInterval time.Duration `yaml:"reload_interval"`
	// ACME is how the sites with tls.acme obtain their certificates.
	// Default: Let's Encrypt, storage in /var/lib/meridian/acme.
	ACME certs.ACMEConfig `yaml:"acme"`
	// DisableHTTP3 turns off the QUIC listener and Alt-Svc. Default false.
	DisableHTTP3 bool `yaml:"disable_http3"`
}

// SiteTLSConfig is a site's own certificate: from files, served only for
// the site's hosts that it covers, or obtained over ACME for every host.
// Default none: the site is served by the edge's tls.certificates or its
// default certificate.
type SiteTLSConfig struct {
	// CertFile and KeyFile are PEM files (chain leaf first; key). Both
	// or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ACME obtains and renews a certificate for each of the site's hosts
	// (see TLSConfig.ACME). Exclusive with CertFile. Default false.
	ACME bool `yaml:"acme"`
}

// CacheConfig bounds the store.
type CacheConfig struct {
	// MaxBytes is the store's budget in bytes, headers and bodies counted.
	// Default 256 MiB.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxObjectBytes is the largest body stored in memory. A larger
	// response is written to the disk tier as it arrives, if there is
	// one and it takes the body (up to an eighth of Disk.MaxBytes), else
	// streams through without being held whole. Default 8 MiB.
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
	// headers come, and a body of unknown length as it grows (one that
	// gets no room within InflightWait streams through unstored, whole,
	// since its status is sent). When the budget is full, new misses
	// wait up to InflightWait, then get 503 with Retry-After (or a stale
	// copy); hits are served as ever.
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

	// Disk is the disk tier under the memory store. Takes effect at
	// restart.
	Disk DiskConfig `yaml:"disk"`
}

// DiskConfig is the disk tier under the memory store (package
// edge/store): entries evicted from memory, or larger than its whole
// budget, are written there, and bodies above MaxObjectBytes as they
// arrive (see fill_disk.go); a hit on disk is streamed from its file; a
// restart serves what is on disk at once.
type DiskConfig struct {
	// Path is the tier's directory, created if missing; one edge process
	// at a time may use it. Default "": no disk tier.
	Path string `yaml:"path"`
	// MaxBytes is the tier's budget in bytes of files on disk. Default
	// 10 GiB; at least 4 MiB.
	MaxBytes int64 `yaml:"max_bytes"`
}

// ServerConfig holds client-side timeouts and limits.
type ServerConfig struct {
	// ReadHeaderTimeout bounds reading a request's header. Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes idle keep-alive connections. Default 120s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// SendTimeout closes a connection whose answer makes no progress
	// for this long: a client that stops reading (a slow-read attack)
	// holds no connection, goroutine or socket buffer for longer, while
	// a slow client that keeps reading is never cut (nginx's
	// send_timeout). On HTTP/2 and HTTP/3 it holds each stream too: a
	// stream its client gives no flow-control credit for this long is
	// reset, though the connection makes progress. Default 60s.
	SendTimeout time.Duration `yaml:"send_timeout"`
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
	// Front is the server of the plain HTTP/1.1 listener and of the
	// HTTPS listener's HTTP/2: FrontNetHTTP (net/http; x/net's HTTP/2
	// server) or FrontFast (plain fresh hits written straight from the
	// entry, everything else handed to net/http, or relayed to x/net's
	// HTTP/2 server). Both serve the same cache with the same semantics.
	// Default "fast": in the side-by-side benchmark (deploy/bench) it
	// serves 1 KiB hits at about twice net/http's rate and half nginx's
	// CPU per request over HTTP/1.1, and at about nginx's CPU per
	// request over HTTP/2 (a third of x/net's server's).
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
	// MaxUpgraded caps the upgraded connections (WebSocket and other
	// Upgrade pass-through, see SiteConfig.Upgrade) open at once on this
	// edge, over every site; an upgrade past it is answered 503 with
	// Retry-After. Default 1024: each costs two sockets, two goroutines
	// and two 32 KiB copy buffers (about 100 KiB), so 1024 hold some 100
	// MiB, and it leaves most of max_connections to ordinary requests.
	// -1 removes the cap.
	MaxUpgraded int `yaml:"max_upgraded"`
}

// The values of ServerConfig.Front.
const (
	// FrontNetHTTP serves HTTP/1.1 with net/http alone.
	FrontNetHTTP = "nethttp"
	// FrontFast answers plain fresh hits with Meridian's own HTTP/1.1
	// reader and writer (and HTTP/2 frame loop), and hands every other
	// request to net/http (every other stream to x/net's HTTP/2 server).
	FrontFast = "fast"
)

// SiteConfig is one site: the Host names it answers and where misses go.
type SiteConfig struct {
	// Hosts are the Host header values (without port) this site answers.
	// Required; matching is case-insensitive.
	Hosts []string `yaml:"hosts"`
	// TLS is the site's own certificate (see SiteTLSConfig). Default
	// none.
	TLS SiteTLSConfig `yaml:"tls"`
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
	// ForwardOverrideFields sends a client's X-Original-URL,
	// X-Rewrite-URL, X-HTTP-Method-Override, X-HTTP-Method,
	// X-Method-Override and X-Host on fills. Default false: a fill, whose
	// answer is stored under the target, method and host the edge saw,
	// goes without them, so that an origin framework that honours them
	// cannot be made to store another page (or an error) under an
	// innocent URL. Pass-through methods keep them either way (method
	// tunnelling through POST).
	ForwardOverrideFields bool `yaml:"forward_override_fields"`
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
	// Compression compresses responses on the fly (gzip, brotli, zstd)
	// and caches each coding once, and decodes what the origin compressed
	// for clients that do not accept it (see compress.Config). Default
	// off.
	Compression compress.Config `yaml:"compression"`
	// Upgrade passes protocol upgrades (WebSocket) through to the origin
	// over HTTP/1.1 (see UpgradeConfig). Default: WebSocket allowed.
	Upgrade UpgradeConfig `yaml:"upgrade"`
	// AltSvc is the site's Alt-Svc (RFC 7838): "auto" (the default)
	// advertises the edge's HTTP/3 on its HTTPS answers (HTTP/1.1 over
	// TLS and HTTP/2) when tls.disable_http3 is false; "off" sends none,
	// on any front; any other value is sent as it is on every answer of
	// every front (plain HTTP/1.1, both fronts, HTTPS, HTTP/3), e.g.
	// 'h3=":443"; ma=86400' when a load balancer in front publishes
	// another port, or "clear". The edge's value replaces the origin's
	// (which stays as stored: on the plain front with "auto", clients
	// get the origin's); it is never stored.
	AltSvc string `yaml:"alt_svc"`
	// PurgeToken is the site's own purge token: as a bearer token it
	// purges this site's objects, and no other site's (on the purge API
	// and with the PURGE method on the public port); the admin token
	// (admin.token) purges every site. At least 16 bytes, distinct for
	// every site. Default none: only the admin token purges the site.
	PurgeToken string `yaml:"purge_token"`
	// PurgeTokenFile holds PurgeToken instead (read at start and at each
	// reload; white space around it is ignored). Exclusive with
	// PurgeToken. Default none.
	PurgeTokenFile string `yaml:"purge_token_file"`
	// SliceBytes, when not 0, answers the site's GETs and HEADs from
	// slices of this many bytes (nginx's slice module): each fetched
	// upstream with "Range: bytes=a-b", stored as its own entry, filled
	// once however many clients want it, and owned on the region's ring
	// on its own, so that objects larger than cache.max_object_bytes are
	// cached and spread over the region. Every object of the site is
	// sliced (a small one is one slice): turn it on for the sites that
	// serve large files. Slices are asked for, stored and served in the
	// identity coding: a sliced site does not compress (compression is
	// refused with it). Between 64 KiB and cache.max_object_bytes; 1-4
	// MiB suits video and downloads. Default 0: off.
	SliceBytes int64 `yaml:"slice_bytes"`
	// Limits caps each client's rate of requests and its requests in
	// flight on this site, keyed by the client's address (an IPv6
	// client's /64), over a bounded table of clients (see limit.Config).
	// Default: no limits. Its name defaults to the site's first host.
	Limits limit.Config `yaml:"limits"`

	// Rules are the site's header rules (headers), redirects and
	// rewrites (redirects), signed URLs (signed_urls) and geo access
	// control (geo_access), as fields of the site itself (see
	// edge/rules for each and for the order they apply in). Default
	// none: a site without rules pays nothing for them.
	Rules rules.Config `yaml:",inline"`
}

// UpgradeConfig is a site's protocol upgrade pass-through (RFC 9110
// §7.8): an HTTP/1.1 GET with Connection: upgrade and an allowed Upgrade
// protocol goes to the origin with its Upgrade field, and when the
// origin switches protocols (101) the edge splices the two connections
// until either side closes or both are idle for IdleTimeout. Upgraded
// connections are never cached, and count against
// server.max_upgraded.
//
// WebSocket is allowed by default, as Cloudflare and CloudFront do
// (nginx needs proxy_set_header lines for it): an operator putting a
// site behind the edge expects its WebSocket endpoints to keep working,
// the origin decides whether to switch, and the idle timeout and the
// edge-wide cap bound what the connections hold. HTTP/2's extended
// CONNECT (RFC 8441) is not supported: Go's HTTP/2 server does not offer
// it (SETTINGS_ENABLE_CONNECT_PROTOCOL) unless GODEBUG=http2xconnect=1,
// so WebSocket clients open an HTTP/1.1 connection (over TLS too), and
// a CONNECT of any kind is refused (405).
type UpgradeConfig struct {
	// Protocols are the Upgrade protocol names passed through
	// (case-insensitive; a version suffix such as "/13" is ignored).
	// Default [websocket]; an empty list ([]) turns upgrades off: the
	// Upgrade field is then removed, as any hop-by-hop field.
	Protocols []string `yaml:"protocols"`
	// IdleTimeout closes an upgraded connection on which neither side
	// sent a byte for this long. Default 120s: above the 30-60s
	// keep-alive pings WebSocket applications commonly send (nginx's
	// proxy_read_timeout, 60s, closes quieter ones; Cloudflare's is
	// 100s).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// DrainGrace is how long an upgraded connection stays open once the
	// edge drains (graceful shutdown): the application can move its
	// clients, which reconnect to another edge; then the edge closes
	// it. Default 5s, well inside the default server.shutdown_timeout.
	DrainGrace time.Duration `yaml:"drain_grace"`
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
	if c.TLS != nil {
		t := *c.TLS
		if t.ReloadInterval == 0 {
			t.ReloadInterval = certs.DefaultReloadInterval
		}
		t.ACME = t.ACME.WithDefaults()
		c.TLS = &t
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
	if c.Cache.Disk.Path != "" && c.Cache.Disk.MaxBytes == 0 {
		c.Cache.Disk.MaxBytes = 10 << 30
	}
	c.AccessLog = c.AccessLog.WithDefaults()
	if c.Tracing.SampleRatio == 0 {
		c.Tracing.SampleRatio = 1
	}
	if c.Tracing.ServiceName == "" {
		c.Tracing.ServiceName = "meridian"
	}
	if c.Server.ReadHeaderTimeout == 0 {
		c.Server.ReadHeaderTimeout = 10 * time.Second
	}
	if c.Server.IdleTimeout == 0 {
		c.Server.IdleTimeout = 120 * time.Second
	}
	if c.Server.SendTimeout == 0 {
		c.Server.SendTimeout = 60 * time.Second
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
	if c.Purge.MaxBans == 0 {
		c.Purge.MaxBans = 1024
	}
	if c.Purge.BanSweepInterval == 0 {
		c.Purge.BanSweepInterval = 5 * time.Second
	}
	if c.Server.MaxConnections == 0 {
		c.Server.MaxConnections = 4096
	}
	if c.Server.MaxConnectionsPerIP == 0 {
		c.Server.MaxConnectionsPerIP = 128
	}
	if c.Server.MaxUpgraded == 0 {
		c.Server.MaxUpgraded = 1024
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
		s.Rules = s.Rules.WithDefaults()
		s.Compression = s.Compression.WithDefaults()
		if s.Upgrade.Protocols == nil {
			s.Upgrade.Protocols = []string{"websocket"}
		}
		if s.Upgrade.IdleTimeout == 0 {
			s.Upgrade.IdleTimeout = 120 * time.Second
		}
		if s.Upgrade.DrainGrace == 0 {
			s.Upgrade.DrainGrace = 5 * time.Second
		}
		if s.AltSvc == "" {
			s.AltSvc = AltSvcAuto
		}
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
	if err := c.validateTLS(); err != nil {
		return err
	}
	if err := c.AccessLog.Validate(); err != nil {
		return fmt.Errorf("access_log.%w", err)
	}
	if err := c.Tracing.validate(); err != nil {
		return fmt.Errorf("tracing.%w", err)
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
	case c.Cache.Disk.MaxBytes < 0:
		return fmt.Errorf("cache.disk.max_bytes: negative (%d)", c.Cache.Disk.MaxBytes)
	case c.Cache.Disk.Path != "" && c.Cache.Disk.MaxBytes < store.MinDiskBytes:
		return fmt.Errorf("cache.disk.max_bytes: %d is below the minimum %d", c.Cache.Disk.MaxBytes, store.MinDiskBytes)
	case c.Cache.Disk.Path == "" && c.Cache.Disk.MaxBytes != 0:
		return errors.New("cache.disk.path: required with cache.disk.max_bytes")
	case c.Server.ReadHeaderTimeout < 0:
		return errors.New("server.read_header_timeout: negative")
	case c.Server.IdleTimeout < 0:
		return errors.New("server.idle_timeout: negative")
	case c.Server.SendTimeout < 0:
		return errors.New("server.send_timeout: negative")
	case c.Server.MaxHeaderBytes < 0:
		return errors.New("server.max_header_bytes: negative")
	case c.Server.ShutdownTimeout < 0:
		return errors.New("server.shutdown_timeout: negative")
	case c.Server.Front != FrontNetHTTP && c.Server.Front != FrontFast:
		return fmt.Errorf("server.front: unknown %q (want %q or %q)", c.Server.Front, FrontNetHTTP, FrontFast)
	case c.Server.MaxConnections < -1:
		return fmt.Errorf("server.max_connections: %d: want a count, or -1 for no cap", c.Server.MaxConnections)
	case c.Server.MaxUpgraded < -1:
		return fmt.Errorf("server.max_upgraded: %d: want a count, or -1 for no cap", c.Server.MaxUpgraded)
	case c.Server.MaxConnectionsPerIP < -1:
		return fmt.Errorf("server.max_connections_per_ip: %d: want a count, or -1 for no cap", c.Server.MaxConnectionsPerIP)
	case c.Server.MaxConnections > 0 && c.Server.MaxConnectionsPerIP > c.Server.MaxConnections:
		return fmt.Errorf("server.max_connections_per_ip: %d exceeds server.max_connections %d", c.Server.MaxConnectionsPerIP, c.Server.MaxConnections)
	}
	if _, err := parseProxies(c.Server.TrustedProxies); err != nil {
		return fmt.Errorf("server.trusted_proxies%w", err)
	}
	switch {
	case c.Purge.MaxBans < 0:
		return fmt.Errorf("purge.max_bans: negative (%d)", c.Purge.MaxBans)
	case c.Purge.BanSweepInterval < 0:
		return errors.New("purge.ban_sweep_interval: negative")
	}
	if len(c.Sites) == 0 {
		return errors.New("sites: empty (at least one site is needed)")
	}
	seen := map[string]int{}
	tokens := map[string]int{}
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
		if err := c.validateSiteTLS(i); err != nil {
			return err
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
		if err := s.Compression.Validate(); err != nil {
			return fmt.Errorf("%s.compression.%w", f, err)
		}
		if s.Compression.Enabled && s.AcceptEncoding == AcceptEncodingAsSent {
			return fmt.Errorf("%s.compression.enabled: needs accept_encoding %s (the edge chooses one coding per request), not %s", f, AcceptEncodingNormalize, AcceptEncodingAsSent)
		}
		for j, p := range s.Upgrade.Protocols {
			if !isToken(p) {
				return fmt.Errorf("%s.upgrade.protocols[%d]: %q is not a protocol name", f, j, p)
			}
		}
		if s.Upgrade.IdleTimeout < 0 {
			return fmt.Errorf("%s.upgrade.idle_timeout: negative", f)
		}
		if s.Upgrade.DrainGrace < 0 {
			return fmt.Errorf("%s.upgrade.drain_grace: negative", f)
		}
		if err := checkAltSvc(s.AltSvc); err != nil {
			return fmt.Errorf("%s.alt_svc: %w", f, err)
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
		case s.SliceBytes > 0 && s.Compression.Enabled:
			return fmt.Errorf("%s.slice_bytes: not with compression.enabled (slices are ranges of the identity body, which a sliced site serves as it is: compress text on a site of its own)", f)
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
		if err := s.Rules.Validate(f + "."); err != nil {
			return err
		}
		switch t := s.PurgeToken; {
		case t != "" && s.PurgeTokenFile != "":
			return fmt.Errorf("%s.purge_token: exclusive with %s.purge_token_file", f, f)
		case t == "":
		case len(t) < minPurgeToken:
			return fmt.Errorf("%s.purge_token: shorter than %d bytes (it is accepted on the public port: make it unguessable)", f, minPurgeToken)
		case strings.ContainsAny(t, " \t\r\n"):
			return fmt.Errorf("%s.purge_token: contains white space", f)
		default:
			if k, dup := tokens[t]; dup {
				return fmt.Errorf("%s.purge_token: the same as sites[%d].purge_token (a site's token must purge that site alone)", f, k)
			}
			tokens[t] = i
		}
	}
	return nil
}

// readPurgeToken returns the site's purge token: PurgeToken, or the
// content of PurgeTokenFile, checked as PurgeToken is. The error names
// the field (after the site's prefix).
func (s SiteConfig) readPurgeToken() (string, error) {
	if s.PurgeTokenFile == "" {
		return s.PurgeToken, nil
	}
	b, err := os.ReadFile(s.PurgeTokenFile)
	if err != nil {
		return "", fmt.Errorf("purge_token_file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	switch {
	case len(t) < minPurgeToken:
		return "", fmt.Errorf("purge_token_file: %s: a token shorter than %d bytes", s.PurgeTokenFile, minPurgeToken)
	case strings.ContainsAny(t, " \t\r\n"):
		return "", fmt.Errorf("purge_token_file: %s: the token contains white space", s.PurgeTokenFile)
	}
	return t, nil
}

// minPurgeToken is the shortest purge token accepted: PURGE is served on
// the public port, so a token must not be guessable.
const minPurgeToken = 16

// validateTLS checks the tls section.
func (c Config) validateTLS() error {
	t := c.TLS
	if t == nil {
		return nil
	}
	if err := checkAddr("tls.listen", t.Listen); err != nil {
		return err
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		return errors.New("tls.key_file: required with tls.cert_file")
	case t.KeyFile != "" && t.CertFile == "":
		return errors.New("tls.cert_file: required with tls.key_file")
	}
	for i, p := range t.Certificates {
		switch {
		case p.CertFile == "":
			return fmt.Errorf("tls.certificates[%d].cert_file: required", i)
		case p.KeyFile == "":
			return fmt.Errorf("tls.certificates[%d].key_file: required", i)
		}
	}
	some := t.CertFile != "" || len(t.Certificates) > 0
	for _, s := range c.Sites {
		some = some || s.TLS != (SiteTLSConfig{})
	}
	if !some {
		return errors.New("tls.cert_file: required (or tls.certificates, or a site's tls)")
	}
	if err := t.ACME.Validate(); err != nil {
		return fmt.Errorf("tls.acme.%w", err)
	}
	return nil
}

// validateSiteTLS checks sites[i].tls.
func (c Config) validateSiteTLS(i int) error {
	s := c.Sites[i].TLS
	f := fmt.Sprintf("sites[%d].tls", i)
	if s == (SiteTLSConfig{}) {
		return nil
	}
	switch {
	case c.TLS == nil:
		return fmt.Errorf("%s: needs the edge's tls section (tls.listen)", f)
	case s.ACME && (s.CertFile != "" || s.KeyFile != ""):
		return fmt.Errorf("%s.acme: exclusive with cert_file and key_file", f)
	case !s.ACME && s.CertFile == "":
		return fmt.Errorf("%s.cert_file: required with key_file", f)
	case !s.ACME && s.KeyFile == "":
		return fmt.Errorf("%s.key_file: required with cert_file", f)
	}
	if s.ACME {
		for j, h := range c.Sites[i].Hosts {
			name := strings.TrimSuffix(h, ".")
			if net.ParseIP(name) != nil || !strings.Contains(name, ".") {
				return fmt.Errorf("sites[%d].hosts[%d]: %q: ACME certifies public DNS names only (no IP address, no single label); give this site a cert_file", i, j, h)
			}
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
// fields are errors; sizes and durations take units: see
// origin/yamlconf), fills in defaults and validates. A node's whole file
// (admin, cluster, regions) is read by edge/node.Load.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	if err := yamlconf.Decode(data, &c); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

func (t TracingConfig) validate() error {
	if !(t.SampleRatio >= 0 && t.SampleRatio <= 1) {
		return fmt.Errorf("sample_ratio: %v (want 0 to 1)", t.SampleRatio)
	}
	if t.OTLPEndpoint != "" {
		u, err := url.Parse(t.OTLPEndpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("otlp_endpoint: %q (want an http or https URL, such as http://otel-collector:4318)", t.OTLPEndpoint)
		}
	}
	return nil
}
