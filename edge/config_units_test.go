package edge

import (
	"strings"
	"testing"
	"time"
)

// Every byte-size field takes a size with a unit, and every duration d
// for days; plain numbers read as before.
func TestParseConfigUnits(t *testing.T) {
	c, err := ParseConfig([]byte(`
cache:
  max_bytes: 1GiB
  max_object_bytes: 64m
  hot_bytes: 100MB
  max_inflight_bytes: 256MiB
  hit_for_miss: 1d
  disk: {path: /tmp/meridian-units-test, max_bytes: 10GiB}
server: {max_header_bytes: 64k, idle_timeout: 1d12h}
sites:
  - hosts: [a.example]
    origin: http://127.0.0.1:9000
    default_ttl: 7d
    grace: {if_unreachable: 2d, if_error: 1.5d}
    compression: {enabled: true, min_bytes: 1KiB, max_bytes: 8 MiB}
    pool: {health: {interval: 1d}}
`))
	if err != nil {
		t.Fatal(err)
	}
	day := 24 * time.Hour
	if k := c.Cache; k.MaxBytes != 1<<30 || k.MaxObjectBytes != 64<<20 || k.HotBytes != 100e6 || k.MaxInflightBytes != 256<<20 ||
		k.HitForMiss != day || k.Disk.MaxBytes != 10<<30 {
		t.Fatalf("cache: %+v", k)
	}
	if c.Server.MaxHeaderBytes != 64<<10 || c.Server.IdleTimeout != 36*time.Hour {
		t.Fatalf("server: %+v", c.Server)
	}
	s := c.Sites[0]
	if s.DefaultTTL != 7*day || *s.Grace.IfUnreachable != 2*day || s.Grace.IfError != 36*time.Hour {
		t.Fatalf("site durations: %v %v %v", s.DefaultTTL, *s.Grace.IfUnreachable, s.Grace.IfError)
	}
	if s.Compression.MinBytes != 1024 || s.Compression.MaxBytes != 8<<20 || s.Pool.Health.Interval != day {
		t.Fatalf("site sizes: %+v %+v", s.Compression, s.Pool.Health)
	}
	// Plain numbers, as before units.
	c, err = ParseConfig([]byte("cache: {max_bytes: 1048576, max_object_bytes: 4096}\nsites: [{hosts: [a], origin: 'http://o:1'}]\n"))
	if err != nil || c.Cache.MaxBytes != 1<<20 || c.Cache.MaxObjectBytes != 4096 {
		t.Fatalf("plain numbers: %v %+v", err, c.Cache)
	}
}

// The errors an operator meets first: a misspelt field, a value in the
// wrong form. Each names its line, the field's path and what is wanted,
// and no Go type.
func TestParseConfigFriendlyErrors(t *testing.T) {
	const site = "sites:\n  - hosts: [a.example]\n    origin: 'http://o:1'\n"
	for _, tc := range []struct{ yaml, want string }{
		{site + "    cache_kye: {query: sorted}\n", "config: line 4: sites[0].cache_kye: unknown field; did you mean cache_key?"},
		{site + "    timeout: 5 seconds\n", `config: line 4: sites[0].timeout: "5 seconds" is not a duration (want e.g. 500ms, 30s, 5m, 2h, 1d)`},
		{site + "    timeout: 30\n", `line 4: sites[0].timeout: "30" has no unit`},
		{site + "    compression: {min_bytes: 1 kilobyte}\n", `line 4: sites[0].compression.min_bytes: "1 kilobyte" is not a size`},
		{site + "cache: {max_bytes: -1GB}\n", `line 4: cache.max_bytes: "-1GB" is negative`},
		{site + "cache: {max_bytes: 16EiB}\n", `line 4: cache.max_bytes: "16EiB" is out of range`},
		{site + "server: {max_header_bytes: big, max_connections: lots}\n", "2 problems:\n  line 4: server.max_header_bytes:"},
		{site + "    hosts: [b]\n", "line 4: sites[0].hosts: given twice (first on line 2)"},
		{"site:\n  - hosts: [a]\n", "config: line 1: unknown top-level field site; did you mean sites?"},
		{site + "access_log: {formt: json}\n", "line 4: access_log.formt: unknown field (did you mean format?)"},
		{site + "    hosts: a.example\n", ""}, // given twice, no crash
	} {
		_, err := ParseConfig([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s\n  got  %v\n  want %s", tc.yaml, err, tc.want)
			continue
		}
		for _, leak := range []string{"!!", "time.Duration", "int64", "edge.", "unmarshal"} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("%s: the error names %q: %v", tc.yaml, leak, err)
			}
		}
	}
}
