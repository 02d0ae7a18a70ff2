package policy

import (
	"net/http"
	"testing"
	"time"
)

// Web cache deception (issue 12): a response to a request with Cookie or
// Authorization is stored only with explicit freshness; heuristic
// freshness, DefaultTTL and StoreUnvalidated are guesses that never apply
// to it.
func TestEvaluateCredentialsNeedExplicitFreshness(t *testing.T) {
	date := httpDate(t0)
	lm := httpDate(t0.Add(-100 * 24 * time.Hour))
	cookie := hdr("Cookie", "session=alice")
	auth := hdr("Authorization", "Basic YWxpY2U6eA==")
	tests := []struct {
		name   string
		req    http.Header
		resp   http.Header
		opts   Options
		store  bool
		reason string
	}{
		{"heuristic, no credentials", nil, hdr("Date", date, "Last-Modified", lm), Options{}, true, ""},
		{"heuristic, cookie", cookie, hdr("Date", date, "Last-Modified", lm), Options{}, false, "credentials"},
		{"heuristic public, cookie", cookie, hdr("Date", date, "Last-Modified", lm, "Cache-Control", "public"), Options{}, false, "credentials"},
		{"heuristic public, authorization", auth, hdr("Date", date, "Last-Modified", lm, "Cache-Control", "public"), Options{}, false, "credentials"},
		{"default_ttl, cookie", cookie, hdr("Date", date, "Etag", `"v1"`), Options{DefaultTTL: time.Hour}, false, "credentials"},
		{"store_unvalidated, cookie", cookie, hdr("Date", date), Options{StoreUnvalidated: true, DefaultTTL: time.Hour}, false, "credentials"},
		{"store_unvalidated, no credentials", nil, hdr("Date", date), Options{StoreUnvalidated: true, DefaultTTL: time.Hour}, true, ""},
		{"max-age, cookie", cookie, hdr("Date", date, "Last-Modified", lm, "Cache-Control", "max-age=60"), Options{}, true, ""},
		{"s-maxage, authorization", auth, hdr("Date", date, "Cache-Control", "s-maxage=60"), Options{}, true, ""},
		{"expires, cookie", cookie, hdr("Date", date, "Expires", httpDate(t0.Add(time.Minute))), Options{}, true, ""},
		{"cdn-cache-control, cookie", cookie, hdr("Date", date, "Last-Modified", lm, "CDN-Cache-Control", "max-age=60"), Options{}, true, ""},
		{"empty cookie field counts", hdr("Cookie", ""), hdr("Date", date, "Last-Modified", lm), Options{}, false, "credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Evaluate(http.MethodGet, tt.req, 200, tt.resp, t0, t0, tt.opts)
			if p.Store != tt.store || p.Reason != tt.reason {
				t.Fatalf("Store=%v Reason=%q, want %v %q", p.Store, p.Reason, tt.store, tt.reason)
			}
		})
	}
}
