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
	deadline := time.Now().Add(5 * time.Minute) // building rings is slow under -race on a busy machine
	for {
		b, err := os.ReadFile(state)
		if err == nil {
			var st UpState
			if err := json.Unmarshal(b, &st); err != nil {
				t.Fatal(err)
			}
			return st, <-nodes // sent before the state file is written
		}
		select {
		case err := <-done:
			t.Fatalf("up stopped early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("up did not write its state file")
		}
		time.Sleep(50 * time.Millisecond)
	}
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
// `up` in headless Chromium and checks what it shows against /status.
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
	e := st.Regions[0].Edges[0]
	// Some traffic, so the hit ratio is not empty: 1 miss, 3 hits.
	for i := 0; i < 4; i++ {
		out, err := exec.Command("curl", "-s", "-o", "/dev/null", "-H", "Host: "+st.Host,
			"http://"+e.HTTP+"/page-test?cc=max-age%3D300").CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v %s", err, out)
		}
	}
	var api struct {
		HitRatio float64 `json:"hit_ratio"`
		Members  []struct {
			Name string `json:"name"`
		} `json:"members"`
		Regions []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"regions"`
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
		return len(api.Members) == len(st.Regions[0].Edges)
	})
	before := map[string]string{}
	for _, r := range api.Regions {
		before[r.Name] = r.State
	}
	membersBefore := map[string]bool{}
	for _, m := range api.Members {
		membersBefore[m.Name] = true
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
	ratio := regexp.MustCompile(`id="hit-ratio">([0-9.]+)%<`).FindStringSubmatch(page)
	if ratio == nil || ratio[1] != fmt.Sprintf("%.1f", 100*api.HitRatio) {
		t.Fatalf("hit ratio on the page %v, API says %.3f", ratio, api.HitRatio)
	}
	if api.HitRatio <= 0 {
		t.Fatal("no hits counted")
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
