package node_test

import (
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
	"github.com/meridiancdn/meridian/internal/cdntest"
	"github.com/meridiancdn/meridian/internal/poll"
)

// purge posts body to n's admin /purge with the admin token and returns
// the status and the decoded answer.
func purge(t testing.TB, client *http.Client, n *node.Node, body string) (int, edge.PurgeResult) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+n.AdminAddr()+"/purge", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer t0ken")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res edge.PurgeResult
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("purge answer %q: %v", b, err)
	}
	return resp.StatusCode, res
}

// originServes returns how many times the origin had served target when it
// produced the copy that n answers with (the demo's X-Demo-Count).
func originServes(t testing.TB, n *cdntest.Node, target string) int {
	t.Helper()
	resp, _, err := n.Get(target)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s via %s: %d", target, n.Node.HTTPAddr(), resp.StatusCode)
	}
	k, _ := strconv.Atoi(resp.Header.Get("X-Demo-Count"))
	return k
}

// warm makes every edge hold a copy: the owner's, and hot copies at the
// others.
func warm(t testing.TB, c *cdntest.CDN, target string) {
	for i := 0; i < 3; i++ {
		for _, n := range c.Nodes() {
			originServes(t, n, target)
		}
	}
}

func TestPurgeReachesEveryPeerAndRegion(t *testing.T) {
	c, o := startCDN(t, []string{"eu", "us"}, 2, nil, true)
	client := newClient(t)
	byURL := "/purl?cc=max-age%3D600"
	byKey := "/pkey?cc=max-age%3D600&sk=tag-a%20tag-b"
	warm(t, c, byURL)
	warm(t, c, byKey)
	before := o.RequestsFor(byURL)

	status, res := purge(t, client, c.Region("us").Node(0).Node, `{"urls": ["http://site.test`+byURL+`"]}`)
	if status != 200 || !res.Complete || len(res.Acked) != 3 || len(res.Failed) != 0 {
		t.Fatalf("purge by URL: %d %+v", status, res)
	}
	for _, n := range c.Nodes() {
		if k := originServes(t, n, byURL); k <= int(before) {
			t.Fatalf("%s still serves the copy from origin fetch %d after the purge", n.Name, k)
		}
	}

	before = o.RequestsFor(byKey)
	status, res = purge(t, client, c.Region("eu").Node(1).Node, `{"keys": ["tag-b"]}`)
	if status != 200 || !res.Complete {
		t.Fatalf("purge by key: %d %+v", status, res)
	}
	for _, n := range c.Nodes() {
		if k := originServes(t, n, byKey); k <= int(before) {
			t.Fatalf("%s still serves the copy from origin fetch %d after the key purge", n.Name, k)
		}
	}
}

func TestPurgeWithAPeerDownReportsItAndCatchesUp(t *testing.T) {
	c, o := startCDN(t, []string{"eu", "us"}, 2, nil, true)
	client := newClient(t)
	target := "/pdown?cc=max-age%3D600&sk=gone"
	warm(t, c, target)
	us := c.Region("us")
	name := us.Node(1).Name
	us.Stop(1)

	status, res := purge(t, client, c.Region("eu").Node(0).Node, `{"keys": ["gone"]}`)
	if status != http.StatusAccepted || res.Complete || len(res.Failed) != 1 || res.Failed[0] != name {
		t.Fatalf("purge with %s down: %d %+v", name, status, res)
	}

	// The peer comes back (a new process: same name, same published peer
	// address) and rejoins; the purge it missed is delivered and it serves
	// a fresh copy.
	back := us.Restart(1)
	us.WaitConverged(cdntest.ConvergeTimeout)
	poll.Until(t, 10*time.Second, "the missed purge is delivered (no purges_pending in /status)", func() bool {
		var st struct {
			Pending map[string]int `json:"purges_pending"`
		}
		resp, err := client.Get("http://" + c.Region("eu").Node(0).Node.AdminAddr() + "/status")
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		return len(st.Pending) == 0
	})
	before := o.RequestsFor(target)
	if k := originServes(t, back, target); k <= int(before) {
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
			c, _ := startCDN(b, tc.regions, 2, nil, true)
			client := newClient(b)
			at := c.Region("eu").Node(0).Node
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				status, res := purge(b, client, at, `{"keys": ["bench-`+strconv.Itoa(i)+`"]}`)
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
	c, o := startCDN(t, []string{"eu", "us"}, 2, nil, true)
	client := newClient(t)
	const siteToken = "site-token-0123456789"
	for _, n := range c.Nodes() {
		cfg := n.Config()
		cfg.Sites[0].PurgeToken = siteToken
		if _, err := n.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	banned, kept, regex := "/bp/a?cc=max-age%3D600", "/keep/b?cc=max-age%3D600", "/rx/c.png?cc=max-age%3D600"
	for _, target := range []string{banned, kept, regex} {
		warm(t, c, target)
	}
	served := func(target string) map[string]int {
		out := map[string]int{}
		for _, n := range c.Nodes() {
			out[n.Name] = originServes(t, n, target)
		}
		return out
	}
	keptBefore := served(kept)
	before := o.RequestsFor(banned)

	req, _ := http.NewRequest("POST", "http://"+c.Region("us").Node(0).Node.AdminAddr()+"/purge",
		strings.NewReader(`{"prefixes": ["https://site.test/bp/"]}`))
	req.Header.Set("Authorization", "Bearer "+siteToken)
	resp, err := client.Do(req)
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
	purgePublic := func(n *cdntest.Node, token string) (int, string) {
		req, _ := http.NewRequest("PURGE", n.URL+"/", nil)
		req.Host = "site.test"
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-Purge-Regex", `^/rx/.*\.png`)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	originBefore := o.Requests()
	if status, body := purgePublic(c.Region("eu").Node(1), "t0ken-wrong"); status != http.StatusMethodNotAllowed {
		t.Fatalf("PURGE with a wrong token: %d %q", status, body)
	}
	if n := o.Requests(); n != originBefore {
		t.Fatalf("a refused PURGE reached the origin (%d requests, was %d)", n, originBefore)
	}
	before = o.RequestsFor(regex)
	if status, body := purgePublic(c.Region("eu").Node(1), siteToken); status != 200 || !strings.Contains(body, `"complete":true`) {
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
