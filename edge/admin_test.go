package edge_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/meridiancdn/meridian/edge"
)

// adminEnv is an env whose edge has metrics and an admin API.
type adminEnv struct {
	*env
	admin *httptest.Server
	reg   *prometheus.Registry
	h     *edge.Handler
	base  string
}

func newAdminEnv(t *testing.T, origin http.HandlerFunc, propagate func(context.Context, edge.Purge) ([]string, []string)) *adminEnv {
	t.Helper()
	e := newEnv(t, origin)
	// A second handler on the same origin, with a registry, is the one the
	// admin API and the test use.
	reg := prometheus.NewRegistry()
	h, err := edge.New(e.cfg, edge.Options{Now: e.clock.Now, Registerer: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	pub := httptest.NewServer(h)
	adm := httptest.NewServer(&edge.Admin{Handler: h, Token: "s3cret", Gatherer: reg, Propagate: propagate})
	t.Cleanup(func() { pub.Close(); adm.Close(); h.Close() })
	a := &adminEnv{env: e, admin: adm, reg: reg, h: h, base: pub.URL}
	a.env = &env{t: t, clock: e.clock, origin: e.origin, edge: h, cfg: e.cfg, base: pub.URL, client: e.client}
	return a
}

func (a *adminEnv) purge(token, body string) (*http.Response, edge.PurgeResult) {
	a.t.Helper()
	req, _ := http.NewRequest("POST", a.admin.URL+"/purge", strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	var res edge.PurgeResult
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &res)
	return resp, res
}

func taggedOrigin(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "max-age=600, stale-if-error=3600")
	w.Header().Set("Surrogate-Key", "all "+strings.TrimPrefix(r.URL.Path, "/"))
	io.WriteString(w, "body of "+r.URL.Path)
}

func TestPurgeByURLAndSurrogateKey(t *testing.T) {
	a := newAdminEnv(t, taggedOrigin, nil)
	for _, p := range []string{"/p1", "/p2", "/p3"} {
		a.get(p)
		r, _ := a.get(p)
		wantCS(t, r, "hit")
		if r.Header.Get("Surrogate-Key") != "" {
			t.Fatal("Surrogate-Key leaked to the client")
		}
	}
	resp, res := a.purge("s3cret", `{"urls": ["http://site.test/p1"]}`)
	wantStatus(t, resp, 200)
	if res.Purged != 1 || !res.Complete {
		t.Fatalf("purge result %+v", res)
	}
	r, _ := a.get("/p1")
	wantCS(t, r, "fwd=uri-miss")
	r, _ = a.get("/p2")
	wantCS(t, r, "hit")
	_, res = a.purge("s3cret", `{"keys": ["p2"]}`)
	if res.Purged != 1 {
		t.Fatalf("purge by key: %+v", res)
	}
	r, _ = a.get("/p2")
	wantCS(t, r, "fwd=uri-miss")
	r, _ = a.get("/p3")
	wantCS(t, r, "hit")
	_, res = a.purge("s3cret", `{"keys": ["all"]}`)
	if res.Purged != 3 {
		t.Fatalf("purge by shared key: %+v", res)
	}
	for _, p := range []string{"/p1", "/p2", "/p3"} {
		r, _ := a.get(p)
		wantCS(t, r, "!hit")
	}
}

func TestSoftPurgeStillServesStaleOnError(t *testing.T) {
	a := newAdminEnv(t, taggedOrigin, nil)
	a.get("/soft")
	// The client may have the whole body a moment before the fill stores
	// it (a purge in that moment is covered by TestPurgeDuringFillIsNotUndone).
	waitFor(t, func() bool { n, _, _ := a.h.StoreStats(); return n == 1 })
	_, res := a.purge("s3cret", `{"keys": ["soft"], "soft": true}`)
	if res.Purged != 1 {
		t.Fatalf("soft purge: %+v", res)
	}
	a.origin.setHandler(respond(503, "down"))
	r, b := a.get("/soft")
	wantStatus(t, r, 200)
	wantCS(t, r, "fwd=stale", "detail=stale-if-error")
	if b != "body of /soft" {
		t.Fatalf("body %q", b)
	}
	// A hard purge leaves nothing to fall back on.
	a.purge("s3cret", `{"urls": ["https://site.test/soft"]}`)
	r, _ = a.get("/soft")
	wantStatus(t, r, 503)
}

func TestPurgeRefusedWithoutToken(t *testing.T) {
	a := newAdminEnv(t, taggedOrigin, nil)
	a.get("/keep")
	for _, tok := range []string{"", "wrong", "s3cret-but-longer", "S3CRET"} {
		resp, _ := a.purge(tok, `{"urls": ["http://site.test/keep"]}`)
		wantStatus(t, resp, http.StatusUnauthorized)
	}
	r, _ := a.get("/keep")
	wantCS(t, r, "hit")
	for _, bad := range []string{`{"urls": ["not a url"]}`, `{}`, `{"bogus": 1}`, `[`} {
		resp, _ := a.purge("s3cret", bad)
		wantStatus(t, resp, http.StatusBadRequest)
	}
	r, _ = a.get("/keep")
	wantCS(t, r, "hit")
}

func TestPurgeReportsPeersThatDidNotAck(t *testing.T) {
	a := newAdminEnv(t, taggedOrigin, func(_ context.Context, p edge.Purge) ([]string, []string) {
		return []string{"edge-b"}, []string{"edge-c"}
	})
	resp, res := a.purge("s3cret", `{"keys": ["x"]}`)
	wantStatus(t, resp, http.StatusAccepted)
	if res.Complete || len(res.Failed) != 1 || res.Failed[0] != "edge-c" || res.Acked[0] != "edge-b" {
		t.Fatalf("result %+v", res)
	}
}

func TestMetricsFollowAScriptedSequence(t *testing.T) {
	a := newAdminEnv(t, taggedOrigin, nil)
	a.get("/m")                                    // miss
	a.get("/m")                                    // hit
	a.get("/m")                                    // hit
	a.do("POST", "/m", nil, strings.NewReader("")) // pass (and invalidates)
	a.get("/m")                                    // miss
	a.clock.Advance(700 * time.Second)
	a.origin.setHandler(respond(503, "down"))
	a.get("/m") // stale (stale-if-error)
	a.purge("s3cret", `{"urls": ["http://site.test/m"]}`)

	resp, err := http.Get(a.admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	req := map[string]float64{}
	for _, m := range fams["meridian_edge_requests_total"].GetMetric() {
		req[label(m, "cache_status")] += m.GetCounter().GetValue()
	}
	want := map[string]float64{"hit": 2, "miss": 2, "pass": 1, "stale": 1, "error": 0}
	for k, v := range want {
		if req[k] != v {
			t.Fatalf("requests{cache_status=%s} = %v, want %v (all: %v)", k, req[k], v, req)
		}
	}
	check := func(name string, want float64) {
		t.Helper()
		f := fams[name]
		if f == nil {
			t.Fatalf("metric %s missing", name)
		}
		var got float64
		for _, m := range f.GetMetric() {
			got += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		if got != want {
			t.Fatalf("%s = %v, want %v", name, got, want)
		}
	}
	check("meridian_edge_fills_total", 3)
	check("meridian_edge_fill_errors_total", 1)
	check("meridian_edge_stale_served_total", 1)
	check("meridian_edge_purged_total", 1)
	check("meridian_edge_store_entries", 0)
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// A purge that arrives while a fill is on its way to the origin is not
// undone by the fill storing the old object afterwards.
func TestPurgeDuringFillIsNotUndone(t *testing.T) {
	var a *adminEnv
	purgeNow := false
	a = newAdminEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if purgeNow {
			// The purge comes in while this fill is in flight.
			a.h.Purge(edge.Purge{Keys: []string{"racy"}})
		}
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Surrogate-Key", "racy")
		io.WriteString(w, "old")
	}, nil)
	purgeNow = true
	r, _ := a.get("/racy")
	wantStatus(t, r, 200)
	purgeNow = false
	r, _ = a.get("/racy")
	wantCS(t, r, "!hit")
	if n := a.origin.count("/racy"); n != 2 {
		t.Fatalf("origin count %d, want 2: the purged object was stored", n)
	}
}
