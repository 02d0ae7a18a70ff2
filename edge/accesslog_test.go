package edge_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/listen"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) lines() []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// fronts is an edge behind every front at once: the fast HTTP/1.1 front
// with HTTPS (HTTP/2) and QUIC (HTTP/3) beside it, and a net/http
// HTTP/1.1 front on a second listener. 127.0.0.1 is a trusted proxy, so
// that X-Forwarded-For names the client.
type fronts struct {
	h        *edge.Handler
	fast     string // host:port of the fast front
	nethttp  string // host:port of the net/http front
	tlsAddr  string // HTTPS and QUIC
	rootCAs  *x509.CertPool
	shutdown func()
}

func newFronts(t *testing.T, originURL string, opt edge.Options, mutate ...func(*edge.Config)) *fronts {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM, err := listen.SelfSignedCert([]string{"127.0.0.1", testHost}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	cfg := edge.Config{Name: "edge-al", Listen: "127.0.0.1:0",
		TLS:    &edge.TLSConfig{Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile},
		Server: edge.ServerConfig{Front: edge.FrontFast, TrustedProxies: []string{"127.0.0.1"}},
		Sites:  []edge.SiteConfig{{Hosts: []string{testHost}, Origin: originURL, Timeout: 5 * time.Second}}}
	for _, m := range mutate {
		m(&cfg)
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	h, err := edge.New(cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	lopt := listen.Options{Logger: opt.Logger}
	fast := listen.NewServer(cfg, h, lopt)
	if err := fast.Start(); err != nil {
		h.Close()
		t.Fatal(err)
	}
	plain := cfg
	plain.TLS = nil
	plain.Server.Front = edge.FrontNetHTTP
	nh := listen.NewServer(plain, h, lopt)
	if err := nh.Start(); err != nil {
		h.Close()
		t.Fatal(err)
	}
	f := &fronts{h: h, fast: fast.Addr(), nethttp: nh.Addr(), tlsAddr: fast.TLSAddr(), rootCAs: x509.NewCertPool()}
	f.rootCAs.AppendCertsFromPEM(certPEM)
	f.shutdown = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		fast.Shutdown(ctx)
		nh.Shutdown(ctx)
		h.Close()
	}
	return f
}

// clients are one client per front, by the name the test reports.
func (f *fronts) clients() (map[string]http.RoundTripper, func()) {
	tlsConf := &tls.Config{RootCAs: f.rootCAs, ServerName: testHost}
	h1 := &http.Transport{}
	h2 := &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true}
	h3 := &http3.Transport{TLSClientConfig: tlsConf}
	return map[string]http.RoundTripper{"fast": h1, "nethttp": h1, "h2": h2, "h3": h3}, func() {
		h1.CloseIdleConnections()
		h2.CloseIdleConnections()
		h3.Close()
	}
}

func (f *fronts) url(front, target string) string {
	switch front {
	case "fast":
		return "http://" + f.fast + target
	case "nethttp":
		return "http://" + f.nethttp + target
	}
	return "https://" + f.tlsAddr + target
}

const (
	testTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	testTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
)

// get sends a GET as a browser behind a proxy would, and reads it whole.
func getAs(t *testing.T, rt http.RoundTripper, url string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = testHost
	req.Header.Set("User-Agent", `Mozilla/5.0 "quoted" \ agent`)
	req.Header.Set("Referer", "https://ref.test/page?a=1&b=2")
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("Traceparent", testTraceparent)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// Issue 20: every front (net/http's HTTP/1.1, the fast HTTP/1.1 front's
// own hits, HTTP/2, HTTP/3) writes the same JSON access line: client IP
// after trusted proxies, user agent, referer, trace id, and a duration in
// milliseconds that is not 0 (the fast front's too).
func TestAccessLogJSONEveryFront(t *testing.T) {
	origin := newCountingOrigin(t, "logged", "max-age=60")
	var buf syncBuffer
	al, err := edge.NewAccessLog(&buf, edge.AccessLogJSON)
	if err != nil {
		t.Fatal(err)
	}
	f := newFronts(t, origin.URL, edge.Options{AccessLog: al})
	defer f.shutdown()
	rts, closeAll := f.clients()
	defer closeAll()

	// A miss first (on the fast front's listener, lent to net/http; and
	// over HTTPS, keyed apart), then a hit on every front.
	getAs(t, rts["fast"], f.url("fast", "/log?q=1"))
	getAs(t, rts["h2"], f.url("h2", "/log?q=1"))
	// A line is written once the handler returns, which can be just after
	// its client has the whole answer: wait for both, so that a late one
	// is not taken for the next request's.
	waitFor(t, func() bool { return len(buf.lines()) == 2 })
	for _, front := range []string{"fast", "nethttp", "h2", "h3"} {
		before := len(buf.lines())
		resp := getAs(t, rts[front], f.url(front, "/log?q=1"))
		if !strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
			t.Fatalf("%s: not a hit: %q", front, resp.Header.Get("Cache-Status"))
		}
		waitFor(t, func() bool { return len(buf.lines()) > before })
		lines := buf.lines()
		if len(lines) != before+1 {
			t.Fatalf("%s: %d lines for one request", front, len(lines)-before)
		}
		l := lines[before]
		want := map[string]any{
			"node": "edge-al", "client_ip": "203.0.113.9", "method": "GET", "host": testHost, "uri": "/log?q=1",
			"proto": resp.Proto, "status": float64(200), "bytes": float64(6),
			"user_agent": `Mozilla/5.0 "quoted" \ agent`, "referer": "https://ref.test/page?a=1&b=2", "trace_id": testTraceID,
		}
		for k, v := range want {
			if l[k] != v {
				t.Errorf("%s: %s = %#v, want %#v (line %v)", front, k, l[k], v, l)
			}
		}
		if cs, _ := l["cache_status"].(string); !strings.Contains(cs, "edge-al; hit") {
			t.Errorf("%s: cache_status %q", front, cs)
		}
		if d, ok := l["duration_ms"].(float64); !ok || d <= 0 || d > 10000 {
			t.Errorf("%s: duration_ms %#v, want milliseconds above 0", front, l["duration_ms"])
		}
		if _, ok := l["duration"]; ok {
			t.Errorf("%s: a duration in nanoseconds is still logged", front)
		}
		if ts, _ := l["time"].(string); !strings.HasSuffix(ts, "Z") {
			t.Errorf("%s: time %q", front, ts)
		} else if tm, err := time.Parse(time.RFC3339Nano, ts); err != nil || time.Since(tm) > time.Minute || time.Since(tm) < 0 {
			t.Errorf("%s: time %q: %v", front, ts, err)
		}
		if r, _ := l["remote"].(string); !strings.HasPrefix(r, "127.0.0.1:") {
			t.Errorf("%s: remote %q", front, r)
		}
	}
}

// combinedLine is the combined log format as goaccess's COMBINED preset
// reads it (%h %^[%d:%t %^] "%r" %s %b "%R" "%u"): quoted values hold no
// bare '"'.
var combinedLine = regexp.MustCompile(`^(\S+) - - \[(\d\d/[A-Z][a-z][a-z]/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "(\S+) (\S+) (HTTP/\d\.\d)" (\d{3}) (\d+) "((?:[^"\\]|\\x[0-9A-F]{2})*)" "((?:[^"\\]|\\x[0-9A-F]{2})*)"$`)

// Issue 20: the combined format, over every front, exactly as log tools
// parse it; a hostile user agent cannot end its quotes or forge a line.
func TestAccessLogCombinedEveryFront(t *testing.T) {
	origin := newCountingOrigin(t, "combined", "max-age=60")
	var buf syncBuffer
	al, err := edge.NewAccessLog(&buf, edge.AccessLogCombined)
	if err != nil {
		t.Fatal(err)
	}
	f := newFronts(t, origin.URL, edge.Options{AccessLog: al})
	defer f.shutdown()
	rts, closeAll := f.clients()
	defer closeAll()
	getAs(t, rts["fast"], f.url("fast", "/c"))
	getAs(t, rts["h2"], f.url("h2", "/c"))
	for _, front := range []string{"fast", "nethttp", "h2", "h3"} {
		before := strings.Count(buf.String(), "\n")
		resp := getAs(t, rts[front], f.url(front, "/c"))
		waitFor(t, func() bool { return strings.Count(buf.String(), "\n") > before })
		lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
		line := lines[before]
		m := combinedLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("%s: not a combined line: %q", front, line)
		}
		if _, err := time.Parse("02/Jan/2006:15:04:05 -0700", m[2]); err != nil {
			t.Errorf("%s: time %q: %v", front, m[2], err)
		}
		got := []string{m[1], m[3], m[4], m[5], m[6], m[7], m[8], m[9]}
		want := []string{"203.0.113.9", "GET", "/c", resp.Proto, "200", "8", "https://ref.test/page?a=1&b=2",
			`Mozilla/5.0 \x22quoted\x22 \x5C agent`}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s: fields %q, want %q", front, got, want)
		}
	}

	// No Referer or User-Agent: "-"; an attacker's control characters
	// and quotes are escaped, and the line stays one line.
	before := strings.Count(buf.String(), "\n")
	req, _ := http.NewRequest("GET", f.url("nethttp", "/c"), nil)
	req.Host = testHost
	req.Header["User-Agent"] = nil
	resp, err := rts["nethttp"].RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitFor(t, func() bool { return strings.Count(buf.String(), "\n") > before })
	line := strings.Split(buf.String(), "\n")[before]
	if !strings.HasSuffix(line, `200 8 "-" "-"`) || !strings.HasPrefix(line, "127.0.0.1 - - [") {
		t.Fatalf("line without referer and user agent: %q", line)
	}
}

// The escaping of the combined format: quotes, backslashes, control and
// non-ASCII bytes never reach the line raw.
func TestAccessLogCombinedHostileFields(t *testing.T) {
	origin := newCountingOrigin(t, "x", "max-age=60")
	var buf syncBuffer
	al, _ := edge.NewAccessLog(&buf, edge.AccessLogCombined)
	f := newFronts(t, origin.URL, edge.Options{AccessLog: al})
	defer f.shutdown()
	for _, front := range []string{"fast", "nethttp"} {
		before := strings.Count(buf.String(), "\n")
		addr := f.fast
		if front == "nethttp" {
			addr = f.nethttp
		}
		// Raw, so that the client library sends what it would refuse.
		rawExchange(t, addr, "GET /h HTTP/1.1\r\nHost: "+testHost+"\r\nUser-Agent: a\" \"b\xff\tc\r\nReferer: x\\\" 200 1\r\nConnection: close\r\n\r\n")
		waitFor(t, func() bool { return strings.Count(buf.String(), "\n") > before })
		line := strings.Split(buf.String(), "\n")[before]
		if combinedLine.FindStringSubmatch(line) == nil {
			t.Errorf("%s: hostile fields broke the line: %q", front, line)
		}
		if !strings.HasSuffix(line, `"x\x5C\x22 200 1" "a\x22 \x22b\xFF\x09c"`) {
			t.Errorf("%s: escaping: %q", front, line)
		}
	}
}

// Issue 20: a file access log is reopened on the signal's path
// (Node.ReopenLogs calls AccessLog.Reopen): after logrotate moves the
// file, lines go to a new file at the configured path and none is lost.
func TestAccessLogReopen(t *testing.T) {
	origin := newCountingOrigin(t, "rotated", "max-age=60")
	path := filepath.Join(t.TempDir(), "access.log")
	al, err := edge.OpenAccessLog(edge.AccessLogConfig{Destination: path, Format: edge.AccessLogCombined}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	f := newFronts(t, origin.URL, edge.Options{AccessLog: al})
	defer f.shutdown()
	rts, closeAll := f.clients()
	defer closeAll()
	countLines := func(p string) int {
		b, _ := os.ReadFile(p)
		return strings.Count(string(b), "\n")
	}
	getAs(t, rts["fast"], f.url("fast", "/r"))
	getAs(t, rts["fast"], f.url("fast", "/r"))
	waitFor(t, func() bool { return countLines(path) == 2 })
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	getAs(t, rts["nethttp"], f.url("nethttp", "/r")) // still to the moved file
	waitFor(t, func() bool { return countLines(path+".1") == 3 })
	if err := al.Reopen(); err != nil {
		t.Fatal(err)
	}
	getAs(t, rts["fast"], f.url("fast", "/r"))
	getAs(t, rts["h2"], f.url("h2", "/r"))
	waitFor(t, func() bool { return countLines(path) == 2 })
	if n := countLines(path + ".1"); n != 3 {
		t.Fatalf("rotated file has %d lines after the reopen, want 3", n)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("new file: %v %v", fi, err)
	}
}

// OpenAccessLog refuses what Validate refuses, naming the field, and
// opens nothing for "off".
func TestOpenAccessLog(t *testing.T) {
	for _, c := range []struct {
		cfg  edge.AccessLogConfig
		want string
	}{
		{edge.AccessLogConfig{Format: "clf"}, "access_log.format"},
		{edge.AccessLogConfig{Destination: "logs/access.log"}, "access_log.destination"},
		{edge.AccessLogConfig{Destination: "/nonexistent-dir/x/access.log"}, "no such file"},
	} {
		if _, err := edge.OpenAccessLog(c.cfg, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %s", c.cfg, err, c.want)
		}
	}
	if l, err := edge.OpenAccessLog(edge.AccessLogConfig{Destination: "off"}, nil, nil); l != nil || err != nil {
		t.Fatalf("off: %v %v", l, err)
	}
	var out bytes.Buffer
	l, err := edge.OpenAccessLog(edge.AccessLogConfig{}, &out, nil) // defaults: JSON on stdout
	if err != nil || l == nil || l.Path() != "" {
		t.Fatalf("default: %v %v", l, err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatalf("reopen of stdout: %v", err)
	}
}

// newCountingOrigin is an origin answering body with Cache-Control cc.
func newCountingOrigin(t *testing.T, body, cc string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", cc)
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		io.WriteString(w, body)
	}))
	t.Cleanup(s.Close)
	return s
}
