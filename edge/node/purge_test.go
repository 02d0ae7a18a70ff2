package node_test

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/poll"
)

func (c *cdn) purge(n *node.Node, body string) (int, edge.PurgeResult) {
	c.t.Helper()
	req, _ := http.NewRequest("POST", "http://"+n.AdminAddr()+"/purge", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer t0ken")
	resp, err := c.client.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var res edge.PurgeResult
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &res); err != nil {
		c.t.Fatalf("purge answer %q: %v", b, err)
	}
	return resp.StatusCode, res
}

// originServes returns how many times the origin had served target when it
// produced the copy that n answers with (the demo's X-Demo-Count).
func (c *cdn) originServes(n *node.Node, target string) int {
	c.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+n.HTTPAddr()+target, nil)
	req.Host = "site.test"
	resp, err := c.client.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		c.t.Fatalf("GET %s via %s: %d", target, n.HTTPAddr(), resp.StatusCode)
	}
	k, _ := strconv.Atoi(resp.Header.Get("X-Demo-Count"))
	return k
}

// warm makes every edge hold a copy: the owner's, and hot copies at the
// others.
func (c *cdn) warm(target string) {
	for i := 0; i < 3; i++ {
		for _, n := range c.all() {
			c.originServes(n, target)
		}
	}
}

func TestPurgeReachesEveryPeerAndRegion(t *testing.T) {
	c := startCDN(t, []string{"eu", "us"}, 2, nil, true)
	byURL := "/purl?cc=max-age%3D600"
	byKey := "/pkey?cc=max-age%3D600&sk=tag-a%20tag-b"
	c.warm(byURL)
	c.warm(byKey)
	before := c.demo.RequestsFor(byURL)

	status, res := c.purge(c.regions["us"][0], `{"urls": ["http://site.test`+byURL+`"]}`)
	if status != 200 || !res.Complete || len(res.Acked) != 3 || len(res.Failed) != 0 {
		t.Fatalf("purge by URL: %d %+v", status, res)
	}
	for _, n := range c.all() {
		if k := c.originServes(n, byURL); k <= int(before) {
			t.Fatalf("%s still serves the copy from origin fetch %d after the purge", n.Cluster().Name(), k)
		}
	}

	before = c.demo.RequestsFor(byKey)
	status, res = c.purge(c.regions["eu"][1], `{"keys": ["tag-b"]}`)
	if status != 200 || !res.Complete {
		t.Fatalf("purge by key: %d %+v", status, res)
	}
	for _, n := range c.all() {
		if k := c.originServes(n, byKey); k <= int(before) {
			t.Fatalf("%s still serves the copy from origin fetch %d after the key purge", n.Cluster().Name(), k)
		}
	}
}

func TestPurgeWithAPeerDownReportsItAndCatchesUp(t *testing.T) {
	c := startCDN(t, []string{"eu", "us"}, 2, nil, true)
	target := "/pdown?cc=max-age%3D600&sk=gone"
	c.warm(target)
	down := c.regions["us"][1]
	name := down.Cluster().Name()
	peerAddr := down.Cluster().PeerAddr() // published in the regions table
	down.Shutdown(context.Background())

	status, res := c.purge(c.regions["eu"][0], `{"keys": ["gone"]}`)
	if status != http.StatusAccepted || res.Complete || len(res.Failed) != 1 || res.Failed[0] != name {
		t.Fatalf("purge with %s down: %d %+v", name, status, res)
	}

	// The peer comes back (a new process: same name, same published peer
	// address) and rejoins; the purge it missed is delivered and it serves
	// a fresh copy.
	seeds := []string{c.regions["us"][0].Cluster().GossipAddr()}
	cfg := nodeConfig(name, c.originURL, seeds...)
	cfg.Cluster.PeerListen = peerAddr
	cfg.Region = "us"
	cfg.Admin.DrainDelay = 0
	back, err := node.Start(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.regions["us"][1] = back
	waitMembers(t, c.regions["us"], 2)
	poll.Until(t, 10*time.Second, "the missed purge is delivered (no purges_pending in /status)", func() bool {
		var st struct {
			Pending map[string]int `json:"purges_pending"`
		}
		resp, err := c.client.Get("http://" + c.regions["eu"][0].AdminAddr() + "/status")
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		return len(st.Pending) == 0
	})
	before := c.demo.RequestsFor(target)
	if k := c.originServes(back, target); k <= int(before) {
		t.Fatalf("the returned peer serves a purged copy (origin fetch %d)", k)
	}
}

// BenchmarkPurge measures how long the purge API takes to answer, having
// reached every edge: within one region (2 edges) and across two regions
// (2 x 2 edges). It reports the p50 and p99 latency.
func BenchmarkPurge(b *testing.B) {
	for _, tc := range []struct {
		name    string
		regions []string
	}{
		{"region", []string{"eu"}},
		{"cdn", []string{"eu", "us"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := startCDN(b, tc.regions, 2, nil, true)
			at := c.regions["eu"][0]
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				status, res := c.purge(at, `{"keys": ["bench-`+strconv.Itoa(i)+`"]}`)
				lat = append(lat, time.Since(start))
				if status != 200 || !res.Complete {
					b.Fatalf("purge: %d %+v", status, res)
				}
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// Prefix purges, ban expressions and PURGE on the public port reach every
// member of every region, with a site's own token as with the admin one;
// what they do not name is served as before everywhere.
func TestBansReachEveryPeerAndRegion(t *testing.T) {
	c := startCDN(t, []string{"eu", "us"}, 2, nil, true)
	const siteToken = "site-token-0123456789"
	for _, n := range c.all() {
		cfg := c.cfgs[n.Cluster().Name()]
		cfg.Sites[0].PurgeToken = siteToken
		if _, err := n.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	banned, kept, regex := "/bp/a?cc=max-age%3D600", "/keep/b?cc=max-age%3D600", "/rx/c.png?cc=max-age%3D600"
	for _, target := range []string{banned, kept, regex} {
		c.warm(target)
	}
	served := func(target string) map[string]int {
		out := map[string]int{}
		for _, n := range c.all() {
			out[n.Cluster().Name()] = c.originServes(n, target)
		}
		return out
	}
	keptBefore := served(kept)
	before := c.demo.RequestsFor(banned)

	req, _ := http.NewRequest("POST", "http://"+c.regions["us"][0].AdminAddr()+"/purge",
		strings.NewReader(`{"prefixes": ["https://site.test/bp/"]}`))
	req.Header.Set("Authorization", "Bearer "+siteToken)
	resp, err := c.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var res edge.PurgeResult
	json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if resp.StatusCode != 200 || !res.Complete || len(res.Acked) != 3 || res.Bans != 1 {
		t.Fatalf("prefix purge: %d %+v", resp.StatusCode, res)
	}
	for name, k := range served(banned) {
		if k <= int(before) {
			t.Fatalf("%s still serves the copy from origin fetch %d after the prefix purge", name, k)
		}
	}

	// PURGE on the public port: a wrong token is a 405 that reaches
	// neither the origin nor any store; the site's token bans
	// everywhere.
	purge := func(n *node.Node, token string) (int, string) {
		req, _ := http.NewRequest("PURGE", "http://"+n.HTTPAddr()+"/", nil)
		req.Host = "site.test"
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-Purge-Regex", `^/rx/.*\.png`)
		resp, err := c.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	originBefore := c.demo.Requests()
	if status, body := purge(c.regions["eu"][1], "t0ken-wrong"); status != http.StatusMethodNotAllowed {
		t.Fatalf("PURGE with a wrong token: %d %q", status, body)
	}
	if n := c.demo.Requests(); n != originBefore {
		t.Fatalf("a refused PURGE reached the origin (%d requests, was %d)", n, originBefore)
	}
	before = c.demo.RequestsFor(regex)
	if status, body := purge(c.regions["eu"][1], siteToken); status != 200 || !strings.Contains(body, `"complete":true`) {
		t.Fatalf("PURGE with the site token: %d %q", status, body)
	}
	for name, k := range served(regex) {
		if k <= int(before) {
			t.Fatalf("%s still serves the copy from origin fetch %d after the PURGE", name, k)
		}
	}
	if got := served(kept); !maps.Equal(got, keptBefore) {
		t.Fatalf("the object no purge named was fetched again: %v, was %v", got, keptBefore)
	}
}
