package yamlconf_test

import (
	"strings"
	"testing"

	"github.com/meridiancdn/meridian/origin/yamlconf"
)

// Two kinds shaped as the edge's and the geo service's top levels: both
// have regions.
type edgeTop struct {
	Name    string   `yaml:"name"`
	Region  string   `yaml:"region"`
	Admin   struct{} `yaml:"admin"`
	Cluster struct{} `yaml:"cluster"`
	Regions []any    `yaml:"regions"`
	more    `yaml:",inline"`
}

type more struct {
	Sites []any    `yaml:"sites"`
	Cache struct{} `yaml:"cache"`
}

type geoTop struct {
	Database string   `yaml:"database"`
	Regions  []any    `yaml:"regions"`
	Probe    struct{} `yaml:"probe"`
	DNS      struct{} `yaml:"dns"`
}

var (
	edgeKind = yamlconf.Kind{Name: "edge config", Of: edgeTop{}, Marker: "sites"}
	geoKind  = yamlconf.Kind{Name: "geo config", Of: geoTop{}, Marker: "regions"}
)

func TestDetect(t *testing.T) {
	for _, tc := range []struct{ in, kind, why string }{
		{"sites: []", "edge config", "it has sites:"},
		{"sites: []\nregions: []\ncluster: {}", "edge config", "it has sites:"},
		{"regions: []", "geo config", "it has regions: and no sites:"},
		{"regions: []\nprobe: {}\ndns: {}", "geo config", "it has regions: and no sites:"},
		// A misspelt sites: is an edge config (whose decoding names the
		// misspelling), not a geo config with unrelated errors.
		{"site: []\nregions: []", "edge config", "it has site:, close to sites:"},
		{"Sites: []\nregions: []\nadmin: {}", "edge config", "it has Sites:, close to sites:"},
		{"sitez: []", "edge config", "it has sitez:, close to sites:"},
		// region: is an edge field, not a misspelt regions:.
		{"region: eu\nsite: []", "edge config", "it has site:, close to sites:"},
		{"regoins: []\nprobe: {}", "geo config", "it has regoins:, close to regions:"},
	} {
		k, why, err := yamlconf.Detect([]byte(tc.in), edgeKind, geoKind)
		if err != nil || k.Name != tc.kind || why != tc.why {
			t.Errorf("%q: %q (%s), %v; want %q (%s)", tc.in, k.Name, why, err, tc.kind, tc.why)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"name: e\n", "neither an edge config (no sites:) nor a geo config (no regions:)"},
		{"", "empty file"},
		{"[1]", "line 1: want a mapping of fields at the top level, not a list"},
		{"sites: [", "not valid YAML"},
	} {
		if _, _, err := yamlconf.Detect([]byte(tc.in), edgeKind, geoKind); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
}
