package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/node"
)

// A regions table that the ring refuses (an edge listed twice), or that
// lists a region twice, is refused by the reload with an error that names
// the entry, and the running config keeps applying: the shield is still
// used.
func TestReloadRefusesDuplicatedRegionEdge(t *testing.T) {
	c, _ := startCDN(t, []string{"eu", "us"}, 2, []string{"eu"}, true)
	us := c.Region("us").Node(0)
	cfg := us.Config()
	bad := cfg
	bad.Regions = slices.Clone(cfg.Regions)
	for i, r := range bad.Regions {
		if r.Name == "eu" {
			r.Edges = append(slices.Clone(r.Edges), node.EdgeRef{Name: r.Edges[0].Name, Peer: "127.0.0.1:1"})
			bad.Regions[i] = r
		}
	}
	_, err := us.Reload(bad)
	if err == nil {
		t.Fatal("reload with a duplicated edge in regions was accepted")
	}
	if want := `regions[0].edges[2].name: duplicate "eu-1" (also edges[0])`; !strings.Contains(err.Error(), want) {
		t.Fatalf("reload refused with %q, want it to name %q", err, want)
	}
	// A region listed twice (the second entry would take the first's
	// place in the plan's rings) is refused as well.
	bad.Regions = append(slices.Clone(cfg.Regions), node.RegionConfig{Name: "eu", Edges: []node.EdgeRef{{Name: "eu-9", Peer: "127.0.0.1:1"}}})
	_, err = us.Reload(bad)
	if want := `regions[2].name: "eu" listed twice`; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("reload with a region listed twice: %v, want it refused naming %q", err, want)
	}
	for _, n := range nodes(c.Region("us")) {
		target := "/after-refused-reload?cc=max-age%3D600&via=" + n.Name
		status, _, cs := get(t, n, target)
		if status != 200 || !strings.Contains(cs, "eu-") {
			t.Fatalf("via %s after the refused reload: %d, Cache-Status %q does not show the shield", n.Name, status, cs)
		}
	}
}

// A reload applies what it can, keeps what needs a restart at its running
// value and says which is which; /status and /metrics show the config
// generation and the refused reloads.
func TestReloadReportsWhatItAppliedAndWhatNeedsARestart(t *testing.T) {
	answer := func(body string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=600")
			io.WriteString(w, body)
		}))
		t.Cleanup(s.Close)
		return s
	}
	a, b := answer("from a"), answer("from b")
	cfg := nodeConfig("edge-rep", a.URL)
	cfg.Admin.DrainDelay = 0
	n, err := node.Start(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	client := newClient(t)
	get := func(target string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+n.HTTPAddr()+target, nil)
		req.Host = "site.test"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	if got := get("/one"); got != "from a" {
		t.Fatalf("before the reload: %q", got)
	}
	httpAddr := n.HTTPAddr()

	bad := cfg
	bad.Sites = []edge.SiteConfig{{Hosts: []string{"site.test"}, Origin: "ftp://x"}}
	if _, err := n.Reload(bad); err == nil {
		t.Fatal("a bad config was applied")
	}

	next := nodeConfig("edge-rep", b.URL)
	next.Admin.DrainDelay = time.Second        // applied
	next.Listen = "127.0.0.1:1"                // needs a restart
	next.Cluster.PeerTimeout = 3 * time.Second // needs a restart
	next.Server.IdleTimeout = time.Minute      // needs a restart
	next.AccessLog.Format = "combined"         // needs a restart
	next.Tracing.SampleRatio = 0.5             // needs a restart
	rep, err := n.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Generation != 2 {
		t.Errorf("generation %d after one applied reload, want 2", rep.Generation)
	}
	if want := []string{"sites[0] (site.test): changed", "admin.drain_delay"}; !slices.Equal(rep.Applied, want) {
		t.Errorf("applied %q, want %q", rep.Applied, want)
	}
	if want := []string{"listen", "server", "access_log", "tracing", "cluster"}; !slices.Equal(rep.NeedsRestart, want) {
		t.Errorf("needs restart %q, want %q", rep.NeedsRestart, want)
	}
	if s := rep.String(); !strings.Contains(s, "needs a restart (running values kept): listen, server, access_log, tracing, cluster") {
		t.Errorf("report reads %q", s)
	}
	if got := get("/two"); got != "from b" {
		t.Fatalf("the new origin is not used: %q", got)
	}
	if n.HTTPAddr() != httpAddr {
		t.Fatalf("the listener moved to %s", n.HTTPAddr())
	}

	resp, err := client.Get("http://" + n.AdminAddr() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Config struct {
			Generation uint64 `json:"generation"`
			Plan       struct {
				Sites []struct {
					Origin struct{ Servers []string } `json:"origin"`
				} `json:"sites"`
			} `json:"plan"`
			LastReload struct {
				Error  string
				Report *node.ReloadReport
			} `json:"last_reload"`
		} `json:"config"`
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if st.Config.Generation != 2 || st.Config.LastReload.Report == nil || st.Config.LastReload.Error != "" ||
		len(st.Config.Plan.Sites) != 1 || !slices.Equal(st.Config.Plan.Sites[0].Origin.Servers, []string{b.URL}) {
		t.Fatalf("/status config: %+v", st.Config)
	}

	resp, err = client.Get("http://" + n.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"meridian_config_generation 2\n", "meridian_config_reloads_total 1\n", "meridian_config_reload_failures_total 1\n"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
