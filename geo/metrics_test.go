package geo

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestMetricsShowRegionHealth(t *testing.T) {
	s := newTestService(t, testConfig(), Options{})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	text := string(body)
	for _, want := range []string{
		`meridian_geo_region_up{region="eu"}`,
		`meridian_geo_region_up{region="asia"}`,
		`meridian_geo_edge_up{edge="127.0.1.1:8080",region="eu"}`,
		`meridian_geo_fail_open`,
	} {
		if !strings.Contains(text, want) {
			t.Fatalf("/metrics lacks %s:\n%s", want, text)
		}
	}
	// The gauge follows Status.
	for _, r := range s.Status().Regions {
		up := r.State == StateUp || r.State == StateRamping
		line := `meridian_geo_region_up{region="` + r.Name + `"} 0`
		if up {
			line = `meridian_geo_region_up{region="` + r.Name + `"} 1`
		}
		if !strings.Contains(text, line) {
			t.Fatalf("%s is %v but /metrics says otherwise:\n%s", r.Name, r.State, text)
		}
	}
}
