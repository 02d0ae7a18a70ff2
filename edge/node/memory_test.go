package node_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/poll"
)

// A node that manages the process's memory limit sets it from its
// budgets and raises it as objects reach the disk tier, whose index (about
// 400 B an object) no budget counts; one that does not leaves it alone.
func TestMemoryLimitFollowsTheDiskIndex(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Type", "application/octet-stream")
		io.WriteString(w, strings.Repeat("d", 16<<10))
	}))
	defer o.Close()
	cfg := nodeConfig("edge-mem", o.URL)
	cfg.Cluster = nil
	cfg.Admin.DrainDelay = 0
	cfg.Cache.MaxBytes = 1 << 30 // a limit far above what the tests hold
	cfg.Cache.HotBytes = 1
	cfg.Cache.Disk = edge.DiskConfig{Path: t.TempDir(), MaxBytes: 64 << 20}

	bystander, err := node.Start(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bystander.Shutdown(context.Background())
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("a node that does not manage the limit changed it to %d", got)
	}

	cfg.Cache.Disk.Path = t.TempDir()
	n, err := node.Start(cfg, node.Options{ManageMemoryLimit: true})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	if got, want := debug.SetMemoryLimit(-1), cfg.MemoryLimit(); got != want {
		t.Fatalf("limit %d at start, want the budgets' %d", got, want)
	}
	// Objects pushed to disk: the memory store is made small by a reload.
	small := cfg
	small.Cache.MaxBytes = 64 << 10
	small.Cache.MaxObjectBytes = 32 << 10
	if _, err := n.Reload(small); err != nil {
		t.Fatal(err)
	}
	client := newClient(t)
	for i := range 40 {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/obj/%d", n.HTTPAddr(), i), nil)
		req.Host = "site.test"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	poll.Until(t, 30*time.Second, "the limit counts the disk index", func() bool {
		st, _ := n.Handler().DiskStats()
		return st.Objects > 0 && debug.SetMemoryLimit(-1) == small.MemoryLimit()+st.IndexBytes
	})
}
