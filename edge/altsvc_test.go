package edge_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/meridiancdn/meridian/edge"
)

// TestAltSvcPerSite: a site's alt_svc over real sockets on the plain
// HTTP/1.1 front (both fronts: TestMain runs each), HTTP/2 and HTTP/3,
// on misses and hits: "auto" advertises the edge's HTTP/3 on HTTPS in
// place of the origin's field, "off" sends none anywhere, a value of the
// site's own goes on every answer of every front; and the stored object
// keeps the origin's field, never the edge's.
func TestAltSvcPerSite(t *testing.T) {
	const fromOrigin = `h2="origin.internal:8443"; ma=60`
	origin := respond(200, "body", "Cache-Control", "max-age=600", "Alt-Svc", fromOrigin)
	get := func(t *testing.T, p proto, target string) *http.Response {
		t.Helper()
		resp, body := p.send(t, "GET", "", target)
		wantStatus(t, resp, 200)
		if body != "body" {
			t.Fatalf("%s: body %q", p.name, body)
		}
		return resp
	}
	// each asks every front for target twice (a miss or stored, then a
	// hit) and checks its Alt-Svc with want(front).
	each := func(t *testing.T, e *rulesEnv, target string, want func(p proto) []string) {
		t.Helper()
		for _, p := range e.protos {
			for i := range 2 {
				resp := get(t, p, target)
				if i == 1 {
					wantCS(t, resp, "hit")
				}
				if got, w := resp.Header.Values("Alt-Svc"), want(p); strings.Join(got, "|") != strings.Join(w, "|") {
					t.Errorf("%s, request %d: Alt-Svc %q, want %q", p.name, i+1, got, w)
				}
			}
		}
	}

	t.Run("auto", func(t *testing.T) {
		e := newRulesEnv(t, origin, "")
		_, port, _ := strings.Cut(e.protos[1].base, "127.0.0.1:")
		edgeH3 := `h3=":` + port + `"; ma=86400`
		each(t, e, "/a", func(p proto) []string {
			if p.major == 2 {
				return []string{edgeH3}
			}
			return []string{fromOrigin} // plain HTTP and HTTP/3 advertise nothing of the edge's
		})
		// The HTTPS entry that HTTP/2 stored serves HTTP/3 with the
		// origin's field: the edge's was never stored.
		resp := get(t, e.protos[2], "/a")
		wantCS(t, resp, "hit")
		if got := resp.Header.Values("Alt-Svc"); len(got) != 1 || got[0] != fromOrigin {
			t.Fatalf("stored Alt-Svc %q, want the origin's", got)
		}
	})

	t.Run("off", func(t *testing.T) {
		e := newRulesEnv(t, origin, "", func(c *edge.Config) { c.Sites[0].AltSvc = "off" })
		each(t, e, "/b", func(proto) []string { return nil })
	})

	t.Run("own value", func(t *testing.T) {
		const own = `h3=":443"; ma=3600, h2=":443"`
		e := newRulesEnv(t, origin, "", func(c *edge.Config) { c.Sites[0].AltSvc = own })
		each(t, e, "/c", func(proto) []string { return []string{own} })
		// Back to auto (a reload): the plain front's hit shows the
		// stored field, the origin's.
		cfg := e.cfg
		cfg.Sites = append([]edge.SiteConfig(nil), cfg.Sites...)
		cfg.Sites[0].AltSvc = "auto"
		if err := e.edge.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		resp := get(t, e.protos[0], "/c")
		wantCS(t, resp, "hit")
		if got := resp.Header.Values("Alt-Svc"); len(got) != 1 || got[0] != fromOrigin {
			t.Fatalf("after the reload to auto, the stored Alt-Svc is %q, want the origin's", got)
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, v := range []string{"h3", `h3=":443"` + "\r\nX-Injected: 1", `h3=:443`, ` = "x"`} {
			_, err := edge.ParseConfig([]byte("sites: [{hosts: [a.test], origin: 'http://127.0.0.1:1', alt_svc: " + quoteYAML(v) + "}]\n"))
			if err == nil || !strings.Contains(err.Error(), "sites[0].alt_svc") {
				t.Errorf("alt_svc %q: %v, want an error naming sites[0].alt_svc", v, err)
			}
		}
		for _, v := range []string{"auto", "off", "clear", `h3=":443"; ma=86400; persist=1`} {
			if _, err := edge.ParseConfig([]byte("sites: [{hosts: [a.test], origin: 'http://127.0.0.1:1', alt_svc: " + quoteYAML(v) + "}]\n")); err != nil {
				t.Errorf("alt_svc %q: %v", v, err)
			}
		}
	})
}

// quoteYAML is s as a YAML double-quoted scalar.
func quoteYAML(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\r", `\r`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}
