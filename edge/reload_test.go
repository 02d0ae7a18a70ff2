package edge_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/meridiancdn/meridian/edge"
)

func TestReloadSwapsSitesWithoutDroppingInFlight(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "old origin")
	})
	e.get("/cached")
	second := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "new origin")
	}))
	defer second.Close()

	// A request in flight through the old config.
	var wg sync.WaitGroup
	var slowBody string
	var slowStatus int
	wg.Add(1)
	go func() {
		defer wg.Done()
		r, b := e.get("/slow")
		slowStatus, slowBody = r.StatusCode, b
	}()
	waitFor(t, func() bool { return e.origin.count("/slow") == 1 })

	next := e.cfg
	next.Sites = []edge.SiteConfig{
		{Hosts: []string{testHost}, Origin: second.URL},
		{Hosts: []string{"other.test"}, Origin: second.URL},
	}
	if err := e.edge.Reload(next); err != nil {
		t.Fatal(err)
	}
	close(release)
	wg.Wait()
	if slowStatus != 200 || slowBody != "old origin" {
		t.Fatalf("in-flight request across reload: %d %q", slowStatus, slowBody)
	}
	if _, b := e.get("/fresh-key"); b != "new origin" {
		t.Fatalf("after reload a miss went to %q", b)
	}
	if r, b := e.get("/cached"); b != "old origin" || !strings.Contains(cacheStatus(r), "hit") {
		t.Fatalf("the store was lost on reload: %q %q", b, cacheStatus(r))
	}
	req, _ := http.NewRequest("GET", e.base+"/x", nil)
	req.Host = "other.test"
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wantStatus(t, resp, 200)

	// A bad config is refused and the running one keeps serving.
	bad := next
	bad.Sites = []edge.SiteConfig{{Hosts: []string{testHost}, Origin: "gopher://nope"}}
	if err := e.edge.Reload(bad); err == nil || !strings.Contains(err.Error(), "sites[0].origin") {
		t.Fatalf("bad reload: %v", err)
	}
	renamed := next
	renamed.Name = "other-name"
	if err := e.edge.Reload(renamed); err == nil {
		t.Fatal("a name change was accepted on reload")
	}
	if _, b := e.get("/fresh-key-2"); b != "new origin" {
		t.Fatalf("after a refused reload: %q", b)
	}
}
