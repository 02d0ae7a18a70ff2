package origin

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestPoolConfigGolden(t *testing.T) {
	raw, err := os.ReadFile("testdata/pool.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg PoolConfig
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	want := PoolConfig{
		Name: "shop",
		Servers: []ServerConfig{
			{URL: "https://origin-a.example:8443", Weight: 3},
			{URL: "https://origin-b.example", Host: "shop.example"},
			{URL: "http://10.0.0.9:8080", Backup: true},
		},
		Health: HealthConfig{Enabled: true, Path: "/healthz?deep=1", Interval: 2 * time.Second,
			Timeout: 500 * time.Millisecond, ExpectedStatus: 204, Fall: 2, Rise: 3},
		Outlier:             OutlierConfig{ConsecutiveErrors: 4, Ejection: time.Minute},
		Breaker:             BreakerConfig{MaxFailures: 20, OpenFor: 15 * time.Second},
		ConnectTimeout:      time.Second,
		TryTimeout:          5 * time.Second,
		Timeout:             20 * time.Second,
		Retries:             2,
		MaxIdleConnsPerHost: 64,
		MaxConns:            32,
		MaxInflight:         -1,
		MaxQueue:            100,
		QueueTimeout:        250 * time.Millisecond,
		TLS:                 TLSConfig{ServerName: "origin.example", MinVersion: "1.3"},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", cfg, want)
	}
	p, err := NewPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
}

func TestPoolConfigDefaults(t *testing.T) {
	c := PoolConfig{Servers: []ServerConfig{{URL: "http://o"}}}.WithDefaults()
	if c.Name != "origin" || c.Servers[0].Weight != 1 || c.Health.Path != "/healthz" ||
		c.Health.Interval != 5*time.Second || c.Health.Timeout != 2*time.Second ||
		c.Health.ExpectedStatus != 200 || c.Health.Fall != 3 || c.Health.Rise != 2 || c.Health.Enabled ||
		c.Outlier.ConsecutiveErrors != 5 || c.Outlier.Ejection != 30*time.Second ||
		c.Breaker.MaxFailures != 0 || c.Breaker.OpenFor != 10*time.Second ||
		c.ConnectTimeout != 2*time.Second || c.TryTimeout != 10*time.Second || c.Timeout != 30*time.Second ||
		c.Retries != 1 || c.MaxIdleConnsPerHost != 256 || c.Logger == nil || c.Now == nil ||
		c.MaxConns != 256 || c.MaxInflight != 512 || c.MaxQueue != 1024 || c.QueueTimeout != time.Second {
		t.Errorf("defaults %+v", c)
	}
	// -1 keeps its meaning; WithDefaults does not touch the caller's slice.
	orig := PoolConfig{Servers: []ServerConfig{{URL: "http://o"}}, Retries: -1, Outlier: OutlierConfig{ConsecutiveErrors: -1},
		MaxConns: -1, MaxInflight: -1, MaxQueue: -1}
	c = orig.WithDefaults()
	if c.Retries != -1 || c.Outlier.ConsecutiveErrors != -1 || orig.Servers[0].Weight != 0 ||
		c.MaxConns != -1 || c.MaxInflight != -1 || c.MaxQueue != -1 {
		t.Errorf("retries %d, consecutive_errors %d, caller's weight %d, caps %d/%d/%d", c.Retries,
			c.Outlier.ConsecutiveErrors, orig.Servers[0].Weight, c.MaxConns, c.MaxInflight, c.MaxQueue)
	}
	if err := (PoolConfig{Servers: []ServerConfig{{URL: "http://o"}}}).Validate(); err != nil {
		t.Errorf("zero value plus a server: %v", err)
	}
}

func TestPoolConfigValidate(t *testing.T) {
	ok := ServerConfig{URL: "http://127.0.0.1:9000"}
	for _, tc := range []struct {
		name string
		cfg  PoolConfig
		want string
	}{
		{"no servers", PoolConfig{}, "servers: empty"},
		{"missing url", PoolConfig{Servers: []ServerConfig{ok, {}}}, "servers[1].url: missing"},
		{"missing scheme", PoolConfig{Servers: []ServerConfig{ok, {URL: "origin.example:80"}}}, "servers[1].url: missing scheme"},
		{"bad scheme", PoolConfig{Servers: []ServerConfig{{URL: "ftp://o"}}}, `servers[0].url: scheme "ftp" not supported`},
		{"missing host", PoolConfig{Servers: []ServerConfig{{URL: "http://"}}}, "servers[0].url: missing host"},
		{"path", PoolConfig{Servers: []ServerConfig{{URL: "http://o/base"}}}, `servers[0].url: path "/base" not supported`},
		{"query", PoolConfig{Servers: []ServerConfig{{URL: "http://o?x=1"}}}, "servers[0].url: query or fragment"},
		{"user", PoolConfig{Servers: []ServerConfig{{URL: "http://u:p@o"}}}, "servers[0].url: user info"},
		{"unparsable", PoolConfig{Servers: []ServerConfig{{URL: "http://o:port"}}}, "servers[0].url:"},
		{"port", PoolConfig{Servers: []ServerConfig{{URL: "http://o:99999"}}}, "servers[0].url: port 99999 out of range"},
		{"empty port", PoolConfig{Servers: []ServerConfig{{URL: "http://o:"}}}, "servers[0].url: empty port"},
		{"duplicate", PoolConfig{Servers: []ServerConfig{ok, ok}}, "servers[1].url: same as servers[0]"},
		{"weight", PoolConfig{Servers: []ServerConfig{{URL: "http://o", Weight: -2}}}, "servers[0].weight: negative"},
		{"huge weight", PoolConfig{Servers: []ServerConfig{{URL: "http://o", Weight: 1 << 40}}}, "servers[0].weight: 1099511627776 above 1000000"},
		{"host", PoolConfig{Servers: []ServerConfig{{URL: "http://o", Host: "a b"}}}, "servers[0].host:"},
		{"all backup", PoolConfig{Servers: []ServerConfig{{URL: "http://o", Backup: true}}}, "servers: every server is a backup"},
		{"health path", PoolConfig{Servers: []ServerConfig{ok}, Health: HealthConfig{Path: "healthz"}}, "health.path:"},
		{"health interval", PoolConfig{Servers: []ServerConfig{ok}, Health: HealthConfig{Interval: -time.Second}}, "health.interval: negative"},
		{"health timeout", PoolConfig{Servers: []ServerConfig{ok}, Health: HealthConfig{Timeout: -1}}, "health.timeout: negative"},
		{"health status", PoolConfig{Servers: []ServerConfig{ok}, Health: HealthConfig{ExpectedStatus: 700}}, "health.expected_status: 700"},
		{"health fall", PoolConfig{Servers: []ServerConfig{ok}, Health: HealthConfig{Fall: -1}}, "health.fall: negative"},
		{"health rise", PoolConfig{Servers: []ServerConfig{ok}, Health: HealthConfig{Rise: -1}}, "health.rise: negative"},
		{"outlier", PoolConfig{Servers: []ServerConfig{ok}, Outlier: OutlierConfig{ConsecutiveErrors: -2}}, "outlier.consecutive_errors: -2"},
		{"ejection", PoolConfig{Servers: []ServerConfig{ok}, Outlier: OutlierConfig{Ejection: -1}}, "outlier.ejection: negative"},
		{"breaker", PoolConfig{Servers: []ServerConfig{ok}, Breaker: BreakerConfig{MaxFailures: -1}}, "circuit_breaker.max_failures: negative"},
		{"open_for", PoolConfig{Servers: []ServerConfig{ok}, Breaker: BreakerConfig{OpenFor: -1}}, "circuit_breaker.open_for: negative"},
		{"connect", PoolConfig{Servers: []ServerConfig{ok}, ConnectTimeout: -1}, "connect_timeout: negative"},
		{"try", PoolConfig{Servers: []ServerConfig{ok}, TryTimeout: -1}, "try_timeout: negative"},
		{"timeout", PoolConfig{Servers: []ServerConfig{ok}, Timeout: -1}, "timeout: negative"},
		{"retries", PoolConfig{Servers: []ServerConfig{ok}, Retries: -2}, "retries: -2"},
		{"idle", PoolConfig{Servers: []ServerConfig{ok}, MaxIdleConnsPerHost: -1}, "max_idle_conns_per_host: negative"},
		{"max_conns", PoolConfig{Servers: []ServerConfig{ok}, MaxConns: -2}, "max_conns: -2: want a count, or -1 for no cap"},
		{"max_inflight", PoolConfig{Servers: []ServerConfig{ok}, MaxInflight: -5}, "max_inflight: -5: want a count, or -1 for no cap"},
		{"max_queue", PoolConfig{Servers: []ServerConfig{ok}, MaxQueue: -2}, "max_queue: -2: want a count, or -1 for no queue"},
		{"queue_timeout", PoolConfig{Servers: []ServerConfig{ok}, QueueTimeout: -time.Second}, "queue_timeout: negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
	// Every mistake is reported, one per line.
	err := PoolConfig{Servers: []ServerConfig{{URL: "x", Weight: -1}}, Timeout: -1}.Validate()
	if err == nil || len(strings.Split(err.Error(), "\n")) != 3 {
		t.Errorf("want three errors, got %v", err)
	}
}

func FuzzPoolConfig(f *testing.F) {
	if raw, err := os.ReadFile("testdata/pool.yaml"); err == nil {
		f.Add(string(raw))
	}
	for _, s := range []string{
		"servers: [{url: http://o}]",
		"servers: [{url: 'http://o:1', weight: 2}, {url: 'https://[::1]:8443', backup: true}]",
		"servers: [{url: ftp://x}]\nhealth: {interval: -5s}",
		"servers: [{url: 'http://o'}]\nhealth: {enabled: true, path: '/h?x=%zz'}",
		"timeout: 1h\nretries: -1",
		"servers: [{url: 'http://o'}]\nmax_conns: -1\nmax_inflight: 3\nmax_queue: -1\nqueue_timeout: 10ms",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		var cfg PoolConfig
		if yaml.Unmarshal([]byte(doc), &cfg) != nil {
			return
		}
		if cfg.Validate() != nil {
			return
		}
		// A valid config always makes a pool.
		cfg.Health.Enabled = false // no background probes of fuzzed hosts
		p, err := NewPool(cfg)
		if err != nil {
			t.Fatalf("valid config refused: %v", err)
		}
		p.Close()
		c := cfg.WithDefaults()
		if c.Timeout <= 0 || c.TryTimeout <= 0 || c.Health.Interval <= 0 || c.Health.Fall <= 0 || c.Health.Rise <= 0 {
			t.Fatalf("defaults left a zero: %+v", c)
		}
	})
}
