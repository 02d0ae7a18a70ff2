package cluster_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/meridiancdn/meridian/edge/cluster"
	"github.com/meridiancdn/meridian/edge/limit"
)

func TestConfigGolden(t *testing.T) {
	data, err := os.ReadFile("testdata/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c cluster.Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	want := cluster.Config{
		Name:         "edge-fra-1",
		Zone:         "fra-a",
		Weight:       2,
		GossipListen: "10.0.0.5:7946",
		Advertise:    "203.0.113.5:7946",
		PeerListen:   "10.0.0.5:7947",
		Seeds:        []string{"10.0.0.6:7946", "edge-fra-2.internal:7946"},
		SeedDNS:      "meridian-peers.cdn.svc.cluster.local:7946",
		SecretFile:   "/etc/meridian/region.secret",
		Preset:       "lan",
		MaxClockSkew: 10 * time.Second,
		PeerTimeout:  1500 * time.Millisecond,
		SuspectFor:   20 * time.Second,
		TLS: cluster.TLSConfig{
			CAFile:   "/etc/meridian/cluster-tls/ca.crt",
			CertFile: "/etc/meridian/cluster-tls/tls.crt",
			KeyFile:  "/etc/meridian/cluster-tls/tls.key",
		},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", c, want)
	}
	if err := c.WithDefaults().Validate(); err != nil {
		t.Errorf("golden config invalid: %v", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	c := cluster.Config{Name: "a", Secret: strings.Repeat("s", 16)}.WithDefaults()
	want := cluster.Config{
		Name:         "a",
		Secret:       strings.Repeat("s", 16),
		Weight:       1,
		GossipListen: "0.0.0.0:7946",
		PeerListen:   "0.0.0.0:7947",
		Preset:       cluster.PresetLAN,
		MaxClockSkew: 30 * time.Second,
		PeerTimeout:  2 * time.Second,
		SuspectFor:   10 * time.Second,
		Replicas:     1,
		PeerLimits:   limit.GateConfig{MaxConcurrent: 1024, MaxQueue: 1024, QueueTimeout: time.Second, Name: "peer"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults\n%+v\nwant\n%+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	secret := strings.Repeat("s", 16)
	cases := []struct {
		name   string
		mutate func(*cluster.Config)
		want   string
	}{
		{"no name", func(c *cluster.Config) { c.Name = "" }, "cluster.name: required"},
		{"name with space", func(c *cluster.Config) { c.Name = "edge 1" }, "cluster.name: invalid character"},
		{"name with comma", func(c *cluster.Config) { c.Name = "a,b" }, "cluster.name: invalid character"},
		{"long name", func(c *cluster.Config) { c.Name = strings.Repeat("n", 129) }, "cluster.name: longer than 128"},
		{"long zone", func(c *cluster.Config) { c.Zone = strings.Repeat("z", 65) }, "cluster.zone: longer than 64"},
		{"zone control", func(c *cluster.Config) { c.Zone = "a\nb" }, "cluster.zone: control character"},
		{"negative weight", func(c *cluster.Config) { c.Weight = -1 }, "cluster.weight: -1 out of range"},
		{"huge weight", func(c *cluster.Config) { c.Weight = 1 << 30 }, "cluster.weight:"},
		{"gossip no port", func(c *cluster.Config) { c.GossipListen = "127.0.0.1" }, "cluster.gossip_listen: missing port"},
		{"gossip name", func(c *cluster.Config) { c.GossipListen = "localhost:7946" }, "cluster.gossip_listen: host \"localhost\" is not an IP"},
		{"gossip bad port", func(c *cluster.Config) { c.GossipListen = "127.0.0.1:99999" }, "cluster.gossip_listen: invalid port"},
		{"advertise port 0", func(c *cluster.Config) { c.Advertise = "10.0.0.1:0" }, "cluster.advertise: port 0"},
		{"advertise name", func(c *cluster.Config) { c.Advertise = "edge.example:7946" }, "cluster.advertise: host"},
		{"peer no port", func(c *cluster.Config) { c.PeerListen = "127.0.0.1" }, "cluster.peer_listen: missing port"},
		{"seed no port", func(c *cluster.Config) { c.Seeds = []string{"10.0.0.1:7946", "10.0.0.2"} }, "cluster.seeds[1]: missing port"},
		{"seed no host", func(c *cluster.Config) { c.Seeds = []string{":7946"} }, "cluster.seeds[0]: missing host"},
		{"seed port 0", func(c *cluster.Config) { c.Seeds = []string{"10.0.0.1:0"} }, "cluster.seeds[0]: port 0"},
		{"seed dns no port", func(c *cluster.Config) { c.SeedDNS = "peers.svc" }, "cluster.seed_dns: missing port"},
		{"no secret", func(c *cluster.Config) { c.Secret = "" }, "cluster.secret: required (or cluster.secret_file)"},
		{"short secret", func(c *cluster.Config) { c.Secret = "short" }, "cluster.secret: too short (5 bytes, at least 16)"},
		{"both secrets", func(c *cluster.Config) { c.SecretFile = "/x" }, "cluster.secret_file: set together with cluster.secret"},
		{"unknown preset", func(c *cluster.Config) { c.Preset = "wan" }, "cluster.preset: unknown preset \"wan\""},
		{"negative skew", func(c *cluster.Config) { c.MaxClockSkew = -time.Second }, "cluster.max_clock_skew: negative"},
		{"negative peer timeout", func(c *cluster.Config) { c.PeerTimeout = -1 }, "cluster.peer_timeout: negative"},
		{"negative suspect", func(c *cluster.Config) { c.SuspectFor = -1 }, "cluster.suspect_for: negative"},
		{"tls without ca", func(c *cluster.Config) { c.TLS = cluster.TLSConfig{CertFile: "c", KeyFile: "k"} }, "cluster.tls.ca_file: required"},
		{"tls without cert", func(c *cluster.Config) { c.TLS = cluster.TLSConfig{CAFile: "ca", KeyFile: "k"} }, "cluster.tls.cert_file: required"},
		{"tls without key", func(c *cluster.Config) { c.TLS = cluster.TLSConfig{CAFile: "ca", CertFile: "c"} }, "cluster.tls.key_file: required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := cluster.Config{Name: "edge1", Secret: secret}
			tc.mutate(&c)
			err := c.WithDefaults().Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestNewReadsSecretFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	short := filepath.Join(dir, "short")
	os.WriteFile(good, []byte("  a-long-enough-region-secret\n"), 0o600)
	os.WriteFile(short, []byte("tiny\n"), 0o600)
	base := cluster.Config{Name: "edge1", GossipListen: "127.0.0.1:0", PeerListen: "127.0.0.1:0"}

	c := base
	c.SecretFile = good
	n, err := cluster.New(c, cluster.Options{})
	if err != nil {
		t.Fatalf("good secret file: %v", err)
	}
	n.Close()

	for file, want := range map[string]string{
		short:                         "cluster.secret_file: secret too short",
		filepath.Join(dir, "missing"): "cluster.secret_file: open",
	} {
		c := base
		c.SecretFile = file
		if _, err := cluster.New(c, cluster.Options{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New with secret_file %s: %v, want %q", filepath.Base(file), err, want)
		}
	}
}

func TestNewReportsBusyPeerPort(t *testing.T) {
	a, err := cluster.New(cluster.Config{Name: "a", Secret: strings.Repeat("s", 16), GossipListen: "127.0.0.1:0", PeerListen: "127.0.0.1:0"}, cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_, err = cluster.New(cluster.Config{Name: "b", Secret: strings.Repeat("s", 16), GossipListen: "127.0.0.1:0", PeerListen: a.PeerAddr()}, cluster.Options{})
	if err == nil || !strings.HasPrefix(err.Error(), "cluster.peer_listen:") {
		t.Errorf("second New on a busy port: %v, want a cluster.peer_listen error", err)
	}
}
