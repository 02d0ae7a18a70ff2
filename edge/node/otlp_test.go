package node_test

import (
	"bytes"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/cdntest"
	"github.com/meridiancdn/meridian/internal/poll"
)

// Issue 20: tracing.otlp_endpoint exports the edge's spans to an
// OTLP/HTTP collector (the other tracing tests hand the node an
// in-memory exporter, so this is the only one through the config and
// otlptracehttp): a request's server span reaches the collector's
// /v1/traces as protobuf, in the client's trace, with the configured
// service name and the edge's Cache-Status.
func TestOTLPExportReachesACollector(t *testing.T) {
	// The batcher's default is 5s between exports.
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
	var mu sync.Mutex
	type export struct {
		path, contentType string
		body              []byte
	}
	var exports []export
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		exports = append(exports, export{r.URL.Path, r.Header.Get("Content-Type"), b})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK) // an empty ExportTraceServiceResponse
	}))
	t.Cleanup(collector.Close) // after the region's nodes, which flush at shutdown

	o := newTraceOrigin(t)
	reg := cdntest.StartRegion(t, cdntest.StartOrigin(t), cdntest.RegionOptions{Nodes: 1, Config: func(i int, c *node.Config) {
		c.Sites[0].Origin = o.srv.URL
		c.Sites[0].Pool.Servers = nil
		c.Tracing.OTLPEndpoint = collector.URL
		c.Tracing.ServiceName = "meridian-otlp-test"
	}})
	getTraced(t, reg.Node(0).URL, "/otlp", map[string]string{"Traceparent": "00-" + clientTrace + "-" + clientParent + "-01"})

	traceID, _ := hex.DecodeString(clientTrace)
	var got export
	poll.Until(t, 20*time.Second, "the request's span at the collector", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range exports {
			// Protobuf carries the trace id as its 16 bytes and strings
			// as they are.
			if bytes.Contains(e.body, traceID) && bytes.Contains(e.body, []byte("meridian.cache_status")) {
				got = e
				return true
			}
		}
		return false
	})
	if got.path != "/v1/traces" || got.contentType != "application/x-protobuf" {
		t.Errorf("exported to %s as %q, want /v1/traces as application/x-protobuf", got.path, got.contentType)
	}
	for _, want := range []string{"meridian-otlp-test", reg.Node(0).Name, "/otlp", "fwd=uri-miss"} {
		if !bytes.Contains(got.body, []byte(want)) {
			t.Errorf("the exported span lacks %q", want)
		}
	}
	if n := len(o.received()); n != 1 {
		t.Fatalf("origin got %d requests", n)
	}
}
