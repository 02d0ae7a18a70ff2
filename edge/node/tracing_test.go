package node_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/cdntest"
)

// traceOrigin records the trace context fields of every request it gets.
type traceOrigin struct {
	mu   sync.Mutex
	got  []http.Header
	srv  *httptest.Server
	hits int
}

func newTraceOrigin(t *testing.T) *traceOrigin {
	o := &traceOrigin{}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.got = append(o.got, http.Header{"Traceparent": r.Header["Traceparent"], "Tracestate": r.Header["Tracestate"]})
		o.mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "traced")
	}))
	t.Cleanup(o.srv.Close)
	return o
}

func (o *traceOrigin) received() []http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]http.Header(nil), o.got...)
}

// tracedRegion is two clustered edges in front of o; spans go to exp
// when it is not nil.
func tracedRegion(t *testing.T, o *traceOrigin, exp *tracetest.InMemoryExporter) *cdntest.Region {
	opts := cdntest.RegionOptions{Nodes: 2, Config: func(i int, c *node.Config) {
		c.Sites[0].Origin = o.srv.URL
		c.Sites[0].Pool.Servers = nil
	}}
	if exp != nil {
		opts.SpanExporter = exp
	}
	reg := cdntest.StartRegion(t, cdntest.StartOrigin(t), opts)
	reg.WaitConverged(cdntest.ConvergeTimeout)
	return reg
}

// ownedBySecond is a path that the region's second node owns, so that a
// request to the first goes edge → owner → origin.
func ownedBySecond(t *testing.T, reg *cdntest.Region, prefix string) string {
	t.Helper()
	for i := 0; i < 1000; i++ {
		p := fmt.Sprintf("/%s-%d", prefix, i)
		if owner, ok := reg.Node(0).Cluster.Owner(cdntest.SiteHost + p); ok && owner.Name == reg.Node(1).Name {
			return p
		}
	}
	t.Fatal("no path owned by the second node")
	return ""
}

func getTraced(t *testing.T, base, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", base+target, nil)
	req.Host = cdntest.SiteHost
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", target, resp.Status)
	}
	return resp
}

var traceparentRE = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$`)

const (
	clientTrace  = "0af7651916cd43dd8448eb211c80319c"
	clientParent = "b7ad6b7169203331"
)

// Issue 20: W3C trace context goes edge → owner → origin. With export
// off, the client's traceparent and tracestate arrive at the origin as
// they were sent; a request without one, or with a malformed one, gets
// a new trace (not sampled) and never passes the client's junk on.
func TestTraceContextPropagatedWithoutExport(t *testing.T) {
	o := newTraceOrigin(t)
	reg := tracedRegion(t, o, nil)
	base := reg.Node(0).URL
	tp := "00-" + clientTrace + "-" + clientParent + "-01"

	cases := []struct {
		name string
		hdr  map[string]string
		// want checks the origin's fields
		want func(tp, ts []string) error
	}{
		{"valid", map[string]string{"Traceparent": tp, "Tracestate": "vendor=abc,other=x"}, func(gotTP, gotTS []string) error {
			if strings.Join(gotTP, "|") != tp || strings.Join(gotTS, "|") != "vendor=abc,other=x" {
				return fmt.Errorf("origin got %q %q, want the client's", gotTP, gotTS)
			}
			return nil
		}},
		{"none", nil, func(gotTP, gotTS []string) error {
			if len(gotTP) != 1 || !traceparentRE.MatchString(gotTP[0]) || !strings.HasSuffix(gotTP[0], "-00") || len(gotTS) != 0 {
				return fmt.Errorf("origin got %q %q, want a new unsampled traceparent", gotTP, gotTS)
			}
			return nil
		}},
		{"malformed", map[string]string{"Traceparent": "00-" + strings.ToUpper(clientTrace) + "-" + clientParent + "-01\x20; evil", "Tracestate": "vendor=abc"}, func(gotTP, gotTS []string) error {
			if len(gotTP) != 1 || !traceparentRE.MatchString(gotTP[0]) || strings.Contains(gotTP[0], strings.ToLower(clientTrace)) || len(gotTS) != 0 {
				return fmt.Errorf("origin got %q %q, want a new traceparent and no tracestate", gotTP, gotTS)
			}
			return nil
		}},
		{"bad tracestate", map[string]string{"Traceparent": tp, "Tracestate": "no equals sign,=,,"}, func(gotTP, gotTS []string) error {
			if strings.Join(gotTP, "|") != tp || len(gotTS) != 0 {
				return fmt.Errorf("origin got %q %q, want the traceparent without the tracestate", gotTP, gotTS)
			}
			return nil
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(o.received())
			resp := getTraced(t, base, ownedBySecond(t, reg, strings.ReplaceAll(c.name, " ", "-")), c.hdr)
			if !strings.Contains(resp.Header.Get("Cache-Status"), reg.Node(1).Name) {
				t.Fatalf("not filled through the owner: %q", resp.Header.Get("Cache-Status"))
			}
			got := o.received()
			if len(got) != before+1 {
				t.Fatalf("origin got %d requests, want 1", len(got)-before)
			}
			if err := c.want(got[before]["Traceparent"], got[before]["Tracestate"]); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Issue 20: with export on, each hop records a server span in the
// client's trace: the first edge's is the child of the client's span,
// the owner's the child of the first edge's, and the origin's request
// is the child of the owner's span.
func TestTraceSpanPerHop(t *testing.T) {
	o := newTraceOrigin(t)
	exp := tracetest.NewInMemoryExporter()
	reg := tracedRegion(t, o, exp)
	target := ownedBySecond(t, reg, "span")
	exp.Reset()
	getTraced(t, reg.Node(0).URL, target, map[string]string{
		"Traceparent": "00-" + clientTrace + "-" + clientParent + "-01", "Tracestate": "vendor=abc"})

	got := o.received()
	if len(got) != 1 {
		t.Fatalf("origin got %d requests", len(got))
	}
	m := traceparentRE.FindStringSubmatch(strings.Join(got[0]["Traceparent"], ""))
	if m == nil || m[1] != clientTrace || m[3] != "01" {
		t.Fatalf("origin's traceparent %q: want the client's trace, sampled", got[0]["Traceparent"])
	}
	if ts := strings.Join(got[0]["Tracestate"], ""); ts != "vendor=abc" {
		t.Errorf("origin's tracestate %q", ts)
	}
	// The first edge's span is the client's child; the owner's the
	// first's child. (The owner may consult a peer's copy first, only if
	// cached: one more hop, in the same trace.)
	nodeOf := func(s tracetest.SpanStub) string {
		for _, a := range s.Attributes {
			if a.Key == "meridian.node" {
				return a.Value.AsString()
			}
		}
		return ""
	}
	// Spans end as each handler returns, which may be just after the
	// client has its answer.
	var spans tracetest.SpanStubs
	var first, owner tracetest.SpanStub
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 1000 && time.Now().Before(deadline) && !owner.SpanContext.IsValid(); i++ {
		time.Sleep(10 * time.Millisecond)
		spans = exp.GetSpans()
		for _, s := range spans {
			if nodeOf(s) == reg.Node(0).Name && s.Parent.SpanID().String() == clientParent {
				first = s
			}
		}
		for _, s := range spans {
			if nodeOf(s) == reg.Node(1).Name && s.Parent.SpanID() == first.SpanContext.SpanID() {
				owner = s
			}
		}
	}
	for _, s := range spans {
		if s.SpanContext.TraceID().String() != clientTrace {
			t.Errorf("span of %s in trace %s", nodeOf(s), s.SpanContext.TraceID())
		}
		if s.SpanKind != trace.SpanKindServer {
			t.Errorf("span of %s: kind %v", nodeOf(s), s.SpanKind)
		}
	}
	if !first.SpanContext.IsValid() || !owner.SpanContext.IsValid() {
		for _, s := range spans {
			t.Logf("span %s %s parent %s attrs %v", s.Name, s.SpanContext.SpanID(), s.Parent.SpanID(), s.Attributes)
		}
		t.Fatalf("%d spans: want the first edge's as the client's child, the owner's as its child", len(spans))
	}
	if m[2] != owner.SpanContext.SpanID().String() {
		t.Errorf("origin's parent %s, want the owner's span %s", m[2], owner.SpanContext.SpanID())
	}
	status := func(s tracetest.SpanStub) string {
		for _, a := range s.Attributes {
			if a.Key == "meridian.cache_status" {
				return a.Value.AsString()
			}
		}
		return ""
	}
	if !strings.Contains(status(first), "fwd=") || !strings.Contains(status(owner), "fwd=uri-miss") {
		t.Errorf("cache status on the spans: first %q, owner %q", status(first), status(owner))
	}
}
