package geo

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadConfigFull(t *testing.T) {
	c, err := LoadConfig("testdata/config/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join("testdata", "geoip", "GeoLite2-City-Test.mmdb"); c.Database != want {
		t.Errorf("database %q, want %q (relative to the config file)", c.Database, want)
	}
	if c.DefaultRegion != "eu" || c.MaxAccuracyKm != 300 {
		t.Errorf("default_region %q, max_accuracy_km %v", c.DefaultRegion, c.MaxAccuracyKm)
	}
	if c.Pins.Countries["CH"] != "eu" || c.Pins.Networks["203.0.113.0/24"] != "asia" {
		t.Errorf("pins %+v", c.Pins)
	}
	if len(c.Regions) != 3 || c.Regions[0].Capacity != 2 || c.Regions[1].Capacity != 1 {
		t.Errorf("regions %+v", c.Regions)
	}
	if q := []int{c.Regions[0].MinHealthy, c.Regions[1].MinHealthy, c.Regions[2].MinHealthy}; !reflect.DeepEqual(q, []int{2, 1, 1}) {
		t.Errorf("min_healthy %v, want [2 1 1] (configured 2, the old quorum 1, default 1)", q)
	}
	if sh := []float64{c.Regions[0].MinHealthyShare, c.Regions[1].MinHealthyShare, c.Regions[2].MinHealthyShare}; !reflect.DeepEqual(sh, []float64{0.5, 0, 0}) {
		t.Errorf("min_healthy_share %v, want [0.5 0 0]", sh)
	}
	want := ProbeConfig{
		Interval: 2 * time.Second, Timeout: time.Second, Path: "/healthz", Fall: 4, Rise: 8,
		HoldDown: time.Minute, HoldDownMax: 10 * time.Minute, FailureWindow: 30 * time.Minute,
		Steps: []float64{5, 25, 50, 100}, StepHold: 20 * time.Second,
	}
	if !reflect.DeepEqual(c.Probe, want) {
		t.Errorf("probe %+v\nwant  %+v", c.Probe, want)
	}
	if c.Picker != (PickerConfig{Policy: "spread", SlackKm: 2000}) {
		t.Errorf("picker %+v", c.Picker)
	}
	if c.DNS != (DNSConfig{Listen: "127.0.0.1:5353", Hostname: "cdn.meridian.test.", TTL: 30 * time.Second}) {
		t.Errorf("dns %+v (hostname made a lower-case FQDN)", c.DNS)
	}
	if c.HTTP.Listen != "127.0.0.1:8053" || len(c.HTTP.TrustedProxies) != 2 || c.HTTP.RedirectScheme != "http" {
		t.Errorf("http %+v", c.HTTP)
	}
	// The service starts from it, database and all.
	s, err := New(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Route(addr("81.2.69.142")).Region; got != "eu" {
		t.Errorf("London routes to %q, want eu", got)
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := LoadConfig("testdata/config/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultProbeConfig()
	if !reflect.DeepEqual(c.Probe, want) {
		t.Errorf("probe defaults %+v, want %+v", c.Probe, want)
	}
	if c.DefaultRegion != "local" || c.MaxAccuracyKm != 500 || c.Database != "" {
		t.Errorf("top-level defaults: %+v", c)
	}
	if c.Picker != (PickerConfig{Policy: "nearest", SlackKm: 1500}) {
		t.Errorf("picker %+v", c.Picker)
	}
	if c.DNS != (DNSConfig{Hostname: "cdn.meridian.test.", TTL: 20 * time.Second}) || c.HTTP.RedirectScheme != "https" {
		t.Errorf("dns %+v http %+v", c.DNS, c.HTTP)
	}
	if r := c.Regions[0]; r.Capacity != 1 || r.MinHealthy != 1 || r.MinHealthyShare != 0 {
		t.Errorf("region defaults %+v", r)
	}
	// A short interval alone gets a timeout that fits in it.
	p := Config{Regions: c.Regions, Probe: ProbeConfig{Interval: 100 * time.Millisecond}}.WithDefaults().Probe
	if p.Timeout != 50*time.Millisecond {
		t.Errorf("timeout for 100ms interval = %v, want 50ms", p.Timeout)
	}
	for _, preset := range []ProbeConfig{DefaultProbeConfig(), LocalProbeConfig()} {
		if err := (Config{Regions: c.Regions, Probe: preset}).WithDefaults().Validate(); err != nil {
			t.Errorf("preset %+v invalid: %v", preset, err)
		}
	}
}

const validRegions = `
regions:
  - name: eu
    point: {lat: 50, lon: 8}
    edges: ["192.0.2.1:80"]
  - name: us
    point: {lat: 39, lon: -77}
    edges: ["198.51.100.1:80", "198.51.100.2:80"]
`

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"empty", ``, "regions: empty"},
		{"unknown field", validRegions + "databse: x\n", "unknown top-level field databse; did you mean database?"},
		{"unknown nested field", validRegions + "probe: {intervall: 1s}\n", "probe.intervall: unknown field; did you mean interval?"},
		{"two documents", validRegions + "---\nregions: []\n", "a second YAML document"},
		{"bad duration", validRegions + "probe: {interval: soon}\n", "parse"},
		{"no edges", validRegions + "  - name: asia\n    point: {lat: 35, lon: 139}\n", "regions[2].edges: empty"},
		{"edges empty list", "regions:\n  - name: eu\n    point: {lat: 1, lon: 1}\n    edges: [\"192.0.2.1:80\"]\n  - name: us\n    edges: []\n", "regions[1].edges: empty"},
		{"no name", "regions:\n  - point: {lat: 1, lon: 1}\n    edges: [\"192.0.2.1:80\"]\n", "regions[0].name: empty"},
		{"duplicate name", validRegions + "  - name: eu\n    edges: [\"192.0.2.9:80\"]\n", `regions[2].name: "eu" already names regions[0]`},
		{"edge not ip", "regions:\n  - name: eu\n    edges: [\"edge1.example:80\"]\n", "regions[0].edges[0]: \"edge1.example:80\" is not IP:port"},
		{"edge no port", "regions:\n  - name: eu\n    edges: [\"192.0.2.1\"]\n", "regions[0].edges[0]"},
		{"edge twice", "regions:\n  - name: eu\n    edges: [\"192.0.2.1:80\", \"192.0.2.1:80\"]\n", "regions[0].edges[1]: \"192.0.2.1:80\" repeats regions[0].edges[0]"},
		{"lat", "regions:\n  - name: eu\n    point: {lat: 95, lon: 0}\n    edges: [\"192.0.2.1:80\"]\n", "regions[0].point.lat: 95 outside [-90, 90]"},
		{"lon", "regions:\n  - name: eu\n    point: {lat: 0, lon: -181}\n    edges: [\"192.0.2.1:80\"]\n", "regions[0].point.lon: -181 outside [-180, 180]"},
		{"nan lat", "regions:\n  - name: eu\n    point: {lat: .nan, lon: 0}\n    edges: [\"192.0.2.1:80\"]\n", "regions[0].point.lat"},
		{"capacity", "regions:\n  - name: eu\n    capacity: -1\n    edges: [\"192.0.2.1:80\"]\n", "regions[0].capacity"},
		{"min_healthy", validRegions + "  - name: asia\n    min_healthy: 3\n    edges: [\"203.0.113.1:80\"]\n", "regions[2].min_healthy: 3 outside [1, 1 edges]"},
		{"quorum", validRegions + "  - name: asia\n    quorum: 3\n    edges: [\"203.0.113.1:80\"]\n", "regions[2].min_healthy: 3 outside [1, 1 edges]"},
		{"quorum and min_healthy", validRegions + "  - name: asia\n    quorum: 1\n    min_healthy: 2\n    edges: [\"203.0.113.1:80\", \"203.0.113.2:80\"]\n", "regions[2].quorum: 1 differs from regions[2].min_healthy 2"},
		{"min_healthy_share", validRegions + "  - name: asia\n    min_healthy_share: 1.5\n    edges: [\"203.0.113.1:80\"]\n", "regions[2].min_healthy_share: 1.5 outside [0, 1]"},
		{"hostname", "regions:\n  - name: eu\n    hostname: \"a b/c\"\n    edges: [\"192.0.2.1:80\"]\n", "regions[0].hostname"},
		{"default region", validRegions + "default_region: x\n", `default_region: unknown region "x"`},
		{"accuracy", validRegions + "max_accuracy_km: -5\n", "max_accuracy_km"},
		{"pin cidr", validRegions + "pins:\n  networks:\n    \"10.0.0.0/33\": eu\n", `pins.networks["10.0.0.0/33"]: invalid CIDR`},
		{"pin region", validRegions + "pins:\n  networks:\n    \"10.0.0.0/8\": mars\n", `pins.networks["10.0.0.0/8"]: unknown region "mars"`},
		{"pin country code", validRegions + "pins:\n  countries:\n    DEU: eu\n", `pins.countries["DEU"]: not a two-letter`},
		{"pin country region", validRegions + "pins:\n  countries:\n    DE: mars\n", `pins.countries["DE"]: unknown region "mars"`},
		{"policy", validRegions + "picker: {policy: random}\n", `picker.policy: unknown policy "random"`},
		{"slack", validRegions + "picker: {slack_km: -1}\n", "picker.slack_km"},
		{"timeout", validRegions + "probe: {interval: 1s, timeout: 1s}\n", "probe.timeout: 1s is not shorter than probe.interval 1s"},
		{"interval", validRegions + "probe: {interval: -1s}\n", "probe.interval"},
		{"fall", validRegions + "probe: {fall: -1}\n", "probe.fall"},
		{"rise", validRegions + "probe: {rise: -2}\n", "probe.rise"},
		{"path", validRegions + "probe: {path: healthz}\n", "probe.path"},
		{"hold down max", validRegions + "probe: {hold_down: 10m, hold_down_max: 1m}\n", "probe.hold_down_max: 1m0s is shorter than probe.hold_down 10m0s"},
		{"steps order", validRegions + "probe: {steps: [50, 10, 100]}\n", "probe.steps[1]"},
		{"steps end", validRegions + "probe: {steps: [10, 50]}\n", "probe.steps: last step is 50, want 100"},
		{"dns listen", validRegions + "dns: {listen: nowhere}\n", "dns.listen"},
		{"dns hostname", validRegions + "dns: {hostname: \"..\"}\n", "dns.hostname"},
		{"dns ttl", validRegions + "dns: {ttl: 1500ms}\n", "dns.ttl"},
		{"http listen", validRegions + "http: {listen: nowhere}\n", "http.listen"},
		{"trusted", validRegions + "http: {trusted_proxies: [\"10.0.0.0/8\", \"proxy\"]}\n", `http.trusted_proxies[1]: invalid CIDR "proxy"`},
		{"scheme", validRegions + "http: {redirect_scheme: ftp}\n", "http.redirect_scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseConfig error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestLoadConfigNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "geo.yaml")
	if err := os.WriteFile(path, []byte(validRegions+"default_region: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+": default_region") {
		t.Fatalf("error %v, want it to start with the path and the field", err)
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("missing file: no error")
	}
}

func TestNewRejectsBadDatabase(t *testing.T) {
	c := testConfig()
	c.Database = "testdata/geoip/missing.mmdb"
	if _, err := New(c, Options{}); err == nil || !strings.Contains(err.Error(), "missing.mmdb") {
		t.Errorf("missing database: %v", err)
	}
	c.Database = "testdata/geoip/GeoLite2-ASN-Test.mmdb"
	if _, err := New(c, Options{}); err == nil || !strings.Contains(err.Error(), "GeoLite2-ASN") {
		t.Errorf("ASN database: %v, want it refused by type", err)
	}
	c.Database = "testdata/config/full.yaml"
	if _, err := New(c, Options{}); err == nil {
		t.Error("a YAML file as database: no error")
	}
}

// FuzzParseConfig: any input either fails with an error or gives a config
// that passes Validate, has its defaults filled, and makes a Service.
func FuzzParseConfig(f *testing.F) {
	for _, name := range []string{"testdata/config/full.yaml", "testdata/config/minimal.yaml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(validRegions))
	f.Add([]byte(validRegions + "pins:\n  networks:\n    \"::ffff:10.0.0.0/104\": eu\n  countries: {JP: us}\n"))
	f.Add([]byte(validRegions + "probe: {interval: 100ms, steps: [100]}\n"))
	f.Add([]byte("regions: [{name: a, edges: ['[::1]:1'], quorum: 1}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig accepted a config that fails Validate: %v", err)
		}
		if !reflect.DeepEqual(c.WithDefaults(), c) {
			t.Fatalf("defaults not idempotent:\n%+v\n%+v", c, c.WithDefaults())
		}
		c.Database = "" // the fuzzer does not get to open files
		s, err := New(c, Options{})
		if err != nil {
			t.Fatalf("New refused a valid config: %v", err)
		}
		ans := s.Route(addr("192.0.2.1"))
		if ans.Region == "" || len(ans.Edges) == 0 {
			t.Fatalf("empty answer %+v", ans)
		}
	})
}
