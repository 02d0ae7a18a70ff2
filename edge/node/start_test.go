package node_test

import (
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/poll"
	"github.com/meridiancdn/meridian/origin"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// A node whose admin listener cannot bind does not start, and leaves
// nothing behind: its cluster (gossip and peer listeners, memberlist) and
// its purger are stopped, the ports are free again.
func TestStartFailingOnTheAdminListenerLeaksNothing(t *testing.T) {
	demo := origin.NewDemo(nil)
	defer demo.Close()
	osrv := httptest.NewServer(demo)
	defer osrv.Close()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	before := goleak.IgnoreCurrent()

	cfg := nodeConfig("edge-admin-fails", osrv.URL)
	cfg.Listen = freeAddr(t)
	cfg.Cluster.PeerListen = freeAddr(t)
	cfg.Admin.Listen = taken.Addr().String()
	n, err := node.Start(cfg, node.Options{})
	if err == nil {
		n.Shutdown(t.Context())
		t.Fatal("started with its admin address taken")
	}
	if !strings.Contains(err.Error(), "admin.listen") {
		t.Fatalf("error %q does not name admin.listen", err)
	}
	for _, addr := range []string{cfg.Listen, cfg.Cluster.PeerListen} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s still bound after the failed start: %v", addr, err)
		}
		ln.Close()
	}
	// memberlist's probe goroutines end on their own after Shutdown;
	// anything else left is a leak.
	var leak error
	defer func() {
		if leak != nil {
			t.Errorf("goroutines left by the failed start: %v", leak)
		}
	}()
	poll.Until(t, 10*time.Second, "the failed start's goroutines end", func() bool {
		leak = goleak.Find(before)
		return leak == nil
	})
}
