package node_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/node"
)

// A node's own sections (admin, cluster, regions) take units and get the
// same errors as the edge's: line, path, what is wanted, the nearest
// field; and Load names the file.
func TestLoadUnitsAndFriendlyErrors(t *testing.T) {
	const site = "sites: [{hosts: [a.example], origin: 'http://127.0.0.1:1'}]\n"
	dir := t.TempDir()
	write := func(conf string) string {
		p := filepath.Join(dir, "edge.yaml")
		if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := node.Load(write(site + "admin: {drain_delay: 1d}\ncluster: {secret: 0123456789abcdef0123, suspect_for: 1d}\ncache: {max_bytes: 2GiB}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.DrainDelay != 24*time.Hour || c.Cluster.SuspectFor != 24*time.Hour || c.Cache.MaxBytes != 2<<30 {
		t.Fatalf("units: %v %v %d", c.Admin.DrainDelay, c.Cluster.SuspectFor, c.Cache.MaxBytes)
	}
	if c.MemoryLimit() != 2<<30+(2<<30)/8+(2<<30)/4+node.MemoryHeadroom {
		t.Fatalf("memory limit %d from a 2GiB cache", c.MemoryLimit())
	}
	for _, tc := range []struct{ conf, want string }{
		{site + "admin: {token_fiel: /x}\n", "edge.yaml: config: line 2: admin.token_fiel: unknown field; did you mean token_file?"},
		{site + "cluster: {secret: 0123456789abcdef0123, peer_timeout: soon}\n", `line 2: cluster.peer_timeout: "soon" is not a duration`},
		{site + "regions: [{name: eu, edges: [{name: a, peer: '1.2.3.4:1', weight: heavy}]}]\n", `line 2: regions[0].edges[0].weight: "heavy" is not a whole number`},
		{site + "regoins: []\n", "line 2: unknown top-level field regoins; did you mean regions?"},
	} {
		_, err := node.Load(write(tc.conf))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s  got  %v\n  want %s", tc.conf, err, tc.want)
		}
	}
}
