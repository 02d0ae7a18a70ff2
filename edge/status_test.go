package edge_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/internal/poll"
)

// statusOf reads the admin API's /status.
func statusOf(t *testing.T, adm *edge.Admin, into any) {
	t.Helper()
	rec := httptest.NewRecorder()
	adm.ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
	if rec.Code != 200 {
		t.Fatalf("/status: %d %s", rec.Code, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), into); err != nil {
		t.Fatalf("/status: %v\n%s", err, rec.Body)
	}
}

type recentJSON struct {
	Ratio    *float64 `json:"ratio"`
	Requests float64  `json:"requests"`
	Seconds  float64  `json:"seconds"`
}

// The recent hit ratios on /status follow the edge's clock: samples taken
// every StatusSampleInterval (as a node takes them) and one at each read.
func TestStatusRecentHitRatioFollowsTheClock(t *testing.T) {
	a := newAdminEnv(t, taggedOrigin, nil)
	adm := &edge.Admin{Handler: a.h}
	sampleFor := func(d time.Duration) {
		for end := a.clock.Now().Add(d); a.clock.Now().Before(end); {
			a.clock.Advance(edge.StatusSampleInterval)
			adm.Sample()
		}
	}
	answered := 0
	get := func(target, cs string) {
		t.Helper()
		r, _ := a.get(target)
		wantCS(t, r, cs)
		answered++
		// A request is counted once answered, as the client reads it:
		// wait for the count before the clock moves on.
		poll.Until(t, 5*time.Second, "the request counted", func() bool {
			c := a.h.RequestCounts()
			return int(c["hit"]+c["miss"]+c["stale"]) == answered
		})
	}
	for i := range 10 { // before the first sample: since start only
		get("/old"+string(rune('a'+i)), "fwd=uri-miss")
	}
	adm.Sample()
	for i := range 20 {
		get("/m"+string(rune('a'+i)), "fwd=uri-miss")
	}
	sampleFor(5 * time.Minute)
	for range 30 {
		get("/ma", "hit")
	}
	var st struct {
		HitRatio float64               `json:"hit_ratio"`
		Recent   map[string]recentJSON `json:"hit_ratio_recent"`
	}
	statusOf(t, adm, &st)
	if st.HitRatio != 0.5 { // 30 hits of 60
		t.Errorf("since start %v, want 0.5", st.HitRatio)
	}
	want := map[string]recentJSON{"1m": {Requests: 30, Seconds: 60}, "5m": {Requests: 50, Seconds: 300}}
	ratios := map[string]float64{"1m": 1, "5m": 0.6}
	for name, w := range want {
		got := st.Recent[name]
		if got.Ratio == nil || *got.Ratio != ratios[name] || got.Requests != w.Requests || got.Seconds != w.Seconds {
			t.Errorf("%s: %+v (ratio %v), want ratio %v over %v requests in %vs", name, got, got.Ratio, ratios[name], w.Requests, w.Seconds)
		}
	}

	// A quiet minute later, the last minute has no requests; five still do.
	sampleFor(time.Minute + edge.StatusSampleInterval)
	statusOf(t, adm, &st)
	if r := st.Recent["1m"]; r.Ratio != nil || r.Requests != 0 {
		t.Errorf("quiet minute: %+v", r)
	}
	if r := st.Recent["5m"]; r.Ratio == nil || r.Requests != 30 {
		t.Errorf("5m after a quiet minute: %+v", r)
	}
}

// /status names each site's origin pool with every server's health,
// failures (how many, the last one and why) and connections (one kept
// alive; two if the second request came before the first's went idle).
func TestStatusShowsTheOriginPools(t *testing.T) {
	a := newAdminEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/fail") {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		taggedOrigin(w, r)
	}, nil)
	adm := &edge.Admin{Handler: a.h}
	a.get("/ok")
	a.get("/fail")
	var st struct {
		Sites []edge.SiteStatus `json:"sites"`
	}
	statusOf(t, adm, &st)
	if len(st.Sites) != 1 || st.Sites[0].Site != testHost || st.Sites[0].Pool == nil {
		t.Fatalf("sites: %+v", st.Sites)
	}
	p := st.Sites[0].Pool
	if p.Name != testHost || p.CircuitOpen || p.Up != 1 || len(p.Servers) != 1 {
		t.Fatalf("pool: %+v", p)
	}
	s := p.Servers[0]
	if s.URL != a.origin.srv.URL || s.State != "up" || s.Failures != 1 || s.ConsecutiveFailures != 1 ||
		s.LastFailure == nil || !strings.Contains(s.LastError, "status 500") || s.Conns < 1 || s.Conns > 2 {
		t.Fatalf("server: %+v", s)
	}
}
