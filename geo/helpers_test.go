package geo

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/geo/geodb"
)

// Three regions, nine edges on 127.x addresses (never dialled when the
// fake transport is used).
var (
	frankfurt = Point{50.11, 8.68}
	ashburn   = Point{39.04, -77.49}
	tokyo     = Point{35.69, 139.69}
)

func testRegions() []Region {
	return []Region{
		{Name: "eu", Point: frankfurt, Edges: []string{"127.0.1.1:8080", "127.0.1.2:8080", "127.0.1.3:8080"}, Hostname: "eu.cdn.meridian.test"},
		{Name: "us", Point: ashburn, Edges: []string{"127.0.2.1:8080", "127.0.2.2:8080", "127.0.2.3:8080"}, Hostname: "us.cdn.meridian.test"},
		{Name: "asia", Point: tokyo, Edges: []string{"127.0.3.1:8080", "127.0.3.2:8080", "127.0.3.3:8080"}, Hostname: "asia.cdn.meridian.test"},
	}
}

func testConfig() Config {
	return Config{Regions: testRegions(), DefaultRegion: "us"}
}

// builtinLocator is a Locator over geodb's built-in table: 192.0.2.0/24
// and 91.0.0.0/10 in Germany, 198.51.100.0/25 and 4.0.0.0/9 in the US,
// 203.0.113.0/25 and 126.0.0.0/8 in Japan, and more.
func builtinLocator(t testing.TB) *Locator {
	t.Helper()
	return entriesLocator(t, geodb.Builtin())
}

func entriesLocator(t testing.TB, entries []geodb.Entry) *Locator {
	t.Helper()
	data, err := geodb.Bytes(entries)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLocator(data, defaultMaxAccuracyKm)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func newTestService(t testing.TB, cfg Config, opts Options) *Service {
	t.Helper()
	if opts.Locator == nil {
		opts.Locator = builtinLocator(t)
	}
	s, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fakeEdges is a probe transport whose edges the test kills and revives.
// A killed edge either refuses at once or hangs until the probe times
// out. Drops fail every n-th probe of each listed edge, deterministically.
type fakeEdges struct {
	mu      sync.Mutex
	dead    map[string]string // host:port → "refuse" or "hang"
	count   map[string]int    // probes seen per host:port
	dropN   int
	dropFor map[string]bool
}

func newFakeEdges() *fakeEdges {
	return &fakeEdges{dead: map[string]string{}, count: map[string]int{}, dropFor: map[string]bool{}}
}

var errRefused = errors.New("connect: connection refused (fake)")

// A "late" edge stands for a starved prober: the request is written only
// after lateWrite (the probe goroutine waited for a core), then the edge
// answers after lateAnswer. "starve" never writes the request at all
// before the probe gives up.
var (
	lateWrite  = 400 * time.Millisecond
	lateAnswer = 200 * time.Millisecond
)

func (f *fakeEdges) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	f.mu.Lock()
	n := f.count[host]
	f.count[host]++
	mode := f.dead[host]
	drop := f.dropN > 0 && f.dropFor[host] && n%f.dropN == f.dropN-1
	f.mu.Unlock()
	trace := httptrace.ContextClientTrace(req.Context())
	wrote := func() {
		if trace != nil && trace.WroteRequest != nil {
			trace.WroteRequest(httptrace.WroteRequestInfo{})
		}
	}
	switch mode {
	case "starve":
		<-req.Context().Done()
		return nil, req.Context().Err()
	case "late":
		select {
		case <-time.After(lateWrite):
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
		wrote()
		select {
		case <-time.After(lateAnswer):
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
		return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("ok\n")), Request: req}, nil
	}
	wrote()
	switch {
	case mode == "hang":
		<-req.Context().Done()
		return nil, req.Context().Err()
	case mode == "refuse", drop:
		return nil, errRefused
	case req.URL.Path != "/healthz" && host != selfCheckHost: // the self-check listener answers any path
		return &http.Response{StatusCode: http.StatusNotFound, Body: http.NoBody, Request: req}, nil
	}
	return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("ok\n")), Request: req}, nil
}

// set marks every edge of region (by its 127.0.N. prefix) with mode; ""
// revives them.
func (f *fakeEdges) set(regions []Region, name, mode string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range regions {
		if r.Name != name {
			continue
		}
		for _, e := range r.Edges {
			if mode == "" {
				delete(f.dead, e)
			} else {
				f.dead[e] = mode
			}
		}
	}
}

// kill marks one edge (host:port) with mode; "" revives it.
func (f *fakeEdges) kill(edge, mode string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if mode == "" {
		delete(f.dead, edge)
	} else {
		f.dead[edge] = mode
	}
}

func (f *fakeEdges) dropEvery(n int, regions []Region) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropN = n
	for _, r := range regions {
		for _, e := range r.Edges {
			f.dropFor[e] = true
		}
	}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// listenOn starts an HTTP test server on a chosen loopback address
// ("127.0.2.1:0"), closed when the test ends.
func listenOn(t *testing.T, address string, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", address)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}
