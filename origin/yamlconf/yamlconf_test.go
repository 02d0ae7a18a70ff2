package yamlconf_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/meridiancdn/meridian/origin/yamlconf"
)

// A config shaped as the real ones: nested structs, lists, pointers,
// maps, an inline struct, a custom unmarshaler, durations and sizes.
type config struct {
	Name   string            `yaml:"name"`
	Sites  []site            `yaml:"sites"`
	Cache  cache             `yaml:"cache"`
	Admin  *admin            `yaml:"admin"`
	Labels map[string]string `yaml:"labels"`
	Log    logDest           `yaml:"log"`
}

type site struct {
	Hosts    []string       `yaml:"hosts"`
	Timeout  time.Duration  `yaml:"timeout"`
	Grace    *time.Duration `yaml:"grace"`
	CacheKey cacheKey       `yaml:"cache_key"`
	Weight   int            `yaml:"weight"`
	Direct   *bool          `yaml:"direct"`
	Ratio    float64        `yaml:"ratio"`
	rules    `yaml:",inline"`
}

type cacheKey struct {
	Query string `yaml:"query"`
}

type rules struct {
	Redirects []string `yaml:"redirects"`
}

type cache struct {
	MaxBytes   int64  `yaml:"max_bytes"`
	SmallBytes int32  `yaml:"small_bytes"`
	Bytes      uint64 `yaml:"bytes"`
	Count      int    `yaml:"count"`
}

type admin struct {
	Listen     string        `yaml:"listen"`
	DrainDelay time.Duration `yaml:"drain_delay"`
}

// logDest reads a scalar or a mapping itself, as edge.AccessLogConfig.
type logDest struct{ To string }

func (l *logDest) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		l.To = n.Value
		return nil
	}
	return fmt.Errorf("line %d: log: want a destination", n.Line)
}

func TestDecodeAcceptsWhatYAMLDoes(t *testing.T) {
	in := `
name: e1
sites:
  - &base
    hosts: [a.example]
    timeout: 1m30s
    grace: 0s
    cache_key: {query: sorted}
    weight: 0x10
    direct: false
    ratio: .5
    redirects: [/a]
  - <<: *base
    hosts: [b.example]
cache: {max_bytes: 1048576, small_bytes: 1e3, count: 7}
admin: {listen: ':9090'}
labels: {a: b, "1": "2"}
log: stdout
`
	var got config
	if err := yamlconf.Decode([]byte(in), &got); err != nil {
		t.Fatal(err)
	}
	var want config
	dec := yaml.NewDecoder(strings.NewReader(in))
	dec.KnownFields(true)
	if err := dec.Decode(&want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Decode:\n%+v\nyaml.v3:\n%+v", got, want)
	}
	if got.Sites[1].Hosts[0] != "b.example" || got.Sites[1].Timeout != 90*time.Second || got.Sites[1].Redirects[0] != "/a" {
		t.Fatalf("merge key: %+v", got.Sites[1])
	}
}

func TestDecodeUnits(t *testing.T) {
	in := `
sites: [{timeout: 1d12h, grace: 7d}]
cache: {max_bytes: 256MiB, small_bytes: 64k, bytes: 1GB, count: 3}
admin: {drain_delay: 0}
`
	var got config
	if err := yamlconf.Decode([]byte(in), &got); err != nil {
		t.Fatal(err)
	}
	s := got.Sites[0]
	if s.Timeout != 36*time.Hour || *s.Grace != 7*24*time.Hour {
		t.Fatalf("durations: %v %v", s.Timeout, *s.Grace)
	}
	if got.Cache != (cache{MaxBytes: 256 << 20, SmallBytes: 64 << 10, Bytes: 1e9, Count: 3}) {
		t.Fatalf("sizes: %+v", got.Cache)
	}
	if got.Admin == nil || got.Admin.DrainDelay != 0 {
		t.Fatalf("admin: %+v", got.Admin)
	}
}

// Every error names its line and the field's path, says what the field
// wants, and names no Go type.
func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"sites: [{hosts: [a], cache_kye: {}}]", `line 1: sites[0].cache_kye: unknown field; did you mean cache_key?`},
		{"name: x\nsite: []", `line 2: unknown top-level field site; did you mean sites?`},
		{"Sites: []", `line 1: unknown top-level field Sites; did you mean sites?`},
		{"sites: [{hosts: [a], cachekey: {}}]", `sites[0].cachekey: unknown field; did you mean cache_key?`},
		{"sites: [{hosts: [a], cache-key: {}}]", `sites[0].cache-key: unknown field; did you mean cache_key?`},
		{"cache: {bogus: 1}", `line 1: cache.bogus: unknown field (the fields here: max_bytes, small_bytes, bytes, count)`},
		{"sites: [{cache_key: {qeury: x}}]", `sites[0].cache_key.qeury: unknown field; did you mean query?`},
		{"sites: [{timeout: 5 seconds}]", `line 1: sites[0].timeout: "5 seconds" is not a duration (want e.g. 500ms, 30s, 5m, 2h, 1d)`},
		{"sites: [{timeout: 30}]", `sites[0].timeout: "30" has no unit (want e.g. 500ms, 30s, 5m, 2h, 1d)`},
		{"sites: [{timeout: 1.5}]", `sites[0].timeout: "1.5" has no unit`},
		{"sites: [{timeout: [1s]}]", `sites[0].timeout: want a duration (want e.g. 500ms, 30s, 5m, 2h, 1d), not a list`},
		{"sites: [{grace: forever}]", `sites[0].grace: "forever" is not a duration`},
		{"sites: [{timeout: 200000000h}]", `sites[0].timeout: "200000000h" is out of range`},
		{"sites: [{weight: heavy}]", `sites[0].weight: "heavy" is not a whole number`},
		{"sites: [{weight: 1e30}]", `sites[0].weight: "1e30" is out of range (want a whole number from -9223372036854775808 to 9223372036854775807)`},
		{"sites: [{direct: maybe}]", `sites[0].direct: "maybe" is not true or false`},
		{"sites: [{ratio: half}]", `sites[0].ratio: "half" is not a number`},
		{"sites: [{hosts: a.example}]", `sites[0].hosts: want a list, not "a.example" (for one item write [a.example])`},
		{"sites: [{hosts: [[a]]}]", `sites[0].hosts[0]: want a string, not a list`},
		{"sites: {hosts: [a]}", `line 1: sites: want a list, not a mapping`},
		{"cache: 5", `cache: want a mapping of fields (such as max_bytes, small_bytes, bytes), not "5"`},
		{"cache: {max_bytes: lots}", `cache.max_bytes: "lots" is not a size (want e.g. 1048576, 64KiB, 256MiB, 1GB or 10g)`},
		{"cache: {max_bytes: -1GB}", `cache.max_bytes: "-1GB" is negative (want a size of 0 or more)`},
		{"cache: {max_bytes: 9EiB}", `cache.max_bytes: "9EiB" is out of range (at most 8EiB)`},
		{"cache: {max_bytes: 0.5B}", `cache.max_bytes: "0.5B" is not a whole number of bytes`},
		{"cache: {small_bytes: 4GiB}", `cache.small_bytes: "4GiB" is out of range (at most 2147483647 bytes)`},
		{"cache: {max_bytes: {a: 1}}", `cache.max_bytes: want a size (want e.g. 1048576, 64KiB, 256MiB, 1GB or 10g), not a mapping`},
		{"cache: {count: 64k}", `cache.count: "64k" is not a whole number`},
		{"name: [a]", `line 1: name: want a string, not a list`},
		{"name: a\nname: b", `line 2: name: given twice (first on line 1)`},
		{"labels: {a: 1, a: 2}", `labels.a: given twice (first on line 1)`},
		{"sites: [{hosts: [a, ~]}]", `sites[0].hosts[1]: an empty item (a lone - or ~)`},
		{"labels: [a]", `labels: want a mapping, not a list`},
		{"name: a\n---\nname: b\n", `line 2: a second YAML document (after ---): a config file holds one`},
		{"sites: [\n", `not valid YAML: `},
		{"name: a\n  b: c\n", `line 2: not valid YAML: mapping values are not allowed in this context`},
		{"[1, 2]", `line 1: want a mapping of fields at the top level (such as name, sites, cache), not a list`},
		{"log: {to: x}", `line 1: log: want a destination`},
		{"sites: [{<<: 5}]", `sites[0]: <<: want a mapping or a list of mappings to merge, not "5"`},
		{"site: []\ncache: {max_bytes: x}\n", "2 problems:\n  line 1: unknown top-level field site; did you mean sites?\n  line 2: cache.max_bytes: \"x\" is not a size"},
	} {
		var c config
		err := yamlconf.Decode([]byte(tc.in), &c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n  got  %v\n  want %s", tc.in, err, tc.want)
			continue
		}
		for _, goName := range []string{"time.Duration", "int64", "int32", "uint64", "float64", "[]string", "!!", "yaml:", "unmarshal", "_test.", "struct"} {
			if strings.Contains(err.Error(), goName) && !strings.Contains(tc.in, goName) {
				t.Errorf("%q: the error names %q: %v", tc.in, goName, err)
			}
		}
		if !reflect.DeepEqual(c, config{}) {
			t.Errorf("%q: a refused file changed the value: %+v", tc.in, c)
		}
	}
}

func TestDecodeBoundsProblems(t *testing.T) {
	var b strings.Builder
	for i := range 25 {
		fmt.Fprintf(&b, "bogus%d: 1\n", i)
	}
	var c config
	err := yamlconf.Decode([]byte(b.String()), &c)
	var e *yamlconf.Error
	if !errors.As(err, &e) || len(e.Problems) != 10 || e.More != 15 || !strings.HasSuffix(err.Error(), "and 15 more") {
		t.Fatalf("%v", err)
	}
	if e.Problems[3].Line != 4 {
		t.Fatalf("line: %+v", e.Problems[3])
	}
}

// Aliases of aliases that name billions of nodes are refused, not
// walked.
func TestDecodeBillionLaughs(t *testing.T) {
	in := "a: &a [[], [], [], [], [], [], [], [], [], []]\n"
	prev := "a"
	for _, name := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		in += fmt.Sprintf("%s: &%s [*%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s]\n", name, name, prev, prev, prev, prev, prev, prev, prev, prev, prev, prev)
		prev = name
	}
	var c map[string]deep // *i names 10^9 lists
	start := time.Now()
	err := yamlconf.Decode([]byte(in), &c)
	if err == nil || !strings.Contains(err.Error(), "too many nodes (aliases of aliases?)") {
		t.Fatalf("%v", err)
	}
	if d := time.Since(start); d > time.Minute {
		t.Fatalf("took %v", d) // not a speed assertion: a bound against a hang
	}
}

// deep is a list of lists of lists ...
type deep []deep

func TestDecodeEmpty(t *testing.T) {
	c := config{Name: "kept"}
	for _, in := range []string{"", "\n", "# only a comment\n", "---\n"} {
		if err := yamlconf.Decode([]byte(in), &c); err != nil || c.Name != "kept" {
			t.Fatalf("%q: %v %+v", in, err, c)
		}
	}
	if err := yamlconf.Decode([]byte("name: x"), c); err == nil {
		t.Fatal("a non-pointer was accepted")
	}
}

func TestNearest(t *testing.T) {
	known := []string{"sites", "cache", "name", "listen", "max_bytes", "cache_key"}
	for _, tc := range []struct{ word, want string }{
		{"site", "sites"}, {"Sites", "sites"}, {"SITES", "sites"}, {"sitez", "sites"},
		{"cahce", "cache"}, {"max_byts", "max_bytes"}, {"max-bytes", "max_bytes"},
		{"cache_kye", "cache_key"}, {"cachekey", "cache_key"},
		{"x", ""}, {"rate", ""}, {"nmae", "name"}, {"", ""}, {"totally_unrelated", ""},
	} {
		if got := yamlconf.Nearest(tc.word, known); got != tc.want {
			t.Errorf("Nearest(%q) = %q, want %q", tc.word, got, tc.want)
		}
	}
}

// FuzzDecode: whatever yaml.v3 decodes strictly, Decode decodes to the
// same value (it only adds units and refuses more clearly); and it never
// panics.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"sites: [{hosts: [a], timeout: 1s, grace: 2m}]",
		"cache: {max_bytes: 10, small_bytes: 64k}",
		"a: &x {hosts: [a]}\n", "sites: [&s {weight: 1}, <<: *s]",
		"labels: {a: b}\nlog: stdout\nadmin: {listen: x}",
		"sites: [{<<: [{weight: 1}, {weight: 2, ratio: 1}]}]",
		"name: ~\nadmin: ~\nsites: ~",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got config
		err := yamlconf.Decode(data, &got)
		var want config
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if yerr := dec.Decode(&want); yerr != nil {
			return
		}
		var rest any
		if dec.Decode(&rest) != io.EOF {
			return // more after the first document: refused here, on purpose
		}
		if err != nil {
			if strings.Contains(err.Error(), "too many nodes") || strings.Contains(err.Error(), "a key with no name") ||
				strings.Contains(err.Error(), "an empty item") {
				return
			}
			t.Fatalf("yaml.v3 decodes %q, Decode says %v", data, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\nDecode:  %+v\nyaml.v3: %+v", data, got, want)
		}
	})
}
