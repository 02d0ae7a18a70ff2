package node

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/meridiancdn/meridian/edge"
)

// ReloadReport says what a reload applied and what of the new config
// waits for a restart (those settings keep their running values).
type ReloadReport struct {
	// Generation is the config generation now running.
	Generation uint64 `json:"generation"`
	// Applied are the settings the reload changed, by their YAML names,
	// such as "sites[1] (b.example): changed" or "cache", and the
	// certificate files it read again ("tls: certificate files re-read",
	// "cluster.tls: certificate files re-read").
	Applied []string `json:"applied"`
	// NeedsRestart are the changed settings that only a restart applies:
	// listeners (tls.listen, tls.disable_http3 too), tls.acme and
	// tls.reload_interval, server settings, the admin listener and tokens, the
	// access log (its destination and format; a file's rotation needs no
	// restart: SIGUSR1 reopens it), tracing (propagation and export), the
	// cluster section but cluster.draining (applied), the region and the
	// disk tier (cache.disk).
	NeedsRestart []string `json:"needs_restart"`
	// Rings are the other regions' rings of the new plan, and whether each
	// was kept from the running plan.
	Rings []RingPlan `json:"rings,omitempty"`
}

// String is the report on one line, for logs.
func (r ReloadReport) String() string {
	applied := "nothing changed"
	if len(r.Applied) > 0 {
		applied = "applied " + strings.Join(r.Applied, "; ")
	}
	s := fmt.Sprintf("config generation %d: %s", r.Generation, applied)
	if len(r.NeedsRestart) > 0 {
		s += "; needs a restart (running values kept): " + strings.Join(r.NeedsRestart, ", ")
	}
	return s
}

// ReloadStatus is the last reload as /status shows it.
type ReloadStatus struct {
	// Time is when it was tried.
	Time time.Time `json:"time"`
	// Error is why it was refused, "" when it was applied.
	Error string `json:"error,omitempty"`
	// Report is what it applied, when it was.
	Report *ReloadReport `json:"report,omitempty"`
}

// reconcile returns the config a reload applies, next with every setting
// that needs a restart kept at its running value in old, and the report
// of what differs. Both are defaulted.
func reconcile(old, next Config) (Config, ReloadReport) {
	var r ReloadReport
	eff := next
	keep := func(name string, changed bool, restore func()) {
		if changed {
			r.NeedsRestart = append(r.NeedsRestart, name)
			restore()
		}
	}
	keep("listen", old.Listen != next.Listen, func() { eff.Listen = old.Listen })
	tlsChanges(old.TLS, next.TLS, keep, &eff, &r)
	keep("server", !reflect.DeepEqual(old.Server, next.Server), func() { eff.Server = old.Server })
	keep("region", old.Region != next.Region, func() { eff.Region = old.Region })
	keep("access_log", old.AccessLog != next.AccessLog, func() { eff.AccessLog = old.AccessLog })
	keep("tracing", old.Tracing != next.Tracing, func() { eff.Tracing = old.Tracing })
	drainChanged := false
	if old.Cluster != nil && next.Cluster != nil {
		// cluster.draining is applied (cluster.Member.SetDraining); the
		// rest of the section keeps its running values.
		running := *old.Cluster
		running.Draining = next.Cluster.Draining
		drainChanged = old.Cluster.Draining != next.Cluster.Draining
		keep("cluster", !reflect.DeepEqual(&running, next.Cluster), func() { eff.Cluster = &running })
	} else {
		keep("cluster", !reflect.DeepEqual(old.Cluster, next.Cluster), func() { eff.Cluster = old.Cluster })
	}
	keep("cache.disk", old.Cache.Disk != next.Cache.Disk, func() { eff.Cache.Disk = old.Cache.Disk })
	keep("admin.listen", old.Admin.Listen != next.Admin.Listen, func() { eff.Admin.Listen = old.Admin.Listen })
	keep("admin.token", old.Admin.Token != next.Admin.Token || old.Admin.TokenFile != next.Admin.TokenFile, func() {
		eff.Admin.Token, eff.Admin.TokenFile = old.Admin.Token, old.Admin.TokenFile
	})
	keep("admin.read_token", old.Admin.ReadToken != next.Admin.ReadToken || old.Admin.ReadTokenFile != next.Admin.ReadTokenFile, func() {
		eff.Admin.ReadToken, eff.Admin.ReadTokenFile = old.Admin.ReadToken, old.Admin.ReadTokenFile
	})

	r.Applied = append(r.Applied, siteChanges(old.Sites, next.Sites)...)
	if !reflect.DeepEqual(old.Cache, eff.Cache) {
		r.Applied = append(r.Applied, "cache")
	}
	if old.Purge != next.Purge {
		r.Applied = append(r.Applied, "purge") // the ban cap and sweep interval (Handler.Reload)
	}
	if !reflect.DeepEqual(old.Regions, next.Regions) {
		r.Applied = append(r.Applied, "regions")
	}
	if old.Admin.DrainDelay != next.Admin.DrainDelay {
		r.Applied = append(r.Applied, "admin.drain_delay")
	}
	if drainChanged {
		r.Applied = append(r.Applied, "cluster.draining")
	}
	if eff.Cluster != nil && eff.Cluster.TLS.Enabled() {
		// Node.reload calls cluster.Member.ReloadTLS, as it re-reads the
		// sites' certificate files.
		r.Applied = append(r.Applied, "cluster.tls: certificate files re-read")
	}
	return eff, r
}

// siteChanges names the sites added, changed or removed, by their first
// host.
func siteChanges(old, next []edge.SiteConfig) []string {
	key := func(sc edge.SiteConfig) string {
		if len(sc.Hosts) == 0 {
			return ""
		}
		return strings.ToLower(sc.Hosts[0])
	}
	before := make(map[string]edge.SiteConfig, len(old))
	for _, sc := range old {
		before[key(sc)] = sc
	}
	var out []string
	seen := map[string]bool{}
	for i, sc := range next {
		k := key(sc)
		seen[k] = true
		prev, ok := before[k]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("sites[%d] (%s): added", i, k))
		case !reflect.DeepEqual(prev, sc):
			out = append(out, fmt.Sprintf("sites[%d] (%s): changed", i, k))
		}
	}
	for _, sc := range old {
		if k := key(sc); !seen[k] {
			out = append(out, fmt.Sprintf("site %s: removed", k))
		}
	}
	return out
}
