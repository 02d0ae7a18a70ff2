package edge_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/meridiancdn/meridian/edge"
)

// getHost sends GET target to the edge with the given Host.
func (e *env) getHost(host, target string) *http.Response {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.base+target, nil)
	req.Host = host
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// Issue 20: request metrics carry a site label (the site's first host),
// so that a hit ratio per site can be computed, on every front; hosts no
// site serves share one label, whatever clients send, so the label's
// values stay bounded by the config.
func TestRequestMetricsBySite(t *testing.T) {
	e := newEnv(t, respond(200, "0123456789", "Cache-Control", "max-age=60"), func(c *edge.Config) {
		second := c.Sites[0]
		second.Hosts = []string{"B.example", "b-alias.example"}
		second.Pool.Name = ""
		c.Sites = append(c.Sites, second)
	})
	e.getHost(testHost, "/a")             // miss
	e.getHost(testHost, "/a")             // hit
	e.getHost(testHost, "/a")             // hit
	e.getHost("b.example", "/a")          // miss
	e.getHost("b.example", "/a")          // hit
	e.getHost("B-ALIAS.example:80", "/a") // miss (keyed by host), on the site's first host's label
	for i := 0; i < 50; i++ {
		if r := e.getHost(fmt.Sprintf("attacker-%d.example", i), "/x"); r.StatusCode != http.StatusMisdirectedRequest {
			t.Fatalf("unknown host answered %d", r.StatusCode)
		}
	}
	waitFor(t, func() bool {
		return e.series("meridian_edge_requests_total")["meridian_edge_requests_total cache_status=miss protocol=http/1.1 site=b.example"] == 2
	})
	got := e.series("meridian_edge_requests_total", "meridian_edge_response_body_bytes_total")
	want := map[string]float64{
		"meridian_edge_requests_total cache_status=hit protocol=http/1.1 site=" + testHost:  2,
		"meridian_edge_requests_total cache_status=miss protocol=http/1.1 site=" + testHost: 1,
		"meridian_edge_requests_total cache_status=hit protocol=http/1.1 site=b.example":    1,
		"meridian_edge_requests_total cache_status=miss protocol=http/1.1 site=b.example":   2,
		"meridian_edge_response_body_bytes_total site=" + testHost:                          30,
		"meridian_edge_response_body_bytes_total site=b.example":                            30,
		"meridian_edge_requests_total cache_status=error protocol=http/1.1 site=_other":     0,
		"meridian_edge_requests_total cache_status=pass protocol=http/1.1 site=_other":      0,
		"meridian_edge_response_body_bytes_total site=_other":                               0,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	sites := map[string]bool{}
	for k := range got {
		_, site, _ := strings.Cut(k, "site=")
		sites[site] = true
	}
	if len(sites) != 3 || !sites[testHost] || !sites["b.example"] || !sites["_other"] {
		t.Fatalf("site label values %v, want the two sites and _other", sites)
	}
	// The status page's totals sum every site.
	if n := e.edge.RequestCounts()["hit"]; n != 3 {
		t.Fatalf("RequestCounts hit %v, want 3", n)
	}

	// A site added by a reload gets its label.
	cfg := e.cfg
	third := cfg.Sites[0]
	third.Hosts = []string{"c.example"}
	third.Pool.Name = ""
	cfg.Sites = append(cfg.Sites, third)
	if err := e.edge.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	e.getHost("c.example", "/a")
	// A miss is booked as its handler returns, which may be just after
	// the client has the answer.
	waitFor(t, func() bool {
		return e.series("meridian_edge_requests_total")["meridian_edge_requests_total cache_status=miss protocol=http/1.1 site=c.example"] == 1
	})
}

// Issue 20: an origin pool's warnings carry its name once ("pool" was
// written twice: by the edge and by the pool).
func TestPoolWarningNamesPoolOnce(t *testing.T) {
	var logs syncBuffer
	e := newEnvWith(t, respond(200, "x"), func(o *edge.Options) {
		o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	}, func(c *edge.Config) {
		c.Sites[0].Pool.TLS.InsecureSkipVerify = true // warns as the pool starts
	})
	_ = e
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "insecure_skip_verify") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("no pool warning in %q", logs.String())
	}
	if n := strings.Count(line, `"pool":`); n != 1 {
		t.Fatalf("pool warning names the pool %d times: %s", n, line)
	}
	var m map[string]any
	if err := json.NewDecoder(bytes.NewReader([]byte(line))).Decode(&m); err != nil || m["pool"] != testHost {
		t.Fatalf("pool warning %s: %v", line, err)
	}
}
