package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meridiancdn/meridian/origin"
)

// The attacks run for 300 ms at a low rate against in-process servers: the
// counts they report are checked, never their speed.

const (
	testRate     = 50
	testDuration = 300 * time.Millisecond
	testPlanned  = 15 // 50/s × 0.3 s
)

// legitServer serves the legitimate client's cached object.
func legitServer(t *testing.T) (*httptest.Server, *hitHandler) {
	h := &hitHandler{}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, h
}

// recorder keeps what a test server received.
type recorder struct {
	mu    sync.Mutex
	reqs  []string // method host target
	count atomic.Int64
}

func (r *recorder) add(method, host, target string) {
	r.mu.Lock()
	r.reqs = append(r.reqs, method+" "+host+" "+target)
	r.mu.Unlock()
	r.count.Add(1)
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reqs...)
}

// waitCount waits until rec has n requests, at most 5 s.
func waitCount(t *testing.T, rec *recorder, n int64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); rec.count.Load() < n && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}

// checkKeys checks that every recorded request is "GET host prefix<n>"
// with distinct keys.
func checkKeys(t *testing.T, reqs []string, host, prefix string) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range reqs {
		f := strings.Fields(r)
		if len(f) != 3 || f[0] != "GET" || f[1] != host || !strings.HasPrefix(f[2], prefix) {
			t.Errorf("server got %q, want GET %s %s<n>", r, host, prefix)
			continue
		}
		if seen[f[2]] {
			t.Errorf("key %s requested twice", f[2])
		}
		seen[f[2]] = true
	}
}

func TestAttackH1Close(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return // the attack's first dial writes nothing
				}
				rec.add(req.Method, req.Host, req.RequestURI)
				// The client closed: a read now sees the end.
				if n, err := conn.Read(make([]byte, 1)); n != 0 || err != io.EOF {
					t.Errorf("after the request: read %d bytes, %v; want the client's close", n, err)
				}
			}()
		}
	}()
	defer func() {
		ln.Close()
		wg.Wait()
	}()
	legit, _ := legitServer(t)

	res, err := Attack(context.Background(), AttackConfig{
		Kind: AttackH1Close, URL: "http://" + ln.Addr().String() + "/h1?size=1", Host: "bench.test",
		Rate: testRate, Duration: testDuration, RunID: "r", HitURL: legit.URL + "/hit", Tail: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Planned != testPlanned || res.Sent != testPlanned || res.Skipped != 0 || res.Errors != 0 {
		t.Errorf("planned %d, sent %d, skipped %d, errors %d (%s); want %d, %d, 0, 0",
			res.Planned, res.Sent, res.Skipped, res.Errors, res.FirstError, testPlanned, testPlanned)
	}
	waitCount(t, rec, testPlanned)
	reqs := rec.all()
	if len(reqs) != testPlanned {
		t.Errorf("server got %d requests, want %d", len(reqs), testPlanned)
	}
	checkKeys(t, reqs, "bench.test", "/h1?size=1&k=r-")
	if res.Legit.Requests < 1 || res.Legit.Errors != 0 || res.Legit.P99 <= 0 || res.Legit.Max < res.Legit.P99 {
		t.Errorf("legit = %+v, want successes and no errors", res.Legit)
	}
	if res.Seconds <= 0 || res.Kind != AttackH1Close || res.Rate != testRate {
		t.Errorf("result = %+v", res)
	}
}

func TestAttackH2Reset(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	rec := &recorder{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.add(r.Method, r.Host, r.RequestURI)
	}))
	srv.EnableHTTP2 = true
	srv.TLS = serverTLS
	srv.StartTLS()
	defer srv.Close()
	legit, _ := legitServer(t)

	res, err := Attack(context.Background(), AttackConfig{
		Kind: AttackH2Reset, URL: srv.URL + "/h2?size=1", Host: "bench.test", Conns: 2,
		Rate: testRate, Duration: testDuration, RunID: "r", HitURL: legit.URL + "/hit", TLSConfig: clientTLS, Tail: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != testPlanned || res.Resets != testPlanned || res.Skipped != 0 || res.Errors != 0 || res.Reconnects != 0 || res.GoAways != 0 {
		t.Errorf("sent %d, resets %d, skipped %d, errors %d (%s), reconnects %d, goaways %d; want %d, %d, 0, 0, 0, 0",
			res.Sent, res.Resets, res.Skipped, res.Errors, res.FirstError, res.Reconnects, res.GoAways, testPlanned, testPlanned)
	}
	// Go's server runs a handler for a stream only if the reset did not
	// come first: some, none or all of them may have run.
	reqs := rec.all()
	if len(reqs) > testPlanned {
		t.Errorf("server ran %d handlers for %d requests", len(reqs), testPlanned)
	}
	checkKeys(t, reqs, "bench.test", "/h2?size=1&k=r-")
	if res.Legit.Requests < 1 || res.Legit.Errors != 0 {
		t.Errorf("legit = %+v", res.Legit)
	}
}

// goAwayServer is a raw HTTP/2 server that decodes each HEADERS frame and,
// after every `after` of them on a connection, sends GOAWAY
// (ENHANCE_YOUR_CALM) and closes it, as a server does with a rapid-reset
// client.
func goAwayServer(t *testing.T, serverTLS *tls.Config, after int, rec *recorder) (addr string, resets *atomic.Int64, stop func()) {
	cfg := serverTLS.Clone()
	cfg.NextProtos = []string{"h2"}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	resets = &atomic.Int64{}
	var wg sync.WaitGroup
	serve := func(conn net.Conn) {
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(conn, preface); err != nil || string(preface) != http2.ClientPreface {
			return
		}
		fr := http2.NewFramer(conn, conn)
		if fr.WriteSettings() != nil {
			return
		}
		dec := hpack.NewDecoder(4096, nil)
		headers := 0
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.HeadersFrame:
				fields, err := dec.DecodeFull(f.HeaderBlockFragment())
				if err != nil {
					t.Errorf("hpack: %v", err)
					return
				}
				h := map[string]string{}
				for _, hf := range fields {
					h[hf.Name] = hf.Value
				}
				if !f.StreamEnded() || !f.HeadersEnded() || f.StreamID%2 != 1 || h[":scheme"] != "https" {
					t.Errorf("HEADERS %+v, fields %v", f.FrameHeader, h)
				}
				rec.add(h[":method"], h[":authority"], h[":path"])
				if headers++; headers == after {
					fr.WriteGoAway(f.StreamID, http2.ErrCodeEnhanceYourCalm, nil)
					return
				}
			case *http2.RSTStreamFrame:
				if f.ErrCode != http2.ErrCodeCancel {
					t.Errorf("RST_STREAM %v, want CANCEL", f.ErrCode)
				}
				resets.Add(1)
			case *http2.SettingsFrame:
				if !f.IsAck() {
					fr.WriteSettingsAck()
				}
			}
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				serve(conn)
			}()
		}
	}()
	return ln.Addr().String(), resets, func() {
		ln.Close()
		wg.Wait()
	}
}

func TestAttackH2ResetReconnects(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	rec := &recorder{}
	addr, resets, stop := goAwayServer(t, serverTLS, 4, rec)
	defer stop()

	res, err := Attack(context.Background(), AttackConfig{
		Kind: AttackH2Reset, URL: "https://" + addr + "/h2?size=1", Host: "bench.test", Conns: 1,
		Rate: testRate, Duration: testDuration, RunID: "r", TLSConfig: clientTLS, Tail: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Every planned request was written, skipped, or lost with a
	// connection the server closed under it; none twice.
	if res.Sent+res.Skipped+res.Errors != testPlanned || res.Resets != res.Sent {
		t.Errorf("sent %d + skipped %d + errors %d, resets %d; want %d in all, resets = sent",
			res.Sent, res.Skipped, res.Errors, res.Resets, testPlanned)
	}
	// 15 requests, 4 per connection: the server closed at least 3.
	if res.GoAways < 1 || res.Reconnects < 1 {
		t.Errorf("goaways %d, reconnects %d; want the server's closes counted", res.GoAways, res.Reconnects)
	}
	if !strings.Contains(res.FirstError, "ENHANCE_YOUR_CALM") && res.Errors == 0 {
		t.Errorf("first error %q, want the GOAWAY's code", res.FirstError)
	}
	reqs := rec.all()
	if int64(len(reqs)) > res.Sent || len(reqs) < 4 {
		t.Errorf("server decoded %d requests, sent %d", len(reqs), res.Sent)
	}
	checkKeys(t, reqs, "bench.test", "/h2?size=1&k=r-")
	if resets.Load() > res.Resets || resets.Load() < 1 {
		t.Errorf("server got %d RST_STREAM(CANCEL), client sent %d; want some, at most that", resets.Load(), res.Resets)
	}
}

func TestAttackH3Cancel(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	release := make(chan struct{})
	var handlers sync.WaitGroup
	var streamCancels atomic.Int64
	type connKey struct{}
	srv := &http3.Server{
		TLSConfig: http3.ConfigureTLSConfig(serverTLS),
		ConnContext: func(ctx context.Context, c *quic.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handlers.Add(1)
			defer handlers.Done()
			if r.Method == http.MethodHead {
				return // the attack's first request on each connection
			}
			rec.add(r.Method, r.Host, r.RequestURI)
			select { // a slow miss: the cancel comes first
			case <-r.Context().Done():
				// The request's context ended while its connection
				// lived: the client's STOP_SENDING did it.
				if r.Context().Value(connKey{}).(*quic.Conn).Context().Err() == nil {
					streamCancels.Add(1)
				}
			case <-release:
			}
		}),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(udp) }()
	defer func() {
		close(release)
		srv.Close()
		udp.Close()
		<-done
		handlers.Wait()
	}()
	legit, _ := legitServer(t)

	res, err := Attack(context.Background(), AttackConfig{
		Kind: AttackH3Cancel, URL: "https://" + udp.LocalAddr().String() + "/h3?size=1", Host: "bench.test",
		Rate: testRate, Duration: testDuration, RunID: "r", HitURL: legit.URL + "/hit", TLSConfig: clientTLS, Tail: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != testPlanned || res.Resets != testPlanned || res.Answered != 0 || res.Skipped != 0 || res.Errors != 0 || res.Reconnects != 0 {
		t.Errorf("sent %d, resets %d, answered %d, skipped %d, errors %d (%s), reconnects %d; want %d, %d, 0, 0, 0, 0",
			res.Sent, res.Resets, res.Answered, res.Skipped, res.Errors, res.FirstError, res.Reconnects, testPlanned, testPlanned)
	}
	// A request cancelled this early may or may not reach the handler.
	reqs := rec.all()
	if len(reqs) > testPlanned {
		t.Errorf("server ran %d handlers for %d requests", len(reqs), testPlanned)
	}
	checkKeys(t, reqs, "bench.test", "/h3?size=1&k=r-")
	// Most reach it: the request is whole before the cancel. (The last
	// ones may still be on their way when the attack closes its
	// connection.)
	if len(reqs) < 1 || streamCancels.Load() < 1 {
		t.Errorf("%d requests reached the handler, %d of them cancelled by the client's STOP_SENDING; want some of each", len(reqs), streamCancels.Load())
	}
	t.Logf("%d of %d requests reached the handler, %d cancelled by STOP_SENDING", len(reqs), testPlanned, streamCancels.Load())
	if res.Legit.Requests < 1 || res.Legit.Errors != 0 {
		t.Errorf("legit = %+v", res.Legit)
	}
}

// demoServer is a demo origin on 127.0.0.1.
func demoServer(t *testing.T) *httptest.Server {
	demo := origin.NewDemo(nil)
	srv := httptest.NewServer(demo)
	t.Cleanup(func() {
		demo.Close() // releases delay= handlers
		srv.Close()
	})
	return srv
}

func TestAttackUniqueKeys(t *testing.T) {
	org := demoServer(t)
	legit, legitH := legitServer(t)
	res, err := Attack(context.Background(), AttackConfig{
		Kind: AttackUniqueKeys, URL: org.URL + "/u?size=4096&cc=max-age%3D60",
		Rate: testRate, Duration: testDuration, RunID: "r", HitURL: legit.URL + "/hit", Tail: 50 * time.Millisecond,
		OriginStatsURL: org.URL + "/_stats", OriginCapRPS: 10,
		PIDs: []int{os.Getpid()}, BudgetBytes: 1 << 30, SampleInterval: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != testPlanned || res.Answered != testPlanned || res.Rejected != 0 || res.Errors != 0 || res.Abandoned != 0 {
		t.Errorf("sent %d, answered %d, rejected %d, errors %d (%s), abandoned %d; want %d, %d, 0, 0, 0",
			res.Sent, res.Answered, res.Rejected, res.Errors, res.FirstError, res.Abandoned, testPlanned, testPlanned)
	}
	// Every key was new to the origin, and nothing else asked it.
	if !res.OriginCounted || res.OriginRequests != testPlanned {
		t.Errorf("origin requests %d (counted %v), want %d", res.OriginRequests, res.OriginCounted, testPlanned)
	}
	if want := float64(testPlanned) / testDuration.Seconds(); res.OriginRPS < want-0.01 || res.OriginRPS > want+0.01 || res.OriginCapRPS != 10 {
		t.Errorf("origin %v/s (cap %v), want %v/s (cap 10)", res.OriginRPS, res.OriginCapRPS, want)
	}
	// This test process is the "server" whose memory is sampled.
	if res.BaseRSS <= 0 || res.PeakRSS < res.BaseRSS || res.EndRSS <= 0 || res.RSSSamples < 2 || res.ServerExited || res.Killed {
		t.Errorf("rss: base %d, peak %d, end %d, %d samples, exited %v, killed %v", res.BaseRSS, res.PeakRSS, res.EndRSS, res.RSSSamples, res.ServerExited, res.Killed)
	}
	// And its CPU, which the tool's own is part of.
	if res.ServerCPUPct <= 0 || res.LoadCPUPct <= 0 {
		t.Errorf("cpu: server %v %%, tool %v %%; want both measured", res.ServerCPUPct, res.LoadCPUPct)
	}
	if want := float64(res.PeakRSS) / (1 << 30); res.RSSRatio != want {
		t.Errorf("rss ratio %v, want %v", res.RSSRatio, want)
	}
	// The warm-up request is not counted, the others are.
	if n := legitH.n.Load(); res.Legit.Requests != n-1 || res.Legit.Errors != 0 || n < 2 {
		t.Errorf("legit requests %d (errors %d), the server saw %d", res.Legit.Requests, res.Legit.Errors, n)
	}
	s := res.Sample()
	if s.Tool != "attack" || s.Kind != "unique-keys" || s.Requests != testPlanned || s.OriginFetches != testPlanned || !s.OriginCounted ||
		s.PeakRSS != res.PeakRSS || s.LegitRequests != res.Legit.Requests || s.LegitP99Ms != ms(res.Legit.P99) || s.Planned != testPlanned {
		t.Errorf("Sample() = %+v", s)
	}
	// 50 origin requests per second against a cap of 10.
	if v := DefaultAttackTargets().Verdict(s); !strings.Contains(v, "origin 50/s > 10/s") {
		t.Errorf("verdict %q, want the origin cap missed", v)
	}
}

func TestAttackSlowMisses(t *testing.T) {
	org := demoServer(t)
	res, err := Attack(context.Background(), AttackConfig{
		Kind: AttackSlowMisses, URL: org.URL + "/s?size=1024&delay=1m", ClientTimeout: 300 * time.Millisecond,
		Rate: testRate, Duration: testDuration, RunID: "r", Tail: 50 * time.Millisecond, OriginStatsURL: org.URL + "/_stats",
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != testPlanned || res.Abandoned != testPlanned || res.Answered != 0 || res.Errors != 0 {
		t.Errorf("sent %d, abandoned %d, answered %d, errors %d (%s); want %d, %d, 0, 0",
			res.Sent, res.Abandoned, res.Answered, res.Errors, res.FirstError, testPlanned, testPlanned)
	}
	// The demo origin counts a request as it arrives, before its delay.
	if !res.OriginCounted || res.OriginRequests < 1 || res.OriginRequests > testPlanned {
		t.Errorf("origin requests %d, want 1 to %d", res.OriginRequests, testPlanned)
	}
	if res.Legit.Requests != 0 {
		t.Errorf("legit requests %d without a hit URL", res.Legit.Requests)
	}
}

func TestAttackRejectedAndLegitErrors(t *testing.T) {
	// A server that sheds the attack with 503 and fails the legitimate
	// client after its warm-up.
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hit" && hits.Add(1) == 1 {
			return
		}
		w.Header().Set("Retry-After", "1")
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	res, err := Attack(context.Background(), AttackConfig{
		Kind: AttackUniqueKeys, URL: srv.URL + "/u", Rate: testRate, Duration: testDuration,
		HitURL: srv.URL + "/hit", Tail: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Answered != testPlanned || res.Rejected != testPlanned || res.Errors != 0 {
		t.Errorf("answered %d, rejected %d, errors %d; want %d, %d, 0", res.Answered, res.Rejected, res.Errors, testPlanned, testPlanned)
	}
	if res.Legit.Requests < 1 || res.Legit.Errors != res.Legit.Requests || !strings.Contains(res.Legit.FirstError, "503") {
		t.Errorf("legit = %+v, want every request failed with 503", res.Legit)
	}
	v := DefaultAttackTargets().Verdict(res.Sample())
	if !strings.HasPrefix(v, "FAIL") || !strings.Contains(v, "legit errors") {
		t.Errorf("verdict %q, want the legitimate client's errors", v)
	}
}

func TestAttackKillsAboveLimit(t *testing.T) {
	// A stand-in for a server that grows without bound: any process is
	// above a 1-byte limit.
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep command: %v", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-waited
	}()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()

	res, err := Attack(context.Background(), AttackConfig{
		Kind: AttackUniqueKeys, URL: srv.URL + "/u", Rate: 10, Duration: time.Minute,
		PIDs: []int{cmd.Process.Pid}, KillAboveBytes: 1, Tail: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Killed || !res.ServerExited {
		t.Errorf("killed %v, exited %v; want both", res.Killed, res.ServerExited)
	}
	// The attack stopped early: what was never due counts as skipped.
	if res.Planned != 600 || res.Sent+res.Skipped+res.Errors != 600 || res.Skipped < 300 {
		t.Errorf("planned %d, sent %d, skipped %d, errors %d; want the run cut short", res.Planned, res.Sent, res.Skipped, res.Errors)
	}
	select {
	case err := <-waited:
		waited <- err
		if !strings.Contains(err.Error(), "killed") {
			t.Errorf("the process ended with %v, want killed", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the process is still running")
	}
	if v := DefaultAttackTargets().Verdict(res.Sample()); !strings.Contains(v, "killed at") {
		t.Errorf("verdict %q", v)
	}
}

func TestAttackFails(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	h1only := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	h1only.TLS = serverTLS
	h1only.StartTLS() // ALPN offers http/1.1 only
	defer h1only.Close()
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "gone", http.StatusNotFound)
	}))
	defer plain.Close()

	for _, tc := range []struct {
		name string
		cfg  AttackConfig
		want string
	}{
		{"h1-close, nothing listens", AttackConfig{Kind: AttackH1Close, URL: "http://" + dead + "/"}, "refused"},
		{"h2-reset, nothing listens", AttackConfig{Kind: AttackH2Reset, URL: "https://" + dead + "/"}, "refused"},
		{"h2-reset, no h2", AttackConfig{Kind: AttackH2Reset, URL: h1only.URL + "/", TLSConfig: clientTLS}, "application protocol"},
		{"legit object missing", AttackConfig{Kind: AttackUniqueKeys, URL: plain.URL + "/", HitURL: plain.URL + "/hit"}, "404"},
		{"bad config", AttackConfig{Kind: "nope", URL: plain.URL}, "kind"},
		{"origin stats not there", AttackConfig{Kind: AttackUniqueKeys, URL: plain.URL + "/", OriginStatsURL: "http://" + dead + "/_stats"}, "origin stats"},
		{"server pid not there", AttackConfig{Kind: AttackUniqueKeys, URL: plain.URL + "/", PIDs: []int{1 << 30}}, "not running"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Rate, tc.cfg.Duration, tc.cfg.ClientTimeout = testRate, testDuration, 2*time.Second
			_, err := Attack(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Attack = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestAttackLegitNotHits(t *testing.T) {
	// Every other answer for the legitimate object is a miss, as when a
	// flood evicts it.
	var n, misses atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hit" {
			return
		}
		if i := n.Add(1); i%2 == 1 {
			if i > 1 { // the warm-up's miss is not the client's to count
				misses.Add(1)
			}
			w.Header().Set("Cache-Status", "meridian; fwd=uri-miss; stored")
			return
		}
		w.Header().Set("Cache-Status", "meridian; hit")
	}))
	defer srv.Close()
	res, err := Attack(context.Background(), AttackConfig{
		Kind: AttackUniqueKeys, URL: srv.URL + "/u", Rate: testRate, Duration: testDuration,
		HitURL: srv.URL + "/hit", Tail: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Legit.Requests < 3 || res.Legit.Errors != 0 || res.Legit.NotHits != misses.Load() || res.Legit.NotHits < 1 {
		t.Errorf("legit requests %d, errors %d, not hits %d; the server answered %d misses", res.Legit.Requests, res.Legit.Errors, res.Legit.NotHits, misses.Load())
	}
	if s := res.Sample(); s.LegitNotHits != res.Legit.NotHits {
		t.Errorf("Sample().LegitNotHits = %d", s.LegitNotHits)
	}
}
