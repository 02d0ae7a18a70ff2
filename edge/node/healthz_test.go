package node_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/poll"
)

// publicHealth is the status and body of GET /healthz on n's public
// port, as geo steering and load balancers probe it (no site's Host).
func publicHealth(t *testing.T, n *node.Node) (int, string) {
	t.Helper()
	resp, err := newClient(t).Get("http://" + n.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A node that is stopping says so on its public /healthz as soon as the
// drain begins, so that geo steering (which probes it) sends new clients
// elsewhere during the drain delay; the requests that still come are
// served. Before, only the admin port's /readyz said so, and steering
// kept sending clients to the node until its listener closed.
func TestShutdownFailsPublicHealth(t *testing.T) {
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "body")
	}))
	defer o.Close()
	cfg := nodeConfig("edge-stop", o.URL)
	cfg.Admin.DrainDelay = time.Minute // held there until ctx ends
	n, err := node.Start(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := publicHealth(t, n); code != 200 || body != "ok\n" {
		t.Fatalf("running: /healthz %d %q", code, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- n.Shutdown(ctx) }()
	poll.Until(t, 10*time.Second, "the public /healthz says draining", func() bool {
		code, body := publicHealth(t, n)
		return code == http.StatusServiceUnavailable && body == "draining\n"
	})
	req, _ := http.NewRequest("GET", "http://"+n.HTTPAddr()+"/during-drain", nil)
	req.Host = "site.test"
	resp, err := newClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a request during the drain delay: %d", resp.StatusCode)
	}
	cancel()
	<-stopped
}
