package geo

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/meridiancdn/meridian/origin/yamlconf"
)

// Config is the geo steering service's configuration, read from one YAML
// file. Only Regions is required: every other field documents its default,
// and the defaults are filled in by [Config.WithDefaults].
type Config struct {
	// Database is the path of a GeoIP2 or GeoLite2 City or Country database
	// (.mmdb). [LoadConfig] resolves a relative path against the config
	// file's folder. Default "": no GeoIP, so every client that no pin
	// covers goes to DefaultRegion.
	Database string `yaml:"database"`
	// DefaultRegion receives private, loopback and unknown addresses (they
	// are placed at its point, so when it is down its nearest healthy
	// neighbour answers). Default: the first region.
	DefaultRegion string `yaml:"default_region"`
	// MaxAccuracyKm is the largest GeoIP accuracy radius, in km, for which
	// a record's coordinates are used; a vaguer record falls back to its
	// country's centroid. Default 500 km.
	MaxAccuracyKm float64 `yaml:"max_accuracy_km"`
	// Pins send countries or networks to a region regardless of distance.
	Pins Pins `yaml:"pins"`
	// Regions are the places edges run. Required.
	Regions []Region `yaml:"regions"`
	// Picker chooses among the healthy regions.
	Picker PickerConfig `yaml:"picker"`
	// Probe sets the health checks and the hysteresis around them.
	// Default: [DefaultProbeConfig].
	Probe ProbeConfig `yaml:"probe"`
	// DNS is the authoritative DNS responder.
	DNS DNSConfig `yaml:"dns"`
	// HTTP is the /route, /redirect, /regions and /healthz endpoint.
	HTTP HTTPConfig `yaml:"http"`
}

// Pins override the distance rule: a client in a pinned network or country
// is placed at the pinned region's point. Networks are matched first,
// longest prefix winning, then countries.
type Pins struct {
	// Countries maps ISO 3166-1 alpha-2 codes ("DE") to region names.
	Countries map[string]string `yaml:"countries"`
	// Networks maps CIDRs ("203.0.113.0/24") to region names.
	Networks map[string]string `yaml:"networks"`
}

// PickerConfig chooses the [Picker].
type PickerConfig struct {
	// Policy is "nearest" ([Nearest]: the nearest healthy region) or
	// "spread" ([Spread]: a failed region's clients are shared among the
	// healthy regions within SlackKm, by capacity). Default "nearest".
	Policy string `yaml:"policy"`
	// SlackKm is how much farther than the nearest healthy region another
	// region may be and still share a failed region's clients ("spread"
	// only). Default 1500 km: about the distance between neighbouring
	// continental regions (Frankfurt–London is 640 km, Frankfurt–Madrid
	// 1450 km), well short of an ocean.
	SlackKm float64 `yaml:"slack_km"`
}

// ProbeConfig sets the active health checks (GET http://EDGE/healthz) and
// the hysteresis that keeps a region from flapping. The numbers follow
// gdnsd, Route 53 and Envoy's outlier detection.
type ProbeConfig struct {
	// Interval between probe rounds. Default 1s.
	Interval time.Duration `yaml:"interval"`
	// Timeout of one probe; must be shorter than Interval. Default 500ms.
	Timeout time.Duration `yaml:"timeout"`
	// Path probed on each edge. Default "/healthz".
	Path string `yaml:"path"`
	// Fall is how many consecutive failures mark an edge down. Default 3.
	Fall int `yaml:"fall"`
	// Rise is how many consecutive successes mark a down edge up again;
	// more than Fall so that coming back takes more evidence than going.
	// Default 6.
	Rise int `yaml:"rise"`
	// HoldDown is how long a region whose edges are back must stay healthy
	// before traffic returns, multiplied by the number of times it failed
	// within FailureWindow. Default 30s.
	HoldDown time.Duration `yaml:"hold_down"`
	// HoldDownMax caps the growing hold-down. Default 5m.
	HoldDownMax time.Duration `yaml:"hold_down_max"`
	// FailureWindow is how long a region's failure counts toward its
	// hold-down. Default 15m: longer than HoldDownMax, so a region that
	// flaps through a whole maximal hold-down still remembers why.
	FailureWindow time.Duration `yaml:"failure_window"`
	// Steps are the percentages of clients sent back to a recovered region,
	// in order, each held for StepHold; the last must be 100. Clients are
	// chosen by a hash of their subnet, so a client that went back stays.
	// Default [10, 50, 100].
	Steps []float64 `yaml:"steps"`
	// StepHold is how long each step lasts. Default 10s.
	StepHold time.Duration `yaml:"step_hold"`
}

// DNSConfig is the authoritative DNS responder for the CDN host name.
type DNSConfig struct {
	// Listen is the UDP and TCP address. Default "": [Service.Run] serves
	// no DNS (callers may serve [Service.DNSHandler] themselves).
	Listen string `yaml:"listen"`
	// Hostname is the CDN name answered with A/AAAA records; names below
	// it get NXDOMAIN, names outside it REFUSED. Default
	// "cdn.meridian.test." (.test is reserved, RFC 2606).
	Hostname string `yaml:"hostname"`
	// TTL of answers, whole seconds. Default 20s: short, so failover
	// reaches clients quickly, yet long enough to keep resolvers caching.
	TTL time.Duration `yaml:"ttl"`
}

// HTTPConfig is the HTTP steering endpoint.
type HTTPConfig struct {
	// Listen is the TCP address. Default "": [Service.Run] serves no HTTP
	// (callers may serve [Service.Handler] themselves).
	Listen string `yaml:"listen"`
	// TrustedProxies are CIDRs (or single addresses) whose
	// X-Forwarded-For is believed. Default none: the peer address is the
	// client.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// RedirectScheme is the scheme of /redirect answers. Default "https".
	RedirectScheme string `yaml:"redirect_scheme"`
}

// DefaultProbeConfig is the preset for regions on the Internet: one probe
// a second, a 500 ms timeout (well above inter-region round trips of
// 100–300 ms), down after 3 failures (about 3.5 s to fail over), back after
// 6 successes, a 30 s hold-down growing to 5 min for repeat offenders, and
// traffic returning 10% → 50% → 100% over 20 s.
func DefaultProbeConfig() ProbeConfig {
	return ProbeConfig{
		Interval:      time.Second,
		Timeout:       500 * time.Millisecond,
		Path:          "/healthz",
		Fall:          3,
		Rise:          6,
		HoldDown:      30 * time.Second,
		HoldDownMax:   5 * time.Minute,
		FailureWindow: 15 * time.Minute,
		Steps:         []float64{10, 50, 100},
		StepHold:      10 * time.Second,
	}
}

// LocalProbeConfig is the preset for a CDN on one machine's loopback
// (`meridian up`, tests with real sockets): round trips are microseconds,
// so probes run ten times as often with a 50 ms timeout, and the hold-down
// and steps shrink to seconds so a demo shows the whole cycle in under
// half a minute.
func LocalProbeConfig() ProbeConfig {
	return ProbeConfig{
		Interval:      100 * time.Millisecond,
		Timeout:       50 * time.Millisecond,
		Path:          "/healthz",
		Fall:          3,
		Rise:          6,
		HoldDown:      2 * time.Second,
		HoldDownMax:   20 * time.Second,
		FailureWindow: time.Minute,
		Steps:         []float64{10, 50, 100},
		StepHold:      time.Second,
	}
}

// Default values that are not part of a preset.
const (
	defaultMaxAccuracyKm = 500
	defaultSlackKm       = 1500
	defaultHostname      = "cdn.meridian.test."
	defaultTTL           = 20 * time.Second
	defaultScheme        = "https"
)

// WithDefaults returns a copy of c with every unset field given its
// default. It is the one place where defaults live. It does not modify c's
// slices or maps.
func (c Config) WithDefaults() Config {
	if c.DefaultRegion == "" && len(c.Regions) > 0 {
		c.DefaultRegion = c.Regions[0].Name
	}
	if c.MaxAccuracyKm == 0 {
		c.MaxAccuracyKm = defaultMaxAccuracyKm
	}
	regions := make([]Region, len(c.Regions))
	for i, r := range c.Regions {
		if r.Capacity == 0 {
			r.Capacity = 1
		}
		if r.MinHealthy == 0 {
			r.MinHealthy = max(r.Quorum, 1)
		}
		regions[i] = r
	}
	c.Regions = regions
	if c.Picker.Policy == "" {
		c.Picker.Policy = "nearest"
	}
	if c.Picker.SlackKm == 0 {
		c.Picker.SlackKm = defaultSlackKm
	}
	d := DefaultProbeConfig()
	p := &c.Probe
	if p.Interval == 0 {
		p.Interval = d.Interval
	}
	if p.Timeout == 0 {
		p.Timeout = min(d.Timeout, p.Interval/2)
	}
	if p.Path == "" {
		p.Path = d.Path
	}
	if p.Fall == 0 {
		p.Fall = d.Fall
	}
	if p.Rise == 0 {
		p.Rise = d.Rise
	}
	if p.HoldDown == 0 {
		p.HoldDown = d.HoldDown
	}
	if p.HoldDownMax == 0 {
		p.HoldDownMax = max(d.HoldDownMax, p.HoldDown)
	}
	if p.FailureWindow == 0 {
		p.FailureWindow = max(d.FailureWindow, 3*p.HoldDownMax)
	}
	if len(p.Steps) == 0 {
		p.Steps = d.Steps
	}
	if p.StepHold == 0 {
		p.StepHold = d.StepHold
	}
	if c.DNS.Hostname == "" {
		c.DNS.Hostname = defaultHostname
	}
	c.DNS.Hostname = strings.ToLower(dns.Fqdn(c.DNS.Hostname))
	if c.DNS.TTL == 0 {
		c.DNS.TTL = defaultTTL
	}
	if c.HTTP.RedirectScheme == "" {
		c.HTTP.RedirectScheme = defaultScheme
	}
	return c
}

// Validate reports the first problem in c, naming the field
// ("regions[1].edges: empty"). Call it on the result of WithDefaults.
func (c Config) Validate() error {
	if len(c.Regions) == 0 {
		return errors.New("regions: empty (at least one region is needed)")
	}
	names := map[string]int{}
	for i, r := range c.Regions {
		if err := r.validate(fmt.Sprintf("regions[%d]", i), names); err != nil {
			return err
		}
		names[r.Name] = i
	}
	if _, ok := names[c.DefaultRegion]; !ok {
		return fmt.Errorf("default_region: unknown region %q", c.DefaultRegion)
	}
	if math.IsNaN(c.MaxAccuracyKm) || c.MaxAccuracyKm < 0 {
		return fmt.Errorf("max_accuracy_km: %v is negative", c.MaxAccuracyKm)
	}
	for _, cc := range sortedKeys(c.Pins.Countries) {
		f := fmt.Sprintf("pins.countries[%q]", cc)
		if !isCountryCode(cc) {
			return fmt.Errorf("%s: not a two-letter upper-case ISO 3166-1 code", f)
		}
		if _, ok := names[c.Pins.Countries[cc]]; !ok {
			return fmt.Errorf("%s: unknown region %q", f, c.Pins.Countries[cc])
		}
	}
	for _, cidr := range sortedKeys(c.Pins.Networks) {
		f := fmt.Sprintf("pins.networks[%q]", cidr)
		if _, err := netip.ParsePrefix(cidr); err != nil {
			return fmt.Errorf("%s: invalid CIDR", f)
		}
		if _, ok := names[c.Pins.Networks[cidr]]; !ok {
			return fmt.Errorf("%s: unknown region %q", f, c.Pins.Networks[cidr])
		}
	}
	switch c.Picker.Policy {
	case "nearest", "spread":
	default:
		return fmt.Errorf("picker.policy: unknown policy %q (want nearest or spread)", c.Picker.Policy)
	}
	if !(c.Picker.SlackKm >= 0) || math.IsInf(c.Picker.SlackKm, 0) {
		return fmt.Errorf("picker.slack_km: %v is not a non-negative distance", c.Picker.SlackKm)
	}
	if err := c.Probe.validate(); err != nil {
		return err
	}
	if c.DNS.Listen != "" {
		if _, _, err := net.SplitHostPort(c.DNS.Listen); err != nil {
			return fmt.Errorf("dns.listen: %v", err)
		}
	}
	if _, ok := dns.IsDomainName(c.DNS.Hostname); !ok || c.DNS.Hostname == "." {
		return fmt.Errorf("dns.hostname: %q is not a domain name", c.DNS.Hostname)
	}
	if c.DNS.TTL < time.Second || c.DNS.TTL%time.Second != 0 || c.DNS.TTL > 24*time.Hour {
		return fmt.Errorf("dns.ttl: %v is not a whole number of seconds between 1s and 24h", c.DNS.TTL)
	}
	if c.HTTP.Listen != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			return fmt.Errorf("http.listen: %v", err)
		}
	}
	for i, p := range c.HTTP.TrustedProxies {
		if _, err := parseNetwork(p); err != nil {
			return fmt.Errorf("http.trusted_proxies[%d]: invalid CIDR %q", i, p)
		}
	}
	if c.HTTP.RedirectScheme != "http" && c.HTTP.RedirectScheme != "https" {
		return fmt.Errorf("http.redirect_scheme: %q is neither http nor https", c.HTTP.RedirectScheme)
	}
	return nil
}

func (r Region) validate(f string, seen map[string]int) error {
	switch {
	case r.Name == "":
		return fmt.Errorf("%s.name: empty", f)
	case strings.ContainsAny(r.Name, " \t\r\n/\"'"):
		return fmt.Errorf("%s.name: %q has spaces, quotes or slashes", f, r.Name)
	}
	if j, dup := seen[r.Name]; dup {
		return fmt.Errorf("%s.name: %q already names regions[%d]", f, r.Name, j)
	}
	if !(r.Point.Lat >= -90 && r.Point.Lat <= 90) {
		return fmt.Errorf("%s.point.lat: %v outside [-90, 90]", f, r.Point.Lat)
	}
	if !(r.Point.Lon >= -180 && r.Point.Lon <= 180) {
		return fmt.Errorf("%s.point.lon: %v outside [-180, 180]", f, r.Point.Lon)
	}
	if len(r.Edges) == 0 {
		return fmt.Errorf("%s.edges: empty", f)
	}
	edges := map[string]int{}
	for j, e := range r.Edges {
		ef := fmt.Sprintf("%s.edges[%d]", f, j)
		ap, err := netip.ParseAddrPort(e)
		if err != nil {
			return fmt.Errorf("%s: %q is not IP:port (DNS answers need addresses)", ef, e)
		}
		if ap.Port() == 0 {
			return fmt.Errorf("%s: %q has port 0", ef, e)
		}
		if k, dup := edges[e]; dup {
			return fmt.Errorf("%s: %q repeats %s.edges[%d]", ef, e, f, k)
		}
		edges[e] = j
	}
	if r.Hostname != "" {
		if _, err := hostPort(r.Hostname); err != nil {
			return fmt.Errorf("%s.hostname: %v", f, err)
		}
	}
	if !(r.Capacity >= 0) || math.IsInf(r.Capacity, 0) {
		return fmt.Errorf("%s.capacity: %v is not a non-negative number", f, r.Capacity)
	}
	if r.Quorum != 0 && r.Quorum != r.MinHealthy {
		return fmt.Errorf("%s.quorum: %d differs from %s.min_healthy %d (quorum is its old name: set only min_healthy)", f, r.Quorum, f, r.MinHealthy)
	}
	if r.MinHealthy < 1 || r.MinHealthy > len(r.Edges) {
		return fmt.Errorf("%s.min_healthy: %d outside [1, %d edges]", f, r.MinHealthy, len(r.Edges))
	}
	if !(r.MinHealthyShare >= 0 && r.MinHealthyShare <= 1) {
		return fmt.Errorf("%s.min_healthy_share: %v outside [0, 1]", f, r.MinHealthyShare)
	}
	return nil
}

func (p ProbeConfig) validate() error {
	switch {
	case p.Interval <= 0:
		return fmt.Errorf("probe.interval: %v is not positive", p.Interval)
	case p.Timeout <= 0:
		return fmt.Errorf("probe.timeout: %v is not positive", p.Timeout)
	case p.Timeout >= p.Interval:
		return fmt.Errorf("probe.timeout: %v is not shorter than probe.interval %v", p.Timeout, p.Interval)
	case !strings.HasPrefix(p.Path, "/"):
		return fmt.Errorf("probe.path: %q does not start with /", p.Path)
	case p.Fall < 1:
		return fmt.Errorf("probe.fall: %d is less than 1", p.Fall)
	case p.Rise < 1:
		return fmt.Errorf("probe.rise: %d is less than 1", p.Rise)
	case p.HoldDown < 0:
		return fmt.Errorf("probe.hold_down: %v is negative", p.HoldDown)
	case p.HoldDownMax < p.HoldDown:
		return fmt.Errorf("probe.hold_down_max: %v is shorter than probe.hold_down %v", p.HoldDownMax, p.HoldDown)
	case p.FailureWindow <= 0:
		return fmt.Errorf("probe.failure_window: %v is not positive", p.FailureWindow)
	case p.StepHold < 0:
		return fmt.Errorf("probe.step_hold: %v is negative", p.StepHold)
	}
	prev := 0.0
	for i, s := range p.Steps {
		if !(s > prev && s <= 100) {
			return fmt.Errorf("probe.steps[%d]: %v is not above %v and at most 100", i, s, prev)
		}
		prev = s
	}
	if prev != 100 {
		return fmt.Errorf("probe.steps: last step is %v, want 100", prev)
	}
	return nil
}

// ParseConfig decodes YAML strictly (unknown fields are errors, named
// with their line and the nearest known field; durations take units up
// to d for days: see origin/yamlconf), fills in defaults and validates.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	if err := yamlconf.Decode(data, &c); err != nil {
		return Config{}, fmt.Errorf("parse: %w", err)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// LoadConfig reads, parses, fills in and validates the config file at path
// (see [ParseConfig]). A relative Database path is taken relative to the
// file's folder. Errors start with the path.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	if c.Database != "" && !filepath.IsAbs(c.Database) {
		c.Database = filepath.Join(filepath.Dir(path), c.Database)
	}
	return c, nil
}

// CheckFiles reads the files the config names, as [New] reads them:
// the GeoIP database (it opens, and holds cities or countries). The
// error names the field. `meridian validate` runs it.
func (c Config) CheckFiles() error {
	if c.Database == "" {
		return nil
	}
	if _, err := OpenLocator(c.Database, c.MaxAccuracyKm); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	return nil
}

// parseNetwork parses a CIDR or a single address (as a /32 or /128),
// returning the masked prefix with IPv4-mapped addresses unmapped.
func parseNetwork(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return normPrefix(p), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// normPrefix masks p and turns an IPv4-mapped IPv6 prefix (::ffff:a.b.c.d/n,
// n >= 96) into the IPv4 prefix, because addresses are unmapped before they
// are matched.
func normPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// hostPort checks a redirect host: a DNS name or IP, with an optional port.
func hostPort(s string) (string, error) {
	host := s
	if h, _, err := net.SplitHostPort(s); err == nil {
		host = h
	}
	if host == "" || strings.ContainsAny(host, "/?#@ ") {
		return "", fmt.Errorf("%q is not host or host:port", s)
	}
	if _, ok := dns.IsDomainName(host); !ok {
		if _, err := netip.ParseAddr(host); err != nil {
			return "", fmt.Errorf("%q is not host or host:port", s)
		}
	}
	return s, nil
}

func isCountryCode(s string) bool {
	return len(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z'
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
