package node

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
)

// Every setting of a node's config that a reload can change is named by
// the reload's report, as applied or as waiting for a restart: none
// changes (or is silently kept at its running value) without a word. The
// table has a row for every YAML key of the config's top level and of
// its admin section, so a setting added later without a row fails here.
func TestReconcileNamesEveryChangedSetting(t *testing.T) {
	base := planConfig().WithDefaults()
	base.TLS = &edge.TLSConfig{CertFile: "a.pem", KeyFile: "a.key"}
	base = base.WithDefaults()
	rows := []struct {
		key          string // the YAML key the row changes
		change       func(c *Config)
		applied      string // what the report names as applied, "" for none
		needsRestart string // what it names as needing a restart, "" for none
	}{
		{"name", nil, "", ""}, // refused by Reload itself (TestBadReloadIsRefusedAndOldConfigServes)
		{"listen", func(c *Config) { c.Listen = "127.0.0.1:1" }, "", "listen"},
		{"tls", func(c *Config) { t := *c.TLS; t.Listen = "127.0.0.1:2"; c.TLS = &t }, "tls: certificate files re-read", "tls.listen"},
		{"cache", func(c *Config) { c.Cache.MaxBytes *= 2 }, "cache", ""},
		{"server", func(c *Config) { c.Server.IdleTimeout += time.Second }, "", "server"},
		{"purge", func(c *Config) { c.Purge.MaxBans++ }, "purge", ""},
		{"sites", func(c *Config) { c.Sites = slices.Clone(c.Sites); c.Sites[1].Origin = "http://127.0.0.1:9" }, "sites[1] (b.test): changed", ""},
		{"access_log", func(c *Config) { c.AccessLog.Format = "combined" }, "", "access_log"},
		{"tracing", func(c *Config) { c.Tracing.SampleRatio = 0.5 }, "", "tracing"},
		{"region", func(c *Config) { c.Region = "us" }, "", "region"},
		{"admin", nil, "", ""}, // its keys have rows of their own
		{"admin.listen", func(c *Config) { c.Admin.Listen = "127.0.0.1:3" }, "", "admin.listen"},
		{"admin.token_file", func(c *Config) { c.Admin.TokenFile = "t" }, "", "admin.token"},
		{"admin.token", func(c *Config) { c.Admin.Token = "t" }, "", "admin.token"},
		{"admin.read_token_file", func(c *Config) { c.Admin.ReadTokenFile = "t" }, "", "admin.read_token"},
		{"admin.read_token", func(c *Config) { c.Admin.ReadToken = "t" }, "", "admin.read_token"},
		{"admin.drain_delay", func(c *Config) { c.Admin.DrainDelay = time.Second }, "admin.drain_delay", ""},
		{"cluster", func(c *Config) { cc := *c.Cluster; cc.PeerTimeout += time.Second; c.Cluster = &cc }, "", "cluster"},
		{"regions", func(c *Config) { c.Regions = slices.Clone(c.Regions); c.Regions[2].Name = "asia" }, "regions", ""},
	}
	covered := map[string]bool{}
	for _, r := range rows {
		covered[r.key] = true
	}
	for _, key := range yamlKeys(reflect.TypeFor[Config](), "") {
		if !covered[key] {
			t.Errorf("no row for %s: what does a reload that changes it report?", key)
		}
	}
	for _, key := range yamlKeys(reflect.TypeFor[AdminConfig](), "admin.") {
		if !covered[key] {
			t.Errorf("no row for %s: what does a reload that changes it report?", key)
		}
	}
	for _, r := range rows {
		if r.change == nil {
			continue
		}
		t.Run(r.key, func(t *testing.T) {
			next := base
			r.change(&next)
			_, rep := reconcile(base, next)
			var wantApplied, wantRestart []string
			if base.TLS != nil {
				wantApplied = append(wantApplied, "tls: certificate files re-read")
			}
			if r.applied != "" && !slices.Contains(wantApplied, r.applied) {
				wantApplied = append(wantApplied, r.applied)
			}
			if r.needsRestart != "" {
				wantRestart = append(wantRestart, r.needsRestart)
			}
			if !slices.Equal(rep.Applied, wantApplied) || !slices.Equal(rep.NeedsRestart, wantRestart) {
				t.Errorf("changing %s: applied %q, needs restart %q; want %q and %q", r.key, rep.Applied, rep.NeedsRestart, wantApplied, wantRestart)
			}
		})
	}
}

// yamlKeys lists the YAML keys of struct type t, prefixed, descending into
// inline fields.
func yamlKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for f := range t.Fields() {
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if opts == "inline" {
			keys = append(keys, yamlKeys(f.Type, prefix)...)
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		keys = append(keys, prefix+name)
	}
	return keys
}

// A reload re-reads the certificate files of the cluster's links
// (cluster.Member.ReloadTLS), as it does the sites': the report says so,
// even when the config did not change.
func TestReconcileNamesTheLinkCertificatesReRead(t *testing.T) {
	base := planConfig()
	base.Cluster.TLS.CAFile, base.Cluster.TLS.CertFile, base.Cluster.TLS.KeyFile = "ca.pem", "link.pem", "link.key"
	base = base.WithDefaults()
	_, rep := reconcile(base, base)
	if want := []string{"cluster.tls: certificate files re-read"}; !slices.Equal(rep.Applied, want) || len(rep.NeedsRestart) > 0 {
		t.Fatalf("applied %q, needs restart %q; want %q and nothing", rep.Applied, rep.NeedsRestart, want)
	}
	plain := planConfig().WithDefaults()
	if _, rep := reconcile(plain, plain); len(rep.Applied) > 0 {
		t.Fatalf("without cluster.tls: applied %q", rep.Applied)
	}
}
