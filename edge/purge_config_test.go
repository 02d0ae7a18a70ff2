package edge_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
)

// The purge fields are checked, each refusal naming its field.
func TestPurgeConfigValidate(t *testing.T) {
	base := func() edge.Config {
		return edge.Config{Sites: []edge.SiteConfig{
			{Hosts: []string{"a.test"}, Origin: "http://127.0.0.1:1"},
			{Hosts: []string{"b.test"}, Origin: "http://127.0.0.1:1"},
		}}
	}
	cases := []struct {
		name string
		set  func(*edge.Config)
		want string
	}{
		{"negative max_bans", func(c *edge.Config) { c.Purge.MaxBans = -1 }, "purge.max_bans: negative"},
		{"negative interval", func(c *edge.Config) { c.Purge.BanSweepInterval = -time.Second }, "purge.ban_sweep_interval: negative"},
		{"short token", func(c *edge.Config) { c.Sites[1].PurgeToken = "short" }, "sites[1].purge_token: shorter than 16 bytes"},
		{"white space", func(c *edge.Config) { c.Sites[0].PurgeToken = "0123456789 abcdef" }, "sites[0].purge_token: contains white space"},
		{"shared token", func(c *edge.Config) {
			c.Sites[0].PurgeToken = "0123456789abcdef"
			c.Sites[1].PurgeToken = "0123456789abcdef"
		}, "sites[1].purge_token: the same as sites[0].purge_token"},
		{"token and file", func(c *edge.Config) {
			c.Sites[0].PurgeToken = "0123456789abcdef"
			c.Sites[0].PurgeTokenFile = "/x"
		}, "sites[0].purge_token: exclusive with sites[0].purge_token_file"},
	}
	for _, c := range cases {
		cfg := base()
		c.set(&cfg)
		err := cfg.WithDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	d := base().WithDefaults()
	if d.Purge.MaxBans != 1024 || d.Purge.BanSweepInterval != 5*time.Second {
		t.Fatalf("defaults: %+v", d.Purge)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
}

// purge_token_file is read when the handler is built (and at reload): a
// missing or weak file is refused there, naming the field.
func TestPurgeTokenFile(t *testing.T) {
	dir := t.TempDir()
	weak, good := filepath.Join(dir, "weak"), filepath.Join(dir, "good")
	os.WriteFile(weak, []byte("abc\n"), 0o600)
	os.WriteFile(good, []byte("  0123456789abcdefXYZ\n"), 0o600)
	for file, want := range map[string]string{
		filepath.Join(dir, "missing"): "sites[0].purge_token_file: open",
		weak:                          "sites[0].purge_token_file: " + weak + ": a token shorter than 16 bytes",
	} {
		cfg := edge.Config{Sites: []edge.SiteConfig{{Hosts: []string{"a.test"}, Origin: "http://127.0.0.1:1", PurgeTokenFile: file}}}
		h, err := edge.New(cfg, edge.Options{})
		if err == nil {
			h.Close()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", file, err, want)
		}
	}
	b := newBanEnv(t, func(c *edge.Config) {
		c.Sites[0].PurgeToken = ""
		c.Sites[0].PurgeTokenFile = good
	})
	b.warm()
	if resp, _, raw := b.purge("0123456789abcdefXYZ", `{"hosts": ["site.test"]}`); resp.StatusCode != 200 {
		t.Fatalf("token from the file: %d %s", resp.StatusCode, raw)
	}
	if resp, _, _ := b.purge(siteToken, `{"hosts": ["site.test"]}`); resp.StatusCode != 401 {
		t.Fatalf("the old token: %d", resp.StatusCode)
	}
}
