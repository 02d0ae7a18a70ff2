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

// Issue 13's overload fields: left out, each gets its safe default (as
// deploy/edge.example.yaml documents it); set wrong, Load (and so
// `meridian validate`) refuses the file and names the field.
func TestLoadOverloadFields(t *testing.T) {
	const site = "sites: [{hosts: [a.example], origin: 'http://127.0.0.1:1'}]\n"
	const cluster = "cluster: {secret: 0123456789abcdef0123}\n"
	dir := t.TempDir()
	write := func(conf string) string {
		p := filepath.Join(dir, "edge.yaml")
		if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := node.Load(write(site + cluster))
	if err != nil {
		t.Fatal(err)
	}
	if k := c.Cache; k.MaxInflightBytes != k.MaxBytes/4 || k.InflightWait != 500*time.Millisecond || k.FinishAbandoned != 0.5 {
		t.Errorf("cache defaults: max_inflight_bytes %d, inflight_wait %v, finish_abandoned %v", k.MaxInflightBytes, k.InflightWait, k.FinishAbandoned)
	}
	if s := c.Server; s.MaxConnections != 4096 || s.MaxConnectionsPerIP != 128 || s.SendTimeout != time.Minute {
		t.Errorf("server defaults: max_connections %d, max_connections_per_ip %d, send_timeout %v", s.MaxConnections, s.MaxConnectionsPerIP, s.SendTimeout)
	}
	if p := c.Cluster.PeerLimits; p.MaxConcurrent != 1024 || p.MaxQueue != 1024 || p.QueueTimeout <= 0 || p.QueueTimeout >= c.Cluster.PeerTimeout {
		t.Errorf("cluster.peer_limits defaults: %+v (peer_timeout %v)", p, c.Cluster.PeerTimeout)
	}
	if l := c.Sites[0].Limits; l.Enabled() {
		t.Errorf("client limits on by default: %+v", l)
	}
	for _, tc := range []struct{ conf, want string }{
		{site + "cache: {max_inflight_bytes: -1}\n", "cache.max_inflight_bytes: negative"},
		{site + "cache: {inflight_wait: -1s}\n", "cache.inflight_wait: negative"},
		{site + "cache: {finish_abandoned: 1.5}\n", "cache.finish_abandoned: 1.5 not in [0, 1]"},
		{site + "cache: {finish_abandoned: -0.1}\n", "cache.finish_abandoned: -0.1 not in [0, 1]"},
		{site + "server: {max_connections: -2}\n", "server.max_connections: -2"},
		{site + "server: {send_timeout: -1s}\n", "server.send_timeout: negative"},
		{site + "server: {max_connections: 10, max_connections_per_ip: 11}\n", "server.max_connections_per_ip"},
		{"sites: [{hosts: [a], origin: 'http://o', pool: {max_conns: -2}}]\n", "sites[0].pool: max_conns: -2"},
		{"sites: [{hosts: [a], origin: 'http://o', pool: {max_inflight: -2}}]\n", "sites[0].pool: max_inflight: -2"},
		{"sites: [{hosts: [a], origin: 'http://o', pool: {max_queue: -2}}]\n", "sites[0].pool: max_queue: -2"},
		{"sites: [{hosts: [a], origin: 'http://o', pool: {queue_timeout: -1s}}]\n", "sites[0].pool: queue_timeout: negative"},
		{"sites: [{hosts: [a], origin: 'http://o', limits: {rate: -1}}]\n", "sites[0].limits: rate: negative"},
		{"sites: [{hosts: [a], origin: 'http://o', limits: {max_concurrent: -1}}]\n", "sites[0].limits: max_concurrent: negative"},
		{"sites: [{hosts: [a], origin: 'http://o', limits: {max_clients: -1}}]\n", "sites[0].limits: max_clients: negative"},
		{site + "cluster: {secret: 0123456789abcdef0123, peer_limits: {max_concurrent: -1}}\n", "cluster.peer_limits.max_concurrent: negative"},
		{site + "cluster: {secret: 0123456789abcdef0123, peer_limits: {max_queue: -2}}\n", "cluster.peer_limits.max_queue: -2"},
		{site + "cluster: {secret: 0123456789abcdef0123, peer_timeout: 2s, peer_limits: {queue_timeout: 2s}}\n", "cluster.peer_limits.queue_timeout: 2s must be shorter than cluster.peer_timeout"},
	} {
		_, err := node.Load(write(tc.conf))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s  got  %v\n  want %s", tc.conf, err, tc.want)
		}
	}
}
