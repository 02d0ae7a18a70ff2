package geo

import (
	"strings"
	"testing"
	"time"
)

// Durations take d for days; a misspelt or ill-formed field is named with
// its line, path and what is wanted.
func TestConfigUnitsAndFriendlyErrors(t *testing.T) {
	const regions = "regions: [{name: eu, point: {lat: 50, lon: 8}, edges: ['127.0.0.1:1']}]\n"
	c, err := ParseConfig([]byte(regions + "probe: {hold_down: 1h, hold_down_max: 1d, failure_window: 2d12h}\ndns: {ttl: 1d}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Probe.HoldDownMax != 24*time.Hour || c.Probe.FailureWindow != 60*time.Hour || c.DNS.TTL != 24*time.Hour {
		t.Fatalf("durations: %+v %+v", c.Probe, c.DNS)
	}
	for _, tc := range []struct{ yaml, want string }{
		{regions + "probe: {interval: 1 second}\n", `parse: line 2: probe.interval: "1 second" is not a duration (want e.g. 500ms, 30s, 5m, 2h, 1d)`},
		{regions + "probe: {fall: three}\n", `line 2: probe.fall: "three" is not a whole number`},
		{regions + "defualt_region: eu\n", "line 2: unknown top-level field defualt_region; did you mean default_region?"},
		{"regions: [{name: eu, piont: {lat: 50, lon: 8}, edges: ['127.0.0.1:1']}]\n", "line 1: regions[0].piont: unknown field; did you mean point?"},
		{"regions: [{name: eu, point: {lat: north}, edges: ['127.0.0.1:1']}]\n", `regions[0].point.lat: "north" is not a number`},
		{"regions: [{name: eu, point: {lat: 50, lon: 8}, edges: '127.0.0.1:1'}]\n", `regions[0].edges: want a list, not "127.0.0.1:1"`},
	} {
		_, err := ParseConfig([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s  got  %v\n  want %s", tc.yaml, err, tc.want)
		}
	}
}
