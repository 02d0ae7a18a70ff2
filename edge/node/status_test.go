package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/origin"
)

// nodeStatus is what a test reads of /status.
type nodeStatus struct {
	Region        string              `json:"region"`
	Regions       []node.RegionStatus `json:"regions"`
	Shields       []node.ShieldStatus `json:"shields"`
	Sites         []edge.SiteStatus   `json:"sites"`
	PurgesPending map[string]int      `json:"purges_pending"`
	Config        struct {
		Generation uint64 `json:"generation"`
		Hash       string `json:"hash"`
		Reloads    uint64 `json:"reloads"`
	} `json:"config"`
	Recent map[string]edge.RecentRatio `json:"hit_ratio_recent"`
}

func readStatus(t *testing.T, client *http.Client, n *node.Node) nodeStatus {
	t.Helper()
	resp, err := client.Get("http://" + n.AdminAddr() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var st nodeStatus
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("/status: %v\n%s", err, b)
	}
	return st
}

// metricLines returns the node's /metrics lines that start with prefix.
func metricLines(t *testing.T, client *http.Client, n *node.Node, prefix string) []string {
	t.Helper()
	resp, err := client.Get("http://" + n.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// A node started as `meridian edge` starts one (node.Start with its
// config, nothing injected) reports on /status the regions of its table as
// it sees them, its site's origin pool, the shield its fills go to, and
// the purges a peer has not acknowledged; /metrics says the same.
func TestEdgeNodeStatusShowsRegionsPoolsShieldAndPurges(t *testing.T) {
	demo := origin.NewDemo(nil)
	osrv := httptest.NewServer(demo)
	client := &http.Client{Timeout: 20 * time.Second}
	var nodes []*node.Node
	t.Cleanup(func() {
		for _, n := range nodes {
			n.Shutdown(context.Background())
		}
		client.CloseIdleConnections()
		demo.Close()
		osrv.Close()
	})
	start := func(cfg node.Config) *node.Node {
		t.Helper()
		n, err := node.Start(cfg, node.Options{})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
		return n
	}
	// The shield region eu: one edge.
	euCfg := nodeConfig("eu-0", osrv.URL)
	euCfg.Region, euCfg.Admin.DrainDelay = "eu", 0
	eu := start(euCfg)
	// Region ap's one edge is gone: nothing listens on its peer address.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	cfg := nodeConfig("us-0", osrv.URL)
	cfg.Region, cfg.Admin.DrainDelay = "us", 0
	cfg.Cluster.SuspectFor = time.Hour // ap-0 stays passed over while the test looks
	cfg.Regions = []node.RegionConfig{
		{Name: "ap", Edges: []node.EdgeRef{{Name: "ap-0", Peer: dead}}},
		{Name: "eu", Edges: []node.EdgeRef{{Name: "eu-0", Peer: eu.Cluster().PeerAddr()}}},
	}
	cfg.Sites[0].Shield = edge.ShieldConfig{Regions: []string{"ap", "eu"}}
	us := start(cfg)

	// Before any fill: every region up as far as the node knows, the
	// shields not asked yet.
	st := readStatus(t, client, us)
	if len(st.Shields) != 1 || st.Shields[0].Active != "ap" || st.Shields[0].Regions[0].State != "unknown" {
		t.Fatalf("shields before any fill: %+v", st.Shields)
	}

	// A miss: ap's shield edge does not answer, eu's does.
	req, _ := http.NewRequest("GET", "http://"+us.HTTPAddr()+"/cold?cc=max-age%3D600", nil)
	req.Host = "site.test"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Status"), "shield-ap; fwd=bypass") {
		t.Fatalf("fill: %d, Cache-Status %q", resp.StatusCode, resp.Header.Get("Cache-Status"))
	}
	// A purge: eu-0 acknowledges it, ap-0 cannot.
	preq, _ := http.NewRequest("POST", "http://"+us.AdminAddr()+"/purge", strings.NewReader(`{"keys":["k"]}`))
	preq.Header.Set("Authorization", "Bearer t0ken")
	presp, err := client.Do(preq)
	if err != nil {
		t.Fatal(err)
	}
	presp.Body.Close()
	if presp.StatusCode != http.StatusAccepted {
		t.Fatalf("purge: %d, want 202 (ap-0 does not acknowledge)", presp.StatusCode)
	}

	st = readStatus(t, client, us)
	if st.Region != "us" || len(st.Regions) != 3 {
		t.Fatalf("regions: %+v", st.Regions)
	}
	want := []node.RegionStatus{
		{Name: "us", Self: true, State: "up", Edges: 1, EdgesUp: 1, Source: "gossip"},
		{Name: "ap", Roles: []string{"shield", "failover"}, State: "down", Edges: 1, Down: []string{"ap-0"}, Source: "fills"},
		{Name: "eu", Roles: []string{"shield", "failover"}, State: "up", Edges: 1, EdgesUp: 1, Source: "fills"},
	}
	for i, w := range want {
		if got := st.Regions[i]; fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("regions[%d] = %+v, want %+v", i, got, w)
		}
	}
	sh := st.Shields[0]
	if sh.Site != "site.test" || sh.Active != "eu" || !sh.Direct || len(sh.Regions) != 2 {
		t.Fatalf("shield: %+v", sh)
	}
	if ap := sh.Regions[0]; ap.Name != "ap" || ap.State != "unreachable" || ap.Fallbacks != 1 || ap.LastFallback == nil || ap.Answers != 0 {
		t.Errorf("shield ap: %+v", ap)
	}
	if e := sh.Regions[1]; e.Name != "eu" || e.State != "reachable" || e.Answers != 1 || e.LastAnswer == nil || e.EdgesUp != 1 {
		t.Errorf("shield eu: %+v", e)
	}
	if len(st.Sites) != 1 || st.Sites[0].Pool == nil || len(st.Sites[0].Pool.Servers) != 1 {
		t.Fatalf("sites: %+v", st.Sites)
	}
	if s := st.Sites[0].Pool.Servers[0]; s.URL != osrv.URL || s.State != "up" || s.Failures != 0 {
		t.Errorf("origin server: %+v", s)
	}
	if len(st.PurgesPending) != 1 || st.PurgesPending["ap-0"] != 1 {
		t.Errorf("purges pending: %v, want ap-0: 1", st.PurgesPending)
	}
	if st.Config.Generation != 1 || st.Config.Hash == "" || st.Config.Hash != node.ConfigHash(cfg) || st.Config.Reloads != 0 {
		t.Errorf("config: %+v, hash of the config %q", st.Config, node.ConfigHash(cfg))
	}
	if _, ok := st.Recent["1m"]; !ok {
		t.Errorf("no recent hit ratio: %v", st.Recent)
	}

	for _, w := range []string{
		`meridian_region_edges_up{region="ap"} 0`,
		`meridian_region_edges_up{region="eu"} 1`,
		`meridian_region_edges_up{region="us"} 1`,
		`meridian_region_edges{region="ap"} 1`,
		`meridian_purges_pending 1`,
		`meridian_config_info{hash="` + st.Config.Hash + `"} 1`,
		`meridian_origin_server_connections{pool="site.test",server="` + osrv.URL + `"} 0`,
	} {
		name := w[:strings.IndexAny(w, "{ ")]
		if lines := metricLines(t, client, us, name); !slices.Contains(lines, w) {
			t.Errorf("metrics lack %s; have %q", w, lines)
		}
	}

	// A reload makes a new generation; the same config keeps its hash.
	if _, err := us.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	st = readStatus(t, client, us)
	if st.Config.Generation != 2 || st.Config.Reloads != 1 || st.Config.Hash != node.ConfigHash(cfg) {
		t.Errorf("config after a reload: %+v", st.Config)
	}
}
