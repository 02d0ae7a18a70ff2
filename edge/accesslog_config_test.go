package edge_test

import (
	"strings"
	"testing"

	"github.com/meridiancdn/meridian/edge"
)

// access_log is a mapping of destination and format, or a scalar that is
// the destination alone (the older form); tracing is validated; a bad
// value is refused naming the field.
func TestAccessLogAndTracingConfig(t *testing.T) {
	const site = "sites: [{hosts: [a.test], origin: 'http://127.0.0.1:1'}]\n"
	for _, c := range []struct {
		yaml string
		want edge.AccessLogConfig
	}{
		{"", edge.AccessLogConfig{Destination: "stdout", Format: "json"}},
		{"access_log: off\n", edge.AccessLogConfig{Destination: "off", Format: "json"}},
		{"access_log: stderr\n", edge.AccessLogConfig{Destination: "stderr", Format: "json"}},
		{"access_log: {format: combined}\n", edge.AccessLogConfig{Destination: "stdout", Format: "combined"}},
		{"access_log:\n  destination: /var/log/m.log\n  format: json\n", edge.AccessLogConfig{Destination: "/var/log/m.log", Format: "json"}},
	} {
		cfg, err := edge.ParseConfig([]byte(site + c.yaml))
		if err != nil {
			t.Errorf("%q: %v", c.yaml, err)
			continue
		}
		if cfg.AccessLog != c.want {
			t.Errorf("%q: %+v, want %+v", c.yaml, cfg.AccessLog, c.want)
		}
		if cfg.Tracing.Exporting() || cfg.Tracing.SampleRatio != 1 || cfg.Tracing.ServiceName != "meridian" {
			t.Errorf("%q: tracing defaults %+v", c.yaml, cfg.Tracing)
		}
	}
	for _, c := range []struct{ yaml, want string }{
		{"access_log: {format: clf}\n", "access_log.format"},
		{"access_log: {destination: logs/a.log}\n", "access_log.destination"},
		{"access_log: {destination: /var/log/}\n", "access_log.destination"},
		{"access_log: {fromat: json}\n", "access_log.fromat: unknown field"},
		{"access_log: [stdout]\n", "access_log"},
		{"tracing: {sample_ratio: 2}\n", "tracing.sample_ratio"},
		{"tracing: {sample_ratio: -0.5}\n", "tracing.sample_ratio"},
		{"tracing: {otlp_endpoint: 'otel:4318'}\n", "tracing.otlp_endpoint"},
	} {
		if _, err := edge.ParseConfig([]byte(site + c.yaml)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error naming %s", c.yaml, err, c.want)
		}
	}
	cfg, err := edge.ParseConfig([]byte(site + "tracing: {otlp_endpoint: 'http://otel:4318', sample_ratio: 0.25}\n"))
	if err != nil || !cfg.Tracing.Exporting() || cfg.Tracing.SampleRatio != 0.25 {
		t.Fatalf("tracing: %+v %v", cfg.Tracing, err)
	}
}
