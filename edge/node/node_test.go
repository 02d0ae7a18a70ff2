package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/cluster"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/cdntest"
	"github.com/meridiancdn/meridian/internal/leakcheck"
	"github.com/meridiancdn/meridian/origin"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m)
}

func nodeConfig(name, originURL string, seeds ...string) node.Config {
	return node.Config{
		Cluster: &cluster.Config{
			GossipListen: "127.0.0.1:0",
			PeerListen:   "127.0.0.1:0",
			Seeds:        seeds,
			Secret:       "rolling-restart-secret-0123456789",
			Preset:       "local",
		},
		Config: edge.Config{
			AccessLog: edge.AccessLogConfig{Destination: "off"},
			Name:      name,
			Listen:    "127.0.0.1:0",
			Sites:     []edge.SiteConfig{{Hosts: []string{"site.test"}, Origin: originURL}},
			Server:    edge.ServerConfig{ShutdownTimeout: 5 * time.Second},
		},
		Admin: node.AdminConfig{Listen: "127.0.0.1:0", Token: "t0ken", DrainDelay: 150 * time.Millisecond},
	}
}

// balancer sends each request to the next node whose /readyz says ready,
// as a load balancer with readiness probes does.
type balancer struct {
	mu     sync.Mutex
	nodes  []*node.Node
	ready  []bool
	next   int
	client *http.Client
}

func (b *balancer) probe() {
	b.mu.Lock()
	nodes := append([]*node.Node(nil), b.nodes...)
	b.mu.Unlock()
	ready := make([]bool, len(nodes))
	for i, n := range nodes {
		if n == nil {
			continue
		}
		resp, err := b.client.Get("http://" + n.AdminAddr() + "/readyz")
		if err == nil {
			ready[i] = resp.StatusCode == 200
			resp.Body.Close()
		}
	}
	b.mu.Lock()
	b.ready = ready
	b.mu.Unlock()
}

// pick returns the next ready node's address other than except.
func (b *balancer) pick(except ...string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := 0; i < len(b.nodes); i++ {
		k := (b.next + i) % len(b.nodes)
		if k < len(b.ready) && b.ready[k] && b.nodes[k] != nil && !slices.Contains(except, b.nodes[k].HTTPAddr()) {
			b.next = k + 1
			return b.nodes[k].HTTPAddr(), true
		}
	}
	return "", false
}

func (b *balancer) set(i int, n *node.Node) {
	b.mu.Lock()
	b.nodes[i] = n
	b.mu.Unlock()
}

// A rolling restart of every edge under a request loop loses no request.
func TestRollingRestartLosesNoRequest(t *testing.T) {
	reg := cdntest.StartRegion(t, cdntest.StartOrigin(t), cdntest.RegionOptions{Prefix: "edge-",
		Config: func(_ int, c *node.Config) { c.Admin.DrainDelay = 150 * time.Millisecond }})
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	lb := &balancer{client: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
	for _, i := range reg.Live() {
		lb.nodes = append(lb.nodes, reg.Node(i).Node)
	}
	reg.WaitConverged(cdntest.ConvergeTimeout)
	lb.probe()

	ctx, cancel := context.WithCancel(context.Background())
	var probes sync.WaitGroup
	probes.Add(1)
	go func() {
		defer probes.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				lb.probe()
			}
		}
	}()

	var ok, failed atomic.Int64
	var loop sync.WaitGroup
	for w := 0; w < 4; w++ {
		loop.Add(1)
		go func(w int) {
			defer loop.Done()
			for i := 0; i < 5000 && ctx.Err() == nil; i++ {
				addr, found := lb.pick()
				if !found {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				target := fmt.Sprintf("/obj%d?cc=max-age%%3D60&size=2048", (w*131+i)%40)
				if i%5 == 0 {
					target = fmt.Sprintf("/nocache%d-%d?size=512", w, i)
				}
				req, _ := http.NewRequest("GET", "http://"+addr+target, nil)
				req.Host = "site.test"
				resp, err := lb.client.Do(req)
				if errors.Is(err, syscall.ECONNREFUSED) {
					// As nginx and Envoy do, a balancer retries a connect
					// that never reached a server on another one: the
					// node it picked went away between the pick and the
					// dial (a slow, loaded test machine, where the
					// readiness probes lag).
					if addr, found = lb.pick(addr); found {
						req, _ = http.NewRequest("GET", "http://"+addr+target, nil)
						req.Host = "site.test"
						resp, err = lb.client.Do(req)
					}
				}
				if err != nil {
					failed.Add(1)
					t.Logf("request to %s failed: %v", addr, err)
					continue
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				want := int64(2048)
				if strings.HasPrefix(target, "/nocache") {
					want = 512
				}
				if resp.StatusCode != 200 || n != want {
					failed.Add(1)
					t.Logf("request to %s: status %d, %d bytes", addr, resp.StatusCode, n)
					continue
				}
				ok.Add(1)
			}
		}(w)
	}

	for i := range lb.nodes {
		time.Sleep(100 * time.Millisecond)
		if err := reg.Stop(i); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		lb.set(i, nil)
		lb.set(i, reg.Restart(i).Node)
		reg.WaitConverged(cdntest.ConvergeTimeout)
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	loop.Wait()
	probes.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during the rolling restart", failed.Load(), failed.Load()+ok.Load())
	}
	if ok.Load() < 100 {
		t.Fatalf("only %d requests ran", ok.Load())
	}
}

func TestBadReloadIsRefusedAndOldConfigServes(t *testing.T) {
	demo := origin.NewDemo(nil)
	defer demo.Close()
	osrv := httptest.NewServer(demo)
	defer osrv.Close()
	n, err := node.Start(nodeConfig("edge-r", osrv.URL), node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("name: edge-r\nsites: [{hosts: [site.test], origin: 'ftp://x'}]\n"), 0o600)
	if _, err := node.Load(bad); err == nil || !strings.Contains(err.Error(), "sites[0].origin") {
		t.Fatalf("bad config loaded: %v", err)
	}
	cfg := nodeConfig("edge-r", osrv.URL)
	cfg.Sites[0].Pool.Servers = []origin.ServerConfig{{URL: "http://127.0.0.1:1", Weight: -4}}
	if _, err := n.Reload(cfg); err == nil {
		t.Fatal("a config with a negative weight was accepted")
	}
	req, _ := http.NewRequest("GET", "http://"+n.HTTPAddr()+"/still?size=10", nil)
	req.Host = "site.test"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after a refused reload: %d", resp.StatusCode)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestNodeMetricsShowTheCluster(t *testing.T) {
	c, _ := startCDN(t, []string{"eu"}, 2, nil, true)
	resp, err := newClient(t).Get("http://" + c.Region("eu").Node(0).Node.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	text := string(b)
	for _, want := range []string{"meridian_cluster_members 2", "meridian_cluster_membership_changes_total", "meridian_cluster_consulted_total", "meridian_cluster_peer_replays_total",
		"meridian_purge_unacked_total 0", "meridian_edge_requests_total", "go_goroutines"} {
		if !strings.Contains(text, want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(text, "meridian_cluster_membership_changes_total 0\n") {
		t.Fatal("membership changes not counted")
	}
}

func TestMemoryLimitFollowsTheBudgets(t *testing.T) {
	cfg := nodeConfig("m1", "http://127.0.0.1:1")
	cfg.Cache.MaxBytes = 64 << 20
	// 64 MiB store + 8 MiB hot copies (1/8) + 16 MiB in flight (1/4) + headroom.
	if got, want := cfg.MemoryLimit(), int64(64+8+16)<<20+node.MemoryHeadroom; got != want {
		t.Fatalf("MemoryLimit = %d, want %d", got, want)
	}
	cfg.Cache.HotBytes, cfg.Cache.MaxInflightBytes = 1<<20, 2<<20
	if got, want := cfg.MemoryLimit(), int64(64+1+2)<<20+node.MemoryHeadroom; got != want {
		t.Fatalf("MemoryLimit = %d, want %d", got, want)
	}
}

// Issue 20: which build runs is in /status and in meridian_build_info.
func TestStatusAndMetricsReportTheBuild(t *testing.T) {
	c, _ := startCDN(t, []string{"eu"}, 1, nil, false)
	client := newClient(t)
	admin := "http://" + c.Region("eu").Node(0).Node.AdminAddr()
	resp, err := client.Get(admin + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Build node.BuildInfo `json:"build"`
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if st.Build != node.Build() || st.Build.GoVersion != runtime.Version() {
		t.Fatalf("status build %+v, want %+v", st.Build, node.Build())
	}
	resp, err = client.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := fmt.Sprintf(`meridian_build_info{go_version=%q,modified=%q,revision=%q,version=%q} 1`,
		st.Build.GoVersion, strconv.FormatBool(st.Build.Modified), st.Build.Revision, st.Build.Version)
	if !strings.Contains(string(b), want) {
		t.Fatalf("metrics lack %s", want)
	}
}

func TestStatusReportsMemory(t *testing.T) {
	c, _ := startCDN(t, []string{"eu"}, 1, nil, false)
	client := newClient(t)
	admin := "http://" + c.Region("eu").Node(0).Node.AdminAddr()
	resp, err := client.Get(admin + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Memory map[string]int64 `json:"memory"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Memory["rss_bytes"] <= 0 || st.Memory["heap_bytes"] <= 0 {
		t.Fatalf("status memory %v", st.Memory)
	}
	if _, ok := st.Memory["limit_bytes"]; !ok {
		t.Fatalf("status memory has no limit_bytes: %v", st.Memory)
	}
	// And the metrics: the limit beside the process's RSS.
	mresp, err := client.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, name := range []string{"\nmeridian_memory_limit_bytes ", "\nprocess_resident_memory_bytes "} {
		if !strings.Contains(string(b), name) {
			t.Errorf("metrics lack%s", name)
		}
	}
}

// Requests still waiting on upstream when the drain deadline comes get a
// clean answer, never a connection closed without one (issue 14, item 9).
func TestDrainAnswersRequestsThatCannotFinish(t *testing.T) {
	hang := make(chan struct{})
	arrived := make(chan struct{}, 4)
	osrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer osrv.Close()
	defer close(hang)
	cfg := nodeConfig("drain1", osrv.URL)
	cfg.Cluster = nil
	cfg.Sites[0].Timeout = time.Minute
	n, err := node.Start(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 20 * time.Second}
	type answer struct {
		status int
		close  bool
		err    error
	}
	send := func(method string) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			req, _ := http.NewRequest(method, "http://"+n.HTTPAddr()+"/waiting-"+method, strings.NewReader(""))
			req.Host = "site.test"
			resp, err := client.Do(req)
			if err != nil {
				ch <- answer{err: err}
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ch <- answer{status: resp.StatusCode, close: resp.Close}
		}()
		return ch
	}
	get, post := send(http.MethodGet), send(http.MethodPost)
	for i := 0; i < 2; i++ {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("requests did not reach the origin")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	n.Shutdown(ctx)
	for name, ch := range map[string]<-chan answer{"GET": get, "POST": post} {
		a := <-ch
		if a.err != nil || a.status != http.StatusServiceUnavailable || !a.close {
			t.Fatalf("%s waiting at the drain deadline: %+v (want 503 with Connection: close)", name, a)
		}
	}
}
