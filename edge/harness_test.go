package edge_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/listen"
	"github.com/meridiancdn/meridian/internal/fakeclock"
)

// testFront is the HTTP/1.1 front (server.front) that newEnv puts the edge
// behind. TestMain runs every test once per front, so that the RFC 9111
// tests hold on each; EDGE_TEST_FRONT=nethttp|fast runs one only.
var testFront = edge.FrontNetHTTP

func TestMain(m *testing.M) {
	fronts := []string{edge.FrontNetHTTP, edge.FrontFast}
	if f := os.Getenv("EDGE_TEST_FRONT"); f != "" {
		fronts = []string{f}
	}
	code := 0
	for _, f := range fronts {
		testFront = f
		if code = m.Run(); code != 0 {
			fmt.Fprintf(os.Stderr, "edge tests failed with server.front %q\n", f)
			break
		}
	}
	if code == 0 {
		if err := goleak.Find(
			// quic-go keeps a package-level goroutine for its connection IDs.
			goleak.IgnoreAnyFunction("github.com/quic-go/quic-go.(*Transport).listen"),
			goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
			// -test.cpuprofile's writer, still ending as the tests do.
			goleak.IgnoreTopFunction("runtime/pprof.readProfile"),
		); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// fakeClock is the edge's and the test origin's settable clock.
type fakeClock = fakeclock.Clock

func newClock() *fakeClock { return fakeclock.New() }

// testOrigin is a real HTTP origin on 127.0.0.1 that counts what reaches it.
type testOrigin struct {
	srv     *httptest.Server
	clock   *fakeClock
	total   atomic.Int64
	mu      sync.Mutex
	byPath  map[string]int
	last    *http.Request // last request seen, headers cloned
	handler http.HandlerFunc
}

func (o *testOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.total.Add(1)
	o.mu.Lock()
	o.byPath[r.URL.Path]++
	cl := r.Clone(context.Background())
	o.last = cl
	h := o.handler
	o.mu.Unlock()
	w.Header().Set("Date", o.clock.Now().UTC().Format(http.TimeFormat))
	h(w, r)
}

func (o *testOrigin) count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.byPath[path]
}

func (o *testOrigin) lastRequest() *http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last
}

func (o *testOrigin) setHandler(h http.HandlerFunc) {
	o.mu.Lock()
	o.handler = h
	o.mu.Unlock()
}

// env is an edge on a real 127.0.0.1 listener in front of a testOrigin.
type env struct {
	t      *testing.T
	clock  *fakeClock
	origin *testOrigin
	edge   *edge.Handler
	srv    *listen.Server
	cfg    edge.Config
	base   string // http://127.0.0.1:port
	client *http.Client
	reg    *prometheus.Registry // the edge's metrics
}

const testHost = "site.test"

func newEnv(t *testing.T, h http.HandlerFunc, mutate ...func(*edge.Config)) *env {
	t.Helper()
	return newEnvWith(t, h, nil, mutate...)
}

// newEnvWith is newEnv with the edge's Options adjusted by opt (nil: as
// newEnv has them) before the edge is made.
func newEnvWith(t *testing.T, h http.HandlerFunc, opt func(*edge.Options), mutate ...func(*edge.Config)) *env {
	t.Helper()
	clock := newClock()
	o := &testOrigin{clock: clock, byPath: map[string]int{}, handler: h}
	o.srv = httptest.NewServer(o)
	cfg := edge.Config{
		Name:   "edge1",
		Listen: "127.0.0.1:0",
		Server: edge.ServerConfig{Front: testFront},
		Sites: []edge.SiteConfig{{
			Hosts:   []string{testHost},
			Origin:  o.srv.URL,
			Timeout: 2 * time.Second,
		}},
	}
	for _, m := range mutate {
		m(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	opts := edge.Options{Now: clock.Now, Logger: log, Registerer: reg}
	if opt != nil {
		opt(&opts)
	}
	eh, err := edge.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := listen.NewServer(cfg, eh, listen.Options{Logger: log, Registerer: reg})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	e := &env{t: t, clock: clock, origin: o, edge: eh, srv: srv, cfg: cfg, reg: reg,
		base: "http://" + srv.Addr(), client: &http.Client{Transport: tr, Timeout: 20 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		eh.Close()
		o.srv.CloseClientConnections()
		o.srv.Close()
		tr.CloseIdleConnections()
	})
	return e
}

// counter returns the sum of the edge's counter series called name.
func (e *env) counter(name string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// series returns the value of every series of the edge's counters called
// one of names, by name and labels.
func (e *env) series(names ...string) map[string]float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if !slices.Contains(names, mf.GetName()) {
			continue
		}
		for _, m := range mf.GetMetric() {
			k := mf.GetName()
			for _, l := range m.GetLabel() {
				k += " " + l.GetName() + "=" + l.GetValue()
			}
			out[k] = m.GetCounter().GetValue()
		}
	}
	return out
}

// do sends a request through the edge and returns the response with its
// body read.
func (e *env) do(method, target string, hdr http.Header, body io.Reader) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+target, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Host = testHost
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, target, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		e.t.Fatalf("%s %s: body: %v", method, target, err)
	}
	return resp, string(b)
}

func (e *env) get(target string, kv ...string) (*http.Response, string) {
	e.t.Helper()
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return e.do(http.MethodGet, target, h, nil)
}

// cacheStatus returns the edge's own Cache-Status entry (the last member).
func cacheStatus(resp *http.Response) string {
	v := resp.Header.Get("Cache-Status")
	if i := strings.LastIndex(v, ", "); i >= 0 {
		v = v[i+2:]
	}
	return v
}

func wantStatus(t *testing.T, resp *http.Response, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("status = %d, want %d (Cache-Status %q)", resp.StatusCode, code, resp.Header.Get("Cache-Status"))
	}
}

func wantCS(t *testing.T, resp *http.Response, parts ...string) {
	t.Helper()
	cs := cacheStatus(resp)
	params := map[string]bool{}
	for _, p := range strings.Split(cs, ";") {
		params[strings.TrimSpace(p)] = true
	}
	for _, p := range parts {
		if strings.HasPrefix(p, "!") {
			if params[p[1:]] {
				t.Fatalf("Cache-Status %q has %q", cs, p[1:])
			}
			continue
		}
		if !params[p] {
			t.Fatalf("Cache-Status %q lacks %q", cs, p)
		}
	}
}

// respond returns an origin handler that writes fixed headers and body.
func respond(status int, body string, kv ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(kv); i += 2 {
			w.Header().Add(kv[i], kv[i+1])
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// withGot1xx reports interim responses the client receives.
func withGot1xx(ctx context.Context, fn func(code int, h http.Header)) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			fn(code, http.Header(h))
			return nil
		},
	})
}
