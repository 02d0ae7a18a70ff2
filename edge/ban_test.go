package edge_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
)

// The hosts of the ban tests: site.test and www.site.test are one site,
// other.test another.
const (
	wwwHost   = "www.site.test"
	otherHost = "other.test"

	adminToken = "admin-token-0123456789"
	siteToken  = "site-token-0123456789a"
	otherToken = "other-token-0123456789"
)

// banOrigin is an origin that records every request it gets (method,
// host, target) and answers a cacheable body naming them, with surrogate
// keys and Magento tags from the query (?k=a+b, ?tags=x,y) and a
// Content-Type by extension.
type banOrigin struct {
	mu   sync.Mutex
	got  []string
	fail bool
}

func (o *banOrigin) serve(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.got = append(o.got, r.Method+" "+r.Host+r.URL.RequestURI())
	fail := o.fail
	o.mu.Unlock()
	if fail {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Cache-Control", "max-age=600, stale-if-error=3600")
	if k := r.URL.Query().Get("k"); k != "" {
		w.Header().Set("Surrogate-Key", k)
	}
	if tags := r.URL.Query().Get("tags"); tags != "" {
		w.Header().Set("X-Magento-Tags", tags)
	}
	if strings.HasSuffix(r.URL.Path, ".png") {
		w.Header().Set("Content-Type", "image/png")
	} else {
		w.Header().Set("Content-Type", "text/plain")
	}
	fmt.Fprintf(w, "%s%s", r.Host, r.URL.RequestURI())
}

// take returns what the origin got since the last take, sorted.
func (o *banOrigin) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	got := o.got
	o.got = nil
	slices.Sort(got)
	return got
}

// banEnv is an edge with two sites (site.test and www.site.test with
// its purge token; other.test with another), its admin API with an
// admin token, and PURGE wired on its public port.
type banEnv struct {
	*env
	rec   *banOrigin
	admin *httptest.Server
}

func newBanEnv(t *testing.T, mutate ...func(*edge.Config)) *banEnv {
	t.Helper()
	rec := &banOrigin{}
	var adm *edge.Admin
	e := newEnvOptions(t, rec.serve, func(o *edge.Options, h func() *edge.Handler) {
		o.PurgeMethod = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { adm.ServePurgeMethod(w, r) })
	}, append([]func(*edge.Config){func(c *edge.Config) {
		c.Sites[0].Hosts = []string{testHost, wwwHost}
		c.Sites[0].PurgeToken = siteToken
		other := c.Sites[0]
		other.Hosts = []string{otherHost}
		other.PurgeToken = otherToken
		c.Sites = append(c.Sites, other)
		// Lazily only, unless a test says otherwise: a test sweeps with
		// SweepBans.
		c.Purge.BanSweepInterval = time.Hour
	}}, mutate...)...)
	adm = &edge.Admin{Handler: e.edge, Token: adminToken}
	srv := httptest.NewServer(adm)
	t.Cleanup(srv.Close)
	return &banEnv{env: e, rec: rec, admin: srv}
}

// fetch GETs target on host through the edge and returns the body.
func (b *banEnv) fetch(host, target string) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.base+target, nil)
	req.Host = host
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// objects are what each ban test stores first.
var banObjects = [][2]string{
	{testHost, "/a/1"},
	{testHost, "/a/2?k=red"},
	{testHost, "/b/1.png?k=red+blue&tags=cat_p_1,cat_c_2"},
	{testHost, "/b/2?tags=cat_p_10"},
	{wwwHost, "/a/1"},
	{otherHost, "/a/1?k=red"},
	{otherHost, "/b/1.png"},
}

// warm stores banObjects (and checks that a second round is all hits),
// then moves the clock on, so that a ban is newer than all of them.
func (b *banEnv) warm() {
	b.t.Helper()
	for _, o := range banObjects {
		b.fetch(o[0], o[1])
	}
	waitFor(b.t, func() bool { n, _, _ := b.edge.StoreStats(); return n == len(banObjects) })
	b.rec.take()
	b.refetched()
	b.clock.Advance(time.Second)
}

// refetched GETs every object of banObjects and returns the ones that
// reached the origin (each then is stored again).
func (b *banEnv) refetched() []string {
	b.t.Helper()
	for _, o := range banObjects {
		resp, body := b.fetch(o[0], o[1])
		if resp.StatusCode != 200 || body != o[0]+o[1] {
			b.t.Fatalf("GET %s%s: %d %q", o[0], o[1], resp.StatusCode, body)
		}
	}
	waitFor(b.t, func() bool { n, _, _ := b.edge.StoreStats(); return n == len(banObjects) })
	return b.rec.take()
}

// purge POSTs body to the admin API with token.
func (b *banEnv) purge(token, body string) (*http.Response, edge.PurgeResult, string) {
	b.t.Helper()
	req, _ := http.NewRequest("POST", b.admin.URL+"/purge", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var res edge.PurgeResult
	json.Unmarshal(raw, &res)
	return resp, res, string(raw)
}

// gauge returns the value of the edge's gauge called name.
func (b *banEnv) gauge(name string) float64 {
	b.t.Helper()
	mfs, err := b.reg.Gather()
	if err != nil {
		b.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	b.t.Fatalf("no gauge %s", name)
	return 0
}

func gets(hostTargets ...string) []string {
	out := make([]string, len(hostTargets))
	for i, ht := range hostTargets {
		out[i] = "GET " + ht
	}
	slices.Sort(out)
	return out
}

// Each kind of purge makes the origin see again exactly the objects it
// names, and no other.
func TestBanKindsPurgeExactlyWhatTheyName(t *testing.T) {
	cases := []struct {
		name, body string
		want       []string
	}{
		{"prefix", `{"prefixes": ["https://site.test/a/"]}`,
			gets("site.test/a/1", "site.test/a/2?k=red")},
		{"prefix with a query", `{"prefixes": ["http://site.test/b/1.png?k="]}`,
			gets("site.test/b/1.png?k=red+blue&tags=cat_p_1,cat_c_2")},
		{"host", `{"hosts": ["www.site.test"]}`,
			gets("www.site.test/a/1")},
		{"site", `{"sites": ["www.site.test"]}`,
			gets("site.test/a/1", "site.test/a/2?k=red", "site.test/b/1.png?k=red+blue&tags=cat_p_1,cat_c_2", "site.test/b/2?tags=cat_p_10", "www.site.test/a/1")},
		{"regex on the URL, every host", `{"bans": ["req.url ~ \"^/b/.*\\.png\""]}`,
			gets("site.test/b/1.png?k=red+blue&tags=cat_p_1,cat_c_2", "other.test/b/1.png")},
		{"regex and host", `{"bans": ["req.http.host == OTHER.test && req.url ~ ^/a/"]}`,
			gets("other.test/a/1?k=red")},
		{"stored field", `{"bans": ["obj.http.content-type ~ ^image/ && req.http.host != other.test"]}`,
			gets("site.test/b/1.png?k=red+blue&tags=cat_p_1,cat_c_2")},
		{"magento tags", `{"bans": ["obj.http.X-Magento-Tags ~ \"(^|,)cat_p_1(,|$)\""]}`,
			gets("site.test/b/1.png?k=red+blue&tags=cat_p_1,cat_c_2")},
		{"negated", `{"bans": ["req.http.host == site.test && req.url !~ ^/a/"]}`,
			gets("site.test/b/1.png?k=red+blue&tags=cat_p_1,cat_c_2", "site.test/b/2?tags=cat_p_10")},
		{"surrogate key", `{"keys": ["red"]}`,
			gets("site.test/a/2?k=red", "site.test/b/1.png?k=red+blue&tags=cat_p_1,cat_c_2", "other.test/a/1?k=red")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBanEnv(t)
			b.warm()
			resp, _, raw := b.purge(adminToken, c.body)
			if resp.StatusCode != 200 {
				t.Fatalf("purge %s: %d %s", c.body, resp.StatusCode, raw)
			}
			if got := b.refetched(); !slices.Equal(got, c.want) {
				t.Fatalf("after %s the origin got\n%q\nwant\n%q", c.body, got, c.want)
			}
			// The new copies are newer than the ban: they stay.
			if got := b.refetched(); len(got) != 0 {
				t.Fatalf("second round after %s: the origin got %q", c.body, got)
			}
		})
	}
}

// A ban is applied at lookup while the sweeper has not run; the sweeper
// then removes the rest of what it names and retires it, and entries
// stored after it are not its business.
func TestBanLazyThenSweptAndRetired(t *testing.T) {
	b := newBanEnv(t)
	b.warm()
	resp, res, raw := b.purge(adminToken, `{"prefixes": ["http://site.test/a/"], "bans": ["req.url ~ ^/b/2"]}`)
	if resp.StatusCode != 200 || res.Bans != 2 || res.Purged != 0 {
		t.Fatalf("purge: %d %s", resp.StatusCode, raw)
	}
	if n := b.gauge("meridian_edge_bans"); n != 2 {
		t.Fatalf("meridian_edge_bans = %v, want 2", n)
	}
	st, err := http.Get(b.admin.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var status struct {
		Bans struct {
			Active int      `json:"active"`
			Newest []string `json:"newest"`
		} `json:"bans"`
	}
	json.NewDecoder(st.Body).Decode(&status)
	st.Body.Close()
	if status.Bans.Active != 2 || len(status.Bans.Newest) != 2 || !strings.Contains(status.Bans.Newest[0], `req.url ~ "^/b/2"`) {
		t.Fatalf("/status bans: %+v", status.Bans)
	}
	// At lookup: the banned object is fetched again, nothing else.
	b.fetch(testHost, "/a/1")
	b.fetch(otherHost, "/a/1?k=red")
	if got, want := b.rec.take(), gets("site.test/a/1"); !slices.Equal(got, want) {
		t.Fatalf("origin got %q, want %q", got, want)
	}
	waitFor(t, func() bool { n, _, _ := b.edge.StoreStats(); return n == len(banObjects) })
	if got := b.series("meridian_edge_banned_total"); got["meridian_edge_banned_total where=lookup"] != 1 {
		t.Fatalf("banned: %v", got)
	}
	// The sweeper removes the two banned objects nobody asked for, and
	// retires both bans.
	if n := b.edge.SweepBans(); n != 2 {
		t.Fatalf("SweepBans removed %d, want 2", n)
	}
	if n, _, _ := b.edge.StoreStats(); n != len(banObjects)-2 {
		t.Fatalf("store holds %d entries after the sweep, want %d", n, len(banObjects)-2)
	}
	if n := b.gauge("meridian_edge_bans"); n != 0 {
		t.Fatalf("meridian_edge_bans = %v after the sweep, want 0", n)
	}
	if got := b.series("meridian_edge_banned_total"); got["meridian_edge_banned_total where=sweep"] != 2 {
		t.Fatalf("banned: %v", got)
	}
	if got, want := b.refetched(), gets("site.test/a/2?k=red", "site.test/b/2?tags=cat_p_10"); !slices.Equal(got, want) {
		t.Fatalf("after the sweep the origin got %q, want %q", got, want)
	}
}

// The background sweeper runs by itself (purge.ban_sweep_interval) and
// ends when no ban is left.
func TestBanSweeperRunsInBackground(t *testing.T) {
	b := newBanEnv(t, func(c *edge.Config) { c.Purge.BanSweepInterval = time.Millisecond })
	b.warm()
	if resp, _, raw := b.purge(adminToken, `{"hosts": ["other.test"]}`); resp.StatusCode != 200 {
		t.Fatalf("purge: %s", raw)
	}
	waitFor(t, func() bool {
		n, _, _ := b.edge.StoreStats()
		return n == len(banObjects)-2 && b.gauge("meridian_edge_bans") == 0
	})
	if got := b.rec.take(); len(got) != 0 {
		t.Fatalf("the sweep reached the origin: %q", got)
	}
}

// The ban list is bounded: past purge.max_bans a ban is refused whole
// with a clear 429, a repeated ban replaces its twin, and a sweep makes
// room again.
func TestBanListBound(t *testing.T) {
	b := newBanEnv(t, func(c *edge.Config) { c.Purge.MaxBans = 2 })
	b.warm()
	for _, body := range []string{`{"hosts": ["site.test"]}`, `{"hosts": ["site.test"]}`, `{"hosts": ["other.test"]}`} {
		if resp, _, raw := b.purge(adminToken, body); resp.StatusCode != 200 {
			t.Fatalf("purge %s: %d %s", body, resp.StatusCode, raw)
		}
	}
	if n := b.gauge("meridian_edge_bans"); n != 2 {
		t.Fatalf("meridian_edge_bans = %v, want 2 (the repeated ban replaces its twin)", n)
	}
	// One more, alone or with others, is refused whole: nothing of it
	// applies.
	resp, _, raw := b.purge(adminToken, `{"urls": ["http://www.site.test/a/1"], "hosts": ["www.site.test"]}`)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(raw, "purge.max_bans") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over the bound: %d %q (Retry-After %q)", resp.StatusCode, raw, resp.Header.Get("Retry-After"))
	}
	if got := b.series("meridian_edge_bans_refused_total"); got["meridian_edge_bans_refused_total"] != 1 {
		t.Fatalf("refused: %v", got)
	}
	b.edge.SweepBans()
	if resp, _, raw := b.purge(adminToken, `{"hosts": ["www.site.test"]}`); resp.StatusCode != 200 {
		t.Fatalf("after the sweep: %d %s", resp.StatusCode, raw)
	}
	if got, want := b.refetched(), gets("site.test/a/1", "site.test/a/2?k=red", "site.test/b/1.png?k=red+blue&tags=cat_p_1,cat_c_2", "site.test/b/2?tags=cat_p_10", "www.site.test/a/1", "other.test/a/1?k=red", "other.test/b/1.png"); !slices.Equal(got, want) {
		t.Fatalf("origin got %q, want %q", got, want)
	}
}

// A soft ban marks stale: the object is still served within
// stale-if-error when the origin fails; a hard one leaves nothing.
func TestSoftBanServesStaleOnError(t *testing.T) {
	for _, sweep := range []bool{false, true} {
		t.Run(fmt.Sprintf("sweep=%v", sweep), func(t *testing.T) {
			b := newBanEnv(t)
			b.warm()
			if resp, _, raw := b.purge(adminToken, `{"prefixes": ["http://site.test/a/"], "soft": true}`); resp.StatusCode != 200 {
				t.Fatalf("purge: %s", raw)
			}
			if sweep {
				if n := b.edge.SweepBans(); n != 2 {
					t.Fatalf("soft sweep changed %d, want 2", n)
				}
			}
			b.rec.mu.Lock()
			b.rec.fail = true
			b.rec.mu.Unlock()
			resp, body := b.fetch(testHost, "/a/1")
			wantStatus(t, resp, 200)
			wantCS(t, resp, "fwd=stale", "detail=stale-if-error")
			if body != "site.test/a/1" {
				t.Fatalf("body %q", body)
			}
			// Not banned: fresh, no trip to the origin.
			resp, _ = b.fetch(otherHost, "/a/1?k=red")
			wantCS(t, resp, "hit")
			if got, want := b.rec.take(), gets("site.test/a/1"); !slices.Equal(got, want) {
				t.Fatalf("origin got %q, want %q", got, want)
			}
			b.clock.Advance(time.Second)
			b.purge(adminToken, `{"prefixes": ["http://site.test/a/"]}`)
			resp, _ = b.fetch(testHost, "/a/1")
			wantStatus(t, resp, 503)
		})
	}
}

// purgeMethod sends PURGE target on host to the public port.
func (b *banEnv) purgeMethod(host, target string, hdr ...string) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest("PURGE", b.base+target, nil)
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// PURGE on the public port needs a valid token for the request's site:
// without one it is a 405 and reaches neither the origin nor the store.
func TestPurgeMethodNeedsAValidTokenForTheSite(t *testing.T) {
	b := newBanEnv(t)
	b.warm()
	for _, auth := range []string{"", "Bearer ", "Bearer wrong", "Basic " + adminToken, "Bearer " + otherToken, "bearer " + adminToken} {
		resp, body := b.purgeMethod(testHost, "/a/1", "Authorization", auth)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") == "" {
			t.Fatalf("PURGE with %q: %d %q", auth, resp.StatusCode, body)
		}
	}
	if got := b.refetched(); len(got) != 0 {
		t.Fatalf("a refused PURGE reached the origin or the store: %q", got)
	}
	for _, c := range []struct{ host, target, token string }{{testHost, "/a/1", siteToken}, {wwwHost, "/a/1", siteToken}, {otherHost, "/b/1.png", adminToken}} {
		resp, body := b.purgeMethod(c.host, c.target, "Authorization", "Bearer "+c.token)
		if resp.StatusCode != 200 || !strings.Contains(body, `"purged":1`) {
			t.Fatalf("PURGE %s%s: %d %q", c.host, c.target, resp.StatusCode, body)
		}
	}
	if got, want := b.refetched(), gets("site.test/a/1", "www.site.test/a/1", "other.test/b/1.png"); !slices.Equal(got, want) {
		t.Fatalf("origin got %q, want %q", got, want)
	}
}

// PURGE speaks what WordPress, Magento and FOSHttpCache send to Varnish.
func TestPurgeMethodHeaders(t *testing.T) {
	cases := []struct {
		name   string
		host   string
		target string
		hdr    []string
		want   []string
	}{
		{"wordpress regex", testHost, "/a/.*", []string{"X-Purge-Method", "regex"},
			gets("site.test/a/1", "site.test/a/2?k=red")},
		{"wordpress purge all", wwwHost, "/.*", []string{"X-Purge-Method", "regex"},
			gets("www.site.test/a/1")},
		{"X-Purge-Regex", testHost, "/", []string{"X-Purge-Regex", `\.png$|^/b/2`},
			gets("site.test/b/2?tags=cat_p_10")},
		{"xkey", testHost, "/", []string{"xkey-purge", "blue red"},
			gets("site.test/a/2?k=red", "site.test/b/1.png?k=red+blue&tags=cat_p_1,cat_c_2")},
		{"magento", testHost, "/", []string{"X-Magento-Tags-Pattern", "((^|,)cat_p_1(,|$))|((^|,)cat_p_10(,|$))"},
			gets("site.test/b/1.png?k=red+blue&tags=cat_p_1,cat_c_2", "site.test/b/2?tags=cat_p_10")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBanEnv(t)
			b.warm()
			resp, body := b.purgeMethod(c.host, c.target, append([]string{"Authorization", "Bearer " + siteToken}, c.hdr...)...)
			if resp.StatusCode != 200 {
				t.Fatalf("PURGE: %d %q", resp.StatusCode, body)
			}
			if got := b.refetched(); !slices.Equal(got, c.want) {
				t.Fatalf("origin got\n%q\nwant\n%q", got, c.want)
			}
		})
	}
	// A malformed expression is a clear 400 and changes nothing.
	b := newBanEnv(t)
	b.warm()
	resp, body := b.purgeMethod(testHost, "/", "Authorization", "Bearer "+siteToken, "X-Purge-Regex", "(unclosed")
	if resp.StatusCode != 400 || !strings.Contains(body, "missing closing )") {
		t.Fatalf("bad regex: %d %q", resp.StatusCode, body)
	}
	resp, body = b.purgeMethod(testHost, "/", "Authorization", "Bearer "+siteToken, "X-Purge-Regex", strings.Repeat("a", 2000))
	if resp.StatusCode != 400 || !strings.Contains(body, "longer than") {
		t.Fatalf("long regex: %d %q", resp.StatusCode, body)
	}
	if got := b.refetched(); len(got) != 0 {
		t.Fatalf("origin got %q", got)
	}
}

// A site's token purges its own site and nothing else; the admin token
// purges every site.
func TestSiteTokenScope(t *testing.T) {
	b := newBanEnv(t)
	b.warm()
	for _, body := range []string{
		`{"urls": ["http://other.test/a/1?k=red"]}`,
		`{"prefixes": ["http://other.test/"]}`,
		`{"hosts": ["other.test"]}`,
		`{"sites": ["other.test"]}`,
		`{"urls": ["http://site.test/a/1", "http://other.test/b/1.png"]}`,
	} {
		resp, _, raw := b.purge(siteToken, body)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(raw, "outside the purge token's site") {
			t.Fatalf("site token, %s: %d %q", body, resp.StatusCode, raw)
		}
	}
	if got := b.refetched(); len(got) != 0 {
		t.Fatalf("refused purges purged %q", got)
	}
	// Surrogate keys and expressions reach the token's site alone.
	for _, body := range []string{`{"keys": ["red"]}`, `{"bans": ["req.url ~ ^/b/1"]}`} {
		if resp, _, raw := b.purge(siteToken, body); resp.StatusCode != 200 {
			t.Fatalf("site token, %s: %d %q", body, resp.StatusCode, raw)
		}
	}
	if got, want := b.refetched(), gets("site.test/a/2?k=red", "site.test/b/1.png?k=red+blue&tags=cat_p_1,cat_c_2"); !slices.Equal(got, want) {
		t.Fatalf("origin got %q, want %q", got, want)
	}
	// The other site's token, and the admin token, are not refused.
	b.clock.Advance(time.Second)
	if resp, _, raw := b.purge(otherToken, `{"keys": ["red"]}`); resp.StatusCode != 200 {
		t.Fatalf("other token: %d %q", resp.StatusCode, raw)
	}
	if resp, _, raw := b.purge(adminToken, `{"hosts": ["www.site.test"]}`); resp.StatusCode != 200 {
		t.Fatalf("admin token: %d %q", resp.StatusCode, raw)
	}
	if got, want := b.refetched(), gets("other.test/a/1?k=red", "www.site.test/a/1"); !slices.Equal(got, want) {
		t.Fatalf("origin got %q, want %q", got, want)
	}
	for _, tok := range []string{"", "nope", siteToken + "x"} {
		if resp, _, _ := b.purge(tok, `{"keys": ["red"]}`); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("token %q: %d", tok, resp.StatusCode)
		}
	}
}

// A purge refuses what it cannot do, naming the part.
func TestPurgeRefusesMalformed(t *testing.T) {
	b := newBanEnv(t)
	for body, want := range map[string]string{
		`{}`:                                                        "nothing to purge",
		`{"prefixes": ["/a/"]}`:                                     "prefixes[0]",
		`{"hosts": ["a b"]}`:                                        "hosts[0]",
		`{"sites": ["nosuch.test"]}`:                                "sites[0]: no site serves",
		`{"bans": ["req.url ~ (a"]}`:                                "bans[0]",
		`{"bans": ["req.body ~ a"]}`:                                "unknown field",
		`{"bans": ["req.url ~ a &&"]}`:                              "ends with &&",
		`{"bans": ["req.url = a"]}`:                                 "want ==, !=, ~ or !~",
		`{"bans": ["req.url ~ \"a"]}`:                               "unterminated",
		`{"scope": ["x y"], "keys": ["a"]}`:                         "scope[0]",
		`{"urls": ["ftp://site.test/a"]}`:                           "urls[0]",
		`{"bans": ["req.url ~ a b"]}`:                               "want && or the end",
		`{"bans": ["obj.http.a:b ~ x"]}`:                            "unknown field",
		`{"bans": ["req.url ~ ` + strings.Repeat("a", 1100) + `"]}`: "longer than",
	} {
		resp, _, raw := b.purge(adminToken, body)
		if resp.StatusCode != 400 || !strings.Contains(raw, want) {
			t.Errorf("%s: %d %q, want 400 with %q", body, resp.StatusCode, raw, want)
		}
	}
	if n := b.gauge("meridian_edge_bans"); n != 0 {
		t.Fatalf("meridian_edge_bans = %v", n)
	}
}

// A ban made while a fill is on its way is not undone when the fill
// stores: the fill's response is older than the ban.
func TestBanDuringFillIsNotUndone(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	b := newBanEnv(t)
	b.origin.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			w.Header().Set("Cache-Control", "max-age=600")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			<-release
		}
		io.WriteString(w, "v")
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.fetch(testHost, "/slow")
	}()
	<-arrived
	// The headers came (the entry's response time is now); the body is
	// still on its way when the ban comes, and the sweeper runs at once
	// and retires it before the fill stores.
	b.clock.Advance(time.Second)
	if resp, _, raw := b.purge(adminToken, `{"prefixes": ["http://site.test/sl"]}`); resp.StatusCode != 200 {
		t.Fatalf("purge: %s", raw)
	}
	b.edge.SweepBans()
	close(release)
	<-done
	before := b.origin.count("/slow")
	resp, _ := b.fetch(testHost, "/slow")
	wantCS(t, resp, "!hit")
	if b.origin.count("/slow") != before+1 {
		t.Fatal("the purged fill was stored")
	}
}

// BenchmarkHitUnderBans measures a hit on an object older than n active
// bans that do not match it (the worst case for a hit until the sweeper
// retires them: each is checked; n=0 is the hit path with no ban).
func BenchmarkHitUnderBans(b *testing.B) {
	for _, n := range []int{0, 10, 100, 1000} {
		b.Run(fmt.Sprintf("bans=%d", n), func(b *testing.B) {
			origin := httptest.NewServer(respond(200, strings.Repeat("x", 1024), "Cache-Control", "max-age=3600"))
			defer origin.Close()
			h, err := edge.New(edge.Config{
				Purge: edge.PurgeConfig{BanSweepInterval: time.Hour},
				Sites: []edge.SiteConfig{{Hosts: []string{"bench.test"}, Origin: origin.URL}}},
				edge.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			req := httptest.NewRequest("GET", "http://bench.test/obj?x=1", nil)
			w := &discardWriter{h: http.Header{}}
			h.ServeHTTP(w, req) // fill
			for i := 0; i < n; i++ {
				if _, err := h.Purge(edge.Purge{Bans: []string{fmt.Sprintf(`req.url ~ "^/other/%d/.*\.png$"`, i)}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				clear(w.h)
				h.ServeHTTP(w, req)
			}
			b.StopTimer()
			if !strings.Contains(w.h.Get("Cache-Status"), "hit") {
				b.Fatalf("not a hit: %q", w.h.Get("Cache-Status"))
			}
		})
	}
}
