package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/poll"
)

// startUp runs `meridian up` in-process and waits for its state file.
func startUp(t *testing.T) UpState {
	t.Helper()
	st, _ := startUpNodes(t)
	return st
}

// startUpNodes is startUp that also returns up's edges by name ("eu-1"),
// so that a test can kill one.
func startUpNodes(t *testing.T, extra ...string) (UpState, map[string]*node.Node) {
	t.Helper()
	state := filepath.Join(t.TempDir(), "state.json")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	nodes := make(chan map[string]*node.Node, 1)
	go func() {
		done <- runUpWith(ctx, append([]string{"--state", state}, extra...), func(m map[string]*node.Node) { nodes <- m })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("up: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("up did not stop")
		}
	})
	var b []byte
	// Building rings is slow under -race on a busy machine.
	poll.Until(t, 5*time.Minute, "up writes its state file", func() bool {
		select {
		case err := <-done:
			t.Fatalf("up stopped early: %v", err)
		default:
		}
		var err error
		b, err = os.ReadFile(state)
		return err == nil
	})
	var st UpState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st, <-nodes // sent before the state file is written
}

// readmeCommands returns the commands of the README's try block, each with
// the text its output must contain.
func readmeCommands(t *testing.T) [][2]string {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, "<!-- try:begin -->"), strings.Index(s, "<!-- try:end -->")
	if i < 0 || j < i {
		t.Fatal("README has no try block")
	}
	var out [][2]string
	for _, line := range strings.Split(s[i:j], "\n") {
		switch {
		case strings.HasPrefix(line, "#=> "):
			if len(out) == 0 {
				t.Fatal("expectation before any command")
			}
			out[len(out)-1][1] = strings.TrimPrefix(line, "#=> ")
		case strings.HasPrefix(line, "curl ") || strings.HasPrefix(line, "dig "):
			out = append(out, [2]string{line, ""})
		}
	}
	if len(out) < 4 {
		t.Fatalf("only %d commands in the README's try block", len(out))
	}
	return out
}

// TestReadmeCommandsAgainstUp runs `up` and the README's commands, as a
// newcomer would paste them.
func TestReadmeCommandsAgainstUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole CDN")
	}
	for _, tool := range []string{"curl", "dig"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed; .ci/run installs it", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	startUp(t)
	for _, c := range readmeCommands(t) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, "bash", "-c", c[0]).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%s\n%v\n%s", c[0], err, out)
		}
		if !strings.Contains(string(out), c[1]) {
			t.Fatalf("%s\nprinted:\n%s\nthe README says it shows %q", c[0], out, c[1])
		}
	}
}

// TestStatusPageInChromium loads an edge's status page from a running
// `up` in headless Chromium and checks what it shows against /status:
// every panel (hit ratios since start and recent, store sizes for people,
// regions, origin pool, shield, purges, ring, config) rendered with values.
// The edge is in the second region, whose fills go to the first as the
// origin shield. `up` injects nothing into the status: what it shows, any
// `meridian edge` shows.
func TestStatusPageInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed; .ci/run installs it")
		}
		t.Skip("chromium not installed")
	}
	st := startUp(t)
	e := st.Regions[1].Edges[0]
	// Some traffic, so the hit ratios are not empty: 1 miss, 3 hits.
	for i := 0; i < 4; i++ {
		out, err := exec.Command("curl", "-s", "-o", "/dev/null", "-H", "Host: "+st.Host,
			"http://"+e.HTTP+"/page-test?cc=max-age%3D300").CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v %s", err, out)
		}
	}
	// A prefix purge: a ban, sent to every edge (a loaded machine may
	// keep some from acknowledging at once: they are retried).
	out, err := exec.Command("curl", "-s", "-X", "POST", "-H", "Authorization: Bearer "+st.PurgeToken,
		"http://"+e.Admin+"/purge", "-d", `{"prefixes":["http://`+st.Host+`/nothing-here/"]}`).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"bans":1`) {
		t.Fatalf("purge: %v %s", err, out)
	}
	type recent struct {
		Ratio *float64 `json:"ratio"`
	}
	var api struct {
		HitRatio float64           `json:"hit_ratio"`
		Recent   map[string]recent `json:"hit_ratio_recent"`
		Store    struct {
			Bytes    int64 `json:"bytes"`
			MaxBytes int64 `json:"max_bytes"`
		} `json:"store"`
		Members []struct {
			Name string `json:"name"`
		} `json:"members"`
		Top     []any `json:"top"`
		Regions []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"regions"`
		Sites []struct {
			Site string `json:"site"`
			Pool struct {
				Servers []struct {
					URL   string `json:"url"`
					State string `json:"state"`
				} `json:"servers"`
			} `json:"pool"`
		} `json:"sites"`
		Shields []struct {
			Site    string `json:"site"`
			Regions []struct {
				Name  string `json:"name"`
				State string `json:"state"`
			} `json:"regions"`
		} `json:"shields"`
		PurgesPending map[string]int `json:"purges_pending"`
		Bans          struct {
			Active int `json:"active"`
		} `json:"bans"`
		Config struct {
			Generation int    `json:"generation"`
			Hash       string `json:"hash"`
		} `json:"config"`
	}
	fetchAPI := func() {
		out, err := exec.Command("curl", "-s", "http://"+e.Admin+"/status").Output()
		api.Members, api.Regions = nil, nil
		if err != nil || json.Unmarshal(out, &api) != nil {
			t.Fatalf("status API: %v %s", err, out)
		}
	}
	// Ready: the edge lists its whole region (up's state file may come
	// before the membership has settled on a loaded machine).
	poll.Until(t, 2*time.Minute, "the status API lists every edge of the region", func() bool {
		fetchAPI()
		return len(api.Members) == len(st.Regions[1].Edges)
	})
	before := map[string]string{}
	for _, r := range api.Regions {
		before[r.Name] = r.State
	}
	membersBefore := map[string]bool{}
	for _, m := range api.Members {
		membersBefore[m.Name] = true
	}
	bansBefore, pendingBefore := api.Bans.Active, sum(api.PurgesPending)
	if bansBefore != 1 {
		t.Logf("the ban was retired already: %d active", bansBefore)
	}
	shieldBefore := map[string]string{}
	for _, sh := range api.Shields {
		for _, r := range sh.Regions {
			shieldBefore[sh.Site+"/"+r.Name] = r.State
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dom, err := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=5000", "--dump-dom",
		"http://"+e.Admin+"/").Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	page := string(dom)
	if !strings.Contains(page, `data-loaded="true"`) {
		t.Fatalf("the page never loaded its data:\n%s", page)
	}
	shows := func(what, pattern string) []string {
		t.Helper()
		m := regexp.MustCompile(pattern).FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("the page does not show %s (%s):\n%s", what, pattern, page)
		}
		return m
	}
	ratio := shows("the hit ratio", `id="hit-ratio">([0-9.]+)%<`)
	if ratio[1] != fmt.Sprintf("%.1f", 100*api.HitRatio) {
		t.Fatalf("hit ratio on the page %v, API says %.3f", ratio[1], api.HitRatio)
	}
	if api.HitRatio <= 0 {
		t.Fatal("no hits counted")
	}
	// The recent ratios: the same traffic, all of it within the minute.
	for _, w := range []string{"1m", "5m"} {
		r := api.Recent[w].Ratio
		if r == nil {
			t.Fatalf("API has no %s hit ratio: %+v", w, api.Recent)
		}
		got := shows("the "+w+" hit ratio", `id="hit-`+w+`">([0-9.]+)% \(\d+ req over \d+s\)<`)
		if got[1] != fmt.Sprintf("%.1f", 100**r) {
			t.Fatalf("%s hit ratio on the page %s, API says %.3f", w, got[1], *r)
		}
	}
	// Sizes for people: the budget and what the store holds.
	store := shows("the store", `id="store">\d+ objects, ([0-9.]+ (?:B|KiB|MiB|GiB)) of ([0-9.]+ (?:B|KiB|MiB|GiB)), \d+ evicted<`)
	if store[2] != humanBytes(api.Store.MaxBytes) {
		t.Fatalf("store budget shown as %q, want %q (%d bytes)", store[2], humanBytes(api.Store.MaxBytes), api.Store.MaxBytes)
	}
	if len(api.Top) > 0 {
		shows("an object's size", `<td class="num" title="\d+ bytes">[0-9.]+ (?:B|KiB|MiB)</td>`)
	}
	if !strings.Contains(page, `id="disk-panel" hidden`) {
		t.Fatal("the disk panel shows without a disk tier")
	}
	// Region health and membership may change while the page loads (a
	// loaded machine can miss probes): the page must show each region in
	// the state the API gave just before or just after, and every member
	// the API listed both before and after.
	fetchAPI()
	for _, m := range api.Members {
		if membersBefore[m.Name] && !strings.Contains(page, `data-member="`+m.Name+`"`) {
			t.Fatalf("member %s missing from the page", m.Name)
		}
	}
	// The origin pool: the demo origin, up.
	if len(api.Sites) != 1 || len(api.Sites[0].Pool.Servers) != 1 {
		t.Fatalf("API sites: %+v", api.Sites)
	}
	sv := api.Sites[0].Pool.Servers[0]
	if sv.URL != "http://"+st.Origin || sv.State != "up" {
		t.Fatalf("API origin server: %+v", sv)
	}
	shows("the origin server", `data-site="`+regexp.QuoteMeta(api.Sites[0].Site)+`" data-server="`+regexp.QuoteMeta(sv.URL)+
		`"><td[^>]*>[^<]*</td><td>[^<]*</td><td class="up">up</td><td class="num">0 in a row, 0 in all</td>`)
	// The shield: region eu, in the state the API gave before or after.
	fetchAPI()
	if len(api.Shields) != 1 || len(api.Shields[0].Regions) != 1 || api.Shields[0].Regions[0].Name != st.Shield {
		t.Fatalf("API shields: %+v", api.Shields)
	}
	sh := api.Shields[0]
	shown := shows("the shield", `data-site="`+regexp.QuoteMeta(sh.Site)+`" data-shield="`+st.Shield+`"><td>[^<]*</td><td>([a-z]+)</td><td>`+st.Shield+`</td><td class="[a-z]+">([a-z]+)</td>`)
	if s := shown[2]; s != sh.Regions[0].State && s != shieldBefore[sh.Site+"/"+st.Shield] {
		t.Fatalf("shield %s shown %s, API says %s (before %s)", st.Shield, s, sh.Regions[0].State, shieldBefore[sh.Site+"/"+st.Shield])
	}
	// Purges: the deliveries waiting for an acknowledgement (none once
	// every edge has it), and the ban while the sweeper has not retired it
	// (it may have, within seconds): as the API said before or after.
	pending := shows("the pending purges", `id="purges-pending-total">(\d+) purge deliveries awaiting acknowledgement<`)[1]
	if pending != fmt.Sprint(pendingBefore) && pending != fmt.Sprint(sum(api.PurgesPending)) {
		t.Fatalf("page shows %s pending purges, API %d before and %v after", pending, pendingBefore, api.PurgesPending)
	}
	if bans := shows("the bans", `id="bans">(\d+) active bans`)[1]; bans != fmt.Sprint(bansBefore) && bans != fmt.Sprint(api.Bans.Active) {
		t.Fatalf("page shows %s active bans, API %d before and %d after", bans, bansBefore, api.Bans.Active)
	}
	// The config: generation 1 and its hash.
	if api.Config.Hash == "" {
		t.Fatal("API has no config hash")
	}
	shows("the config generation", `id="config-generation">1<`)
	shows("the config hash", `id="config-hash">hash `+api.Config.Hash+`<`)
	// Region health may change while the page loads (a loaded machine
	// can miss probes): the page must show each region in the state the
	// API gave just before or just after.
	for _, r := range api.Regions {
		shown := regexp.MustCompile(`data-region="` + r.Name + `"><td>` + r.Name + `</td><td class="[a-z-]+">([a-z-]+)<`).FindStringSubmatch(page)
		if shown == nil || (shown[1] != r.State && shown[1] != before[r.Name]) {
			i := strings.Index(page, `id="regions"`)
			t.Fatalf("region %s (API: %s, before %s) not shown as such:\n%s", r.Name, r.State, before[r.Name], page[i:min(len(page), i+1500)])
		}
	}
	if len(api.Regions) != len(st.Regions) {
		t.Fatalf("API lists %d regions, up runs %d", len(api.Regions), len(st.Regions))
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// humanBytes is the status page's size(): powers of 1024, one decimal.
func humanBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}
