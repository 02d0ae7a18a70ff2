package node_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/limit"
	"github.com/meridiancdn/meridian/edge/listen"
	"github.com/meridiancdn/meridian/edge/node"
)

// documentedMetrics reads the metric table of deploy/README.md (section
// Monitoring): every name in its first column.
func documentedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile("`(meridian_[a-z0-9_]+)`")
	out := map[string]bool{}
	for line := range strings.Lines(string(b)) {
		if !strings.HasPrefix(line, "| `meridian_") {
			continue
		}
		first, _, _ := strings.Cut(strings.TrimPrefix(line, "|"), "|")
		for _, m := range name.FindAllStringSubmatch(first, -1) {
			out[m[1]] = true
		}
	}
	if len(out) < 20 {
		t.Fatalf("found %d metrics in deploy/README.md's table: has its shape changed?", len(out))
	}
	return out
}

// exportedMetrics fetches a node's /metrics and returns the meridian_
// families it names (a histogram's family, not its _bucket series).
func exportedMetrics(t *testing.T, n *node.Node) map[string]bool {
	t.Helper()
	resp, err := http.Get("http://" + n.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" && strings.HasPrefix(f[2], "meridian_") {
			out[f[2]] = true
		}
	}
	return out
}

// The metric table of deploy/README.md is what a node exports: every
// meridian_ metric of a real node's /metrics (a clustered node with a
// shield region, the disk tier, TLS and a per-client limit, after a
// miss, a hit and an origin error) is in
// the table, and every metric in the table is on that page, but for
// those that only the events they count (or another process) make
// appear, each listed below with the reason. (Issue 16: the table had
// fallen behind by 13 metrics.)
func TestDeployReadmeListsTheMetricsANodeExports(t *testing.T) {
	certPEM, keyPEM, err := listen.SelfSignedCert([]string{"site.test"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	osrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "documented")
	}))
	defer osrv.Close()
	cfg := nodeConfig("edge-metrics", osrv.URL)
	cfg.Region = "eu"
	cfg.Cache.Disk = edge.DiskConfig{Path: filepath.Join(dir, "disk"), MaxBytes: 64 << 20}
	cfg.TLS = &edge.TLSConfig{Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile}
	cfg.Regions = []node.RegionConfig{{Name: "us", Edges: []node.EdgeRef{{Name: "us-0", Peer: "127.0.0.1:1"}}}}
	cfg.Sites[0].Shield = edge.ShieldConfig{Regions: []string{"us"}}
	cfg.Sites[0].Limits = limit.Config{RequestsPerSecond: 1000}
	// An origin that refuses connections: its errors are counted.
	cfg.Sites = append(cfg.Sites, edge.SiteConfig{Hosts: []string{"down.test"}, Origin: "http://127.0.0.1:1"})
	cfg.Admin.DrainDelay = 0
	n, err := node.Start(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(t.Context())
	client := newClient(t)
	// A miss (the shield is down: a fallback), a hit, an origin error.
	for _, host := range []string{"site.test", "site.test", "down.test"} {
		req, _ := http.NewRequest("GET", "http://"+n.HTTPAddr()+"/doc", nil)
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	documented, exported := documentedMetrics(t), exportedMetrics(t, n)
	var undocumented []string
	for m := range exported {
		if !documented[m] {
			undocumented = append(undocumented, m)
		}
	}
	slices.Sort(undocumented)
	for _, m := range undocumented {
		t.Errorf("%s is exported but not in deploy/README.md's metric table", m)
	}
	// Documented metrics a node shows only once what they count happens
	// (a counter by label has no series before), or that another
	// process exports.
	notYet := map[string]string{
		"meridian_geo_region_up":                         "the geo service's",
		"meridian_edge_stale_served_total":               "after a stale answer",
		"meridian_edge_rule_matches_total":               "after a site rule matched",
		"meridian_edge_abusive_connections_closed_total": "after an HTTP/2 or HTTP/3 connection was closed for rapid resets",
		"meridian_origin_overloaded_total":               "after an origin's caps refused a try",
		"meridian_shield_requests_total":                 "after a shield region answered",
	}
	var missing []string
	for m := range documented {
		if !exported[m] && notYet[m] == "" {
			missing = append(missing, m)
		}
	}
	slices.Sort(missing)
	for _, m := range missing {
		t.Errorf("%s is in deploy/README.md's metric table but not on a node's /metrics", m)
	}
}
