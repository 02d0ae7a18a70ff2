package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// pendingMetrics are metrics the alerts and the dashboard may use before
// the code exports them. None now: every metric they use is exported, and
// TestMetricsKnown fails if one listed here has landed (take it off then).
var pendingMetrics []string

// scrapeLabels are the labels Prometheus adds (scrape.yaml's relabeling,
// job and instance, and le of histograms).
var scrapeLabels = []string{"region", "geo_region", "pod", "job", "instance", "le"}

// known is what the code exports, read from its sources.
type known struct {
	metrics map[string]bool
	labels  map[string]bool
	// literals are the string literals of the edge package, where label
	// values such as cache_status="hit" come from.
	literals map[string]bool
}

var (
	metricLiteral = regexp.MustCompile(`"(meridian_[a-z0-9_]+)"`)
	labelList     = regexp.MustCompile(`\[\]string\{((?:\s*"[a-z_]+",?)+)\s*\}`)
	constLabel    = regexp.MustCompile(`prometheus\.Labels\{"([a-z_]+)"`)
	stringLit     = regexp.MustCompile(`"([^"\\]*)"`)
)

// knownFromCode reads metric and label names from the non-test Go sources
// of the module (outside deploy/), and the edge package's string literals.
func knownFromCode(t *testing.T) known {
	t.Helper()
	k := known{metrics: map[string]bool{"up": true}, labels: map[string]bool{}, literals: map[string]bool{}}
	for _, l := range scrapeLabels {
		k.labels[l] = true
	}
	collectors := ""
	for _, f := range walk(t, moduleRoot, ".go") {
		rel, _ := filepath.Rel(moduleRoot, f)
		if strings.HasSuffix(f, "_test.go") || strings.HasPrefix(rel, "deploy") || strings.Contains(rel, "testdata") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src := string(data)
		for _, m := range metricLiteral.FindAllStringSubmatch(src, -1) {
			k.metrics[m[1]] = true
		}
		if strings.Contains(src, "prometheus.") {
			for _, m := range labelList.FindAllStringSubmatch(src, -1) {
				for _, l := range stringLit.FindAllStringSubmatch(m[1], -1) {
					k.labels[l[1]] = true
				}
			}
			for _, m := range constLabel.FindAllStringSubmatch(src, -1) {
				k.labels[m[1]] = true
			}
			collectors += src
		}
		if filepath.Dir(rel) == "edge" {
			for _, m := range stringLit.FindAllStringSubmatch(src, -1) {
				k.literals[m[1]] = true
			}
		}
	}
	// The runtime metrics the dashboard shows come with client_golang's
	// collectors, when the node registers them.
	if strings.Contains(collectors, "collectors.NewGoCollector(") {
		k.metrics["go_memstats_heap_inuse_bytes"] = true
	}
	if strings.Contains(collectors, "collectors.NewProcessCollector(") {
		k.metrics["process_resident_memory_bytes"] = true
	}
	if len(k.metrics) < 10 {
		t.Fatalf("found only %d metric names in the code: is the module root right?", len(k.metrics))
	}
	return k
}

func (k known) withPending() known {
	out := known{metrics: map[string]bool{}, labels: k.labels, literals: k.literals}
	for m := range k.metrics {
		out.metrics[m] = true
	}
	for _, m := range pendingMetrics {
		out.metrics[m] = true
	}
	return out
}

var (
	metricRef    = regexp.MustCompile(`\b((?:meridian|go|process)_[a-z0-9_]+|up|[a-z_]+:[a-z0-9_]+:[a-z0-9_]+)\b`)
	matcher      = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	groupingList = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
)

// checkExpr reports the metrics, labels and label values of a PromQL
// expression that the code does not export.
func (k known) checkExpr(expr string, recorded map[string]bool) []string {
	var errs []string
	// Label matchers are checked apart, so their values are not taken
	// for metric names.
	for _, m := range matcher.FindAllStringSubmatch(expr, -1) {
		label, value := m[1], m[3]
		if !k.labels[label] {
			errs = append(errs, fmt.Sprintf("label %q is not exported", label))
		}
		if label == "cache_status" || label == "reason" {
			for _, v := range strings.Split(value, "|") {
				if !k.literals[v] {
					errs = append(errs, fmt.Sprintf("%s=%q: the edge never sets %q", label, value, v))
				}
			}
		}
	}
	stripped := matcher.ReplaceAllString(expr, "")
	for _, m := range groupingList.FindAllStringSubmatch(stripped, -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !k.labels[l] {
				errs = append(errs, fmt.Sprintf("label %q is not exported", l))
			}
		}
	}
	for _, name := range metricRef.FindAllString(stripped, -1) {
		if recorded[name] || k.metrics[name] {
			continue
		}
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if !k.metrics[base] {
			errs = append(errs, fmt.Sprintf("metric %s is not exported", name))
		}
	}
	return errs
}

// TestMetricsKnown makes sure the metric check itself works: it finds the
// edge's and the origin's metrics in the code, and says which pending ones
// have landed.
func TestMetricsKnown(t *testing.T) {
	k := knownFromCode(t)
	for _, m := range []string{"meridian_edge_requests_total", "meridian_origin_server_up"} {
		if !k.metrics[m] {
			t.Errorf("%s not found in the code", m)
		}
	}
	for _, m := range pendingMetrics {
		if k.metrics[m] {
			t.Errorf("pending metric %s is now exported: take it off pendingMetrics", m)
		}
	}
	for expr, want := range map[string]string{
		`rate(meridian_edge_requests_total{cache_status="hit"}[5m])`:           "",
		`rate(meridian_edge_request_total[5m])`:                                "metric meridian_edge_request_total",
		`sum by (status) (meridian_edge_requests_total)`:                       `label "status"`,
		`meridian_edge_requests_total{cache_status="hot"}`:                     `never sets "hot"`,
		`histogram_quantile(0.9, rate(meridian_edge_fill_seconds_bucket[1m]))`: "",
	} {
		errs := k.checkExpr(expr, nil)
		if want == "" && len(errs) > 0 || want != "" && !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, want) }) {
			t.Errorf("checkExpr(%s) = %q, want %q", expr, errs, want)
		}
	}
}

// ruleFile is a Prometheus rule file.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

var promDuration = regexp.MustCompile(`^(\d+(ms|s|m|h|d|w|y))+$`)

// TestAlertRules checks prometheus/alerts.yaml: its shape, the alerts an
// operator needs, and that every expression uses exported metrics.
func TestAlertRules(t *testing.T) {
	data, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatal(err)
	}
	k := knownFromCode(t).withPending()
	recorded := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}
	alerts := map[string]bool{}
	groups := map[string]bool{}
	for _, g := range rf.Groups {
		if g.Name == "" || groups[g.Name] {
			t.Errorf("group %q: names must be set and unique", g.Name)
		}
		groups[g.Name] = true
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			if (r.Alert == "") == (r.Record == "") {
				t.Errorf("rule %q: set exactly one of alert and record", name)
			}
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("rule %s: empty expr", name)
			}
			if r.For != "" && !promDuration.MatchString(r.For) {
				t.Errorf("rule %s: for %q is not a duration", name, r.For)
			}
			for _, e := range k.checkExpr(r.Expr, recorded) {
				t.Errorf("rule %s: %s", name, e)
			}
			if r.Record != "" {
				continue
			}
			if alerts[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			alerts[r.Alert] = true
			if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				t.Errorf("alert %s: severity %q, want critical, warning or info", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s: needs a summary and a description", r.Alert)
			}
		}
	}
	for _, want := range []string{
		"MeridianRegionDown", "MeridianOriginDown", "MeridianHitRatioDrop",
		"MeridianStaleServingSpike", "MeridianPeerFlapping", "MeridianPurgeNotAcknowledged",
	} {
		if !alerts[want] {
			t.Errorf("no alert %s", want)
		}
	}
}

// TestPromtool checks the rules and runs their unit tests
// (prometheus/alerts_test.yaml) with promtool, when it is installed.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian: apt-get install prometheus); the rules' unit tests need it")
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, promtool, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestScrapeConfig checks that the scrape jobs find the pods the overlays
// run, on their metrics ports, and give them the labels the alerts use.
func TestScrapeConfig(t *testing.T) {
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			Authorization struct {
				Type            string `yaml:"type"`
				CredentialsFile string `yaml:"credentials_file"`
			} `yaml:"authorization"`
			RelabelConfigs []struct {
				SourceLabels []string `yaml:"source_labels"`
				Regex        string   `yaml:"regex"`
				Action       string   `yaml:"action"`
				TargetLabel  string   `yaml:"target_label"`
			} `yaml:"relabel_configs"`
		} `yaml:"scrape_configs"`
	}
	data, err := os.ReadFile("prometheus/scrape.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	m := loadManifests(t, firstOverlay(t))
	sanitize := regexp.MustCompile(`[^a-zA-Z0-9_]`)
	jobs := map[string]bool{}
	for _, job := range cfg.ScrapeConfigs {
		jobs[job.JobName] = true
		var pods []obj
		for _, w := range m.workloads() {
			pods = append(pods, w)
		}
		for _, rc := range job.RelabelConfigs {
			if len(rc.SourceLabels) != 1 {
				continue
			}
			src := rc.SourceLabels[0]
			switch {
			case src == "__meta_kubernetes_pod_container_port_name" && rc.Action == "keep":
				pods = slices.DeleteFunc(pods, func(w obj) bool { _, ok := findPort(w, rc.Regex, "TCP"); return !ok })
			case strings.HasPrefix(src, "__meta_kubernetes_pod_label_"):
				labelOf := func(w obj) (string, bool) {
					for k, v := range stringMap(get(w, "spec", "template", "metadata", "labels")) {
						if "__meta_kubernetes_pod_label_"+sanitize.ReplaceAllString(k, "_") == src {
							return v, true
						}
					}
					return "", false
				}
				if rc.Action == "keep" {
					pods = slices.DeleteFunc(pods, func(w obj) bool { v, _ := labelOf(w); return v != rc.Regex })
				} else {
					for _, w := range pods {
						if _, ok := labelOf(w); !ok {
							t.Errorf("job %s: %s labels %s from %s, which its pods do not have", job.JobName, describe(w), rc.TargetLabel, src)
						}
					}
				}
			}
		}
		if len(pods) != 1 {
			t.Errorf("job %s scrapes %d workloads, want 1", job.JobName, len(pods))
		}
		// The edges' /metrics wants the read token when their config
		// names one (admin.read_token_file).
		for _, w := range pods {
			if getStr(w, "kind") != "StatefulSet" {
				continue
			}
			r := loadRegion(t, "first", firstOverlay(t))
			if getStr(parseYAML(t, r.render(t, 0, "")), "admin", "read_token_file") != "" &&
				(job.Authorization.Type != "Bearer" || job.Authorization.CredentialsFile == "") {
				t.Errorf("job %s: the edges want their read token on /metrics, but the job sends no bearer credentials_file", job.JobName)
			}
		}
	}
	var rf ruleFile
	alerts, _ := os.ReadFile("prometheus/alerts.yaml")
	if err := yaml.Unmarshal(alerts, &rf); err != nil {
		t.Fatal(err)
	}
	jobRef := regexp.MustCompile(`job="([^"]+)"`)
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			for _, j := range jobRef.FindAllStringSubmatch(r.Expr, -1) {
				if !jobs[j[1]] {
					t.Errorf("rule %s: job %q is not a scrape job", r.Alert+r.Record, j[1])
				}
			}
		}
	}
}

// TestDashboard checks grafana/meridian.json: it parses, its panels are
// well formed and do not overlap, and every query uses exported metrics
// and defined variables.
func TestDashboard(t *testing.T) {
	data, err := os.ReadFile("grafana/meridian.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash obj
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	if getStr(dash, "uid") == "" || getStr(dash, "title") == "" {
		t.Error("dashboard needs a uid and a title")
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	var queries []string
	for _, v := range mapsOf(getList(dash, "templating", "list")) {
		vars[getStr(v, "name")] = true
		if q := getStr(v, "query", "query"); q != "" {
			queries = append(queries, q)
		}
	}
	var panels []obj
	var collect func(l []any)
	collect = func(l []any) {
		for _, p := range mapsOf(l) {
			panels = append(panels, p)
			collect(getList(p, "panels"))
		}
	}
	collect(getList(dash, "panels"))
	if len(panels) < 10 {
		t.Errorf("only %d panels", len(panels))
	}
	ids := map[int]bool{}
	type rect struct{ x, y, w, h int }
	var rects []rect
	var titles []string
	for _, p := range panels {
		id, _ := getIntJSON(p, "id")
		title := getStr(p, "title")
		if ids[id] {
			t.Errorf("panel %q: id %d used twice", title, id)
		}
		ids[id] = true
		x, _ := getIntJSON(p, "gridPos", "x")
		y, _ := getIntJSON(p, "gridPos", "y")
		w, _ := getIntJSON(p, "gridPos", "w")
		h, _ := getIntJSON(p, "gridPos", "h")
		if w <= 0 || h <= 0 || x < 0 || x+w > 24 {
			t.Errorf("panel %q: gridPos %v outside the 24-column grid", title, get(p, "gridPos"))
		}
		for i, r := range rects {
			if x < r.x+r.w && r.x < x+w && y < r.y+r.h && r.y < y+h {
				t.Errorf("panel %q overlaps panel %q", title, titles[i])
			}
		}
		rects = append(rects, rect{x, y, w, h})
		titles = append(titles, title)
		if getStr(p, "type") == "row" {
			continue
		}
		if getStr(p, "datasource", "uid") != "${datasource}" {
			t.Errorf("panel %q: datasource must be the ${datasource} variable", title)
		}
		targets := mapsOf(getList(p, "targets"))
		if len(targets) == 0 {
			t.Errorf("panel %q: no queries", title)
		}
		refs := map[string]bool{}
		for _, tg := range targets {
			if ref := getStr(tg, "refId"); ref == "" || refs[ref] {
				t.Errorf("panel %q: refIds must be set and unique", title)
			} else {
				refs[ref] = true
			}
			queries = append(queries, getStr(tg, "expr"))
		}
	}
	k := knownFromCode(t).withPending()
	varRef := regexp.MustCompile(`\$\{?([a-zA-Z_]+)\}?`)
	for _, q := range queries {
		for _, e := range k.checkExpr(q, nil) {
			t.Errorf("query %s: %s", q, e)
		}
		for _, v := range varRef.FindAllStringSubmatch(q, -1) {
			if !vars[v[1]] {
				t.Errorf("query %s: no variable $%s", q, v[1])
			}
		}
	}
}

// getIntJSON reads a JSON number (float64) as an int.
func getIntJSON(v any, path ...string) (int, bool) {
	f, ok := get(v, path...).(float64)
	return int(f), ok
}
