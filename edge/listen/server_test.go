package listen_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/listen"
)

// The connection metrics are on the Registerer from Start until
// Shutdown: a second Server on the same registry is refused while the
// first runs (with an error, nothing bound), and starts once it is gone.
func TestServerMetricsRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := edge.Config{Listen: "127.0.0.1:0", Sites: []edge.SiteConfig{{Hosts: []string{testHost}, Origin: "http://127.0.0.1:1"}}}
	opt := listen.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	names := func() string {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, mf := range mfs {
			out = append(out, mf.GetName())
		}
		return strings.Join(out, " ")
	}
	a := listen.NewServer(cfg, h, opt)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if got := names(); !strings.Contains(got, "meridian_edge_connections ") && !strings.HasSuffix(got, "meridian_edge_connections") {
		t.Fatalf("registered: %s", got)
	}
	b := listen.NewServer(cfg, h, opt)
	if err := b.Start(); err == nil || !strings.Contains(err.Error(), "metrics") {
		b.Shutdown(context.Background())
		t.Fatalf("a second server on the same registry: %v", err)
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := names(); strings.Contains(got, "meridian_edge_") {
		t.Fatalf("still registered after Shutdown: %s", got)
	}
	if err := b.Start(); err != nil {
		t.Fatalf("after the first shut down: %v", err)
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
