package listen_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/listen"
	"github.com/meridiancdn/meridian/internal/fakeclock"
	"github.com/meridiancdn/meridian/origin"
)

// The differential harness's servers: two listen.Servers alike but for
// server.front, each with its own edge.Handler over its own origin, the
// two origins answering alike (diffOrigin), the two handlers on one
// frozen clock (so that Age and Cache-Status's ttl are the same on both,
// and nothing goes stale during a fuzzing session).

// diffOrigin is an origin whose answers depend only on the request, and
// which records, per run (the x-diff-run field), what reached it.
type diffOrigin struct {
	srv     *httptest.Server
	release chan struct{} // closed at the end: /slow answers

	mu  sync.Mutex
	log map[string][]string // run nonce: "METHOD path" in arrival order
}

var (
	originDate   = fakeclock.Start.Format(http.TimeFormat)
	lastModified = fakeclock.Start.Add(-time.Hour).Format(http.TimeFormat)
)

func newDiffOrigin() *diffOrigin {
	o := &diffOrigin{release: make(chan struct{}), log: map[string][]string{}}
	o.srv = httptest.NewServer(http.HandlerFunc(o.serve))
	return o
}

func (o *diffOrigin) close() {
	close(o.release)
	o.srv.Close()
}

// requests returns, sorted, what reached the origin for run nonce.
func (o *diffOrigin) requests(nonce string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := append([]string(nil), o.log[nonce]...)
	sort.Strings(out)
	return out
}

func (o *diffOrigin) serve(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	run := r.Header.Get("X-Diff-Run")
	o.log[run] = append(o.log[run], r.Method+" "+r.URL.RequestURI())
	o.mu.Unlock()
	h := w.Header()
	h.Set("Date", originDate)
	cacheable := func(body []byte, kv ...string) {
		h.Set("Cache-Control", "max-age=3600")
		h.Set("Last-Modified", lastModified)
		h.Set("Content-Type", "text/plain")
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		w.Write(body)
	}
	uncacheable := func(status int, body []byte) {
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Type", "text/plain")
		w.WriteHeader(status)
		w.Write(body)
	}
	p := r.URL.Path
	switch {
	case r.Method == http.MethodPost:
		body, err := io.ReadAll(r.Body)
		if err != nil {
			uncacheable(400, []byte(err.Error()))
			return
		}
		uncacheable(200, fmt.Appendf(nil, "%s %s: %d bytes, sha256 %x", r.Method, p, len(body), sha256.Sum256(body)))
	case p == "/hit/small":
		cacheable(pattern(1<<10, p), "ETag", `"v1"`)
	case p == badPath:
		cacheable(pattern(700, p), "ETag", `"v1"`)
	case p == "/hit/large":
		cacheable(pattern(200<<10, p), "ETag", `"v1"`)
	case p == "/hit/window":
		cacheable(pattern(64<<10, p), "ETag", `"v1"`)
	case p == "/hit/vary":
		cacheable([]byte("variant for Accept-Encoding "+r.Header.Get("Accept-Encoding")), "Vary", "Accept-Encoding", "ETag", `"v1"`)
	case p == "/hit/204":
		h.Set("Cache-Control", "max-age=3600")
		w.WriteHeader(http.StatusNoContent)
	case p == "/hit/empty":
		cacheable(nil, "ETag", `"v1"`)
	case p == "/hit/etagless":
		cacheable(pattern(300, p))
	case p == "/hit/redirect":
		h.Set("Location", "/hit/small")
		h.Set("Cache-Control", "max-age=3600")
		w.WriteHeader(http.StatusMovedPermanently)
	case p == "/status/404":
		h.Set("Cache-Control", "max-age=3600")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, "not here")
	case strings.HasPrefix(p, "/miss/"):
		cacheable([]byte("stored at "+p), "ETag", `"m"`)
	case p == "/nostore":
		uncacheable(200, []byte("fresh answer to "+r.Method+" "+p))
	case p == "/nostore/large":
		uncacheable(200, pattern(100<<10, p))
	case p == "/cookie":
		h.Set("Set-Cookie", "id=1; Path=/")
		cacheable([]byte("a cookie"))
	case p == "/hints":
		h.Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		uncacheable(200, []byte("hinted"))
	case p == "/slow":
		select {
		case <-o.release:
		case <-r.Context().Done():
			return
		}
		uncacheable(200, []byte("slow"))
	default:
		uncacheable(404, []byte("no such path"))
	}
}

// diffSide is one of the two servers compared.
type diffSide struct {
	front  string
	srv    *listen.Server
	h      *edge.Handler
	origin *diffOrigin
}

// pairOptions make a diffPair.
type pairOptions struct {
	// frontA and frontB are the two sides' server.front; "" means
	// nethttp (the standard server) for A and fast (the lean front) for B.
	frontA, frontB string
	// wrapB, if set, wraps B's handler: the test-only hook that makes
	// the two differ on purpose (TestH2DifferentialSeesADifference).
	// With it, B's handler is no *edge.Handler, so no front answers
	// hits itself: use it with the standard front on both sides.
	wrapB func(http.Handler) http.Handler
}

// diffPair is the two servers, warmed alike.
type diffPair struct {
	a, b    *diffSide
	runs    atomic.Int64 // numbers the runs' nonces
	badSent atomic.Bool  // the last run sent malformed requests

	mu    sync.Mutex
	known map[string]bool // known differences seen (logged once)
}

// firstSeen reports whether known difference k is seen the first time.
func (p *diffPair) firstSeen(k string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.known[k] {
		return false
	}
	if p.known == nil {
		p.known = map[string]bool{}
	}
	p.known[k] = true
	return true
}

// sendTimeout is both servers' server.send_timeout: short, so that a
// stream whose client grants no credit is reset within a test's budget.
const sendTimeout = 500 * time.Millisecond

func newDiffPair(tb testing.TB, opt pairOptions) *diffPair {
	tb.Helper()
	if opt.frontA == "" {
		opt.frontA = edge.FrontNetHTTP
	}
	if opt.frontB == "" {
		opt.frontB = edge.FrontFast
	}
	certFile, keyFile := listen.WriteCertFiles(tb, testHost)
	clock := fakeclock.New()
	p := &diffPair{}
	for i, front := range []string{opt.frontA, opt.frontB} {
		o := newDiffOrigin()
		cfg := edge.Config{Listen: "127.0.0.1:0",
			// HTTP/3 on, for the Alt-Svc that advertises it (the lean
			// front writes a hit's own).
			TLS: &edge.TLSConfig{Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile},
			Server: edge.ServerConfig{Front: front, SendTimeout: sendTimeout,
				MaxConnections: -1, MaxConnectionsPerIP: -1},
			// The origin's timeouts are beyond any run's budget
			// (confirmBudget the longest): a /slow fill that timed out
			// within a run would end it on the server where it started
			// earlier, and be remembered (the clock is fake: for good).
			Sites: []edge.SiteConfig{{Hosts: []string{testHost}, Origin: o.srv.URL,
				Timeout: time.Minute, Pool: origin.PoolConfig{TryTimeout: time.Minute}}}}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		h, err := edge.New(cfg, edge.Options{Logger: log, Now: clock.Now})
		if err != nil {
			o.close()
			tb.Fatal(err)
		}
		var handler http.Handler = h
		if i == 1 && opt.wrapB != nil {
			handler = opt.wrapB(h)
		}
		srv := listen.NewServer(cfg, handler, listen.Options{Logger: log})
		if err := srv.Start(); err != nil {
			h.Close()
			o.close()
			tb.Fatal(err)
		}
		side := &diffSide{front: front, srv: srv, h: h, origin: o}
		tb.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
			h.Close()
			o.close()
		})
		if i == 0 {
			p.a = side
		} else {
			p.b = side
		}
	}
	for _, s := range []*diffSide{p.a, p.b} {
		s.warm(tb)
	}
	return p
}

// warmPaths are fetched on both sides before any run, so that they are
// hits in every run (with their Accept-Encoding for the Vary one).
var warmPaths = []struct{ path, acceptEncoding string }{
	{"/hit/small", ""}, {"/hit/large", ""}, {"/hit/window", ""}, {"/hit/vary", ""}, {"/hit/vary", "gzip"},
	{"/hit/204", ""}, {"/hit/empty", ""}, {"/hit/etagless", ""}, {"/hit/redirect", ""}, {"/status/404", ""},
	{badPath, ""},
}

// warm stores warmPaths through the HTTPS listener, over HTTP/2.
func (s *diffSide) warm(tb testing.TB) {
	tb.Helper()
	if err := s.store(warmPaths...); err != nil {
		tb.Fatal(err)
	}
}

// store fetches paths (with their Accept-Encoding) over HTTP/2.
func (s *diffSide) store(paths ...struct{ path, acceptEncoding string }) error {
	tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: testHost, InsecureSkipVerify: true},
		ForceAttemptHTTP2: true, DisableCompression: true}
	defer tr.CloseIdleConnections()
	for _, w := range paths {
		req, _ := http.NewRequest(http.MethodGet, "https://"+s.srv.TLSAddr()+w.path, nil)
		req.Host = testHost
		req.Header.Set("X-Diff-Run", "warm")
		if w.acceptEncoding != "" {
			req.Header.Set("Accept-Encoding", w.acceptEncoding)
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return fmt.Errorf("%s: storing %s: %w", s.front, w.path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 && !strings.HasPrefix(w.path, "/status/") && w.path != "/hit/204" && w.path != "/hit/redirect" {
			return fmt.Errorf("%s: storing %s: %s %d", s.front, w.path, resp.Proto, resp.StatusCode)
		}
	}
	return nil
}

// run plays ops against both sides at once (each on its own connection)
// within budget and returns the two outcomes.
func (p *diffPair) run(ops []h2op, budget time.Duration) (a, b *h2Outcome, err error) {
	if p.badSent.Swap(false) {
		// The last run's malformed requests may have invalidated
		// badPath (see badPath).
		for _, s := range []*diffSide{p.a, p.b} {
			if err := s.store(struct{ path, acceptEncoding string }{badPath, ""}); err != nil {
				return nil, nil, err
			}
		}
	}
	for _, o := range ops {
		if o.kind == opBadRequest {
			p.badSent.Store(true)
		}
	}
	nonce := fmt.Sprintf("r%d", p.runs.Add(1))
	var wg sync.WaitGroup
	var errA, errB error
	wg.Add(2)
	go func() { defer wg.Done(); a, errA = p.a.play(ops, budget, nonce) }()
	go func() { defer wg.Done(); b, errB = p.b.play(ops, budget, nonce) }()
	wg.Wait()
	if errA != nil || errB != nil {
		return nil, nil, fmt.Errorf("%s: %v; %s: %v", p.a.front, errA, p.b.front, errB)
	}
	return a, b, nil
}

func (s *diffSide) play(ops []h2op, budget time.Duration, nonce string) (*h2Outcome, error) {
	out, err := playOps(s.srv.TLSAddr(), ops, budget, nonce)
	if err != nil {
		return nil, err
	}
	out.Origin = s.origin.requests(nonce)
	// Each server advertises HTTP/3 on its own port.
	_, port, _ := net.SplitHostPort(s.srv.TLSAddr())
	for _, st := range out.Streams {
		for _, h := range st.Heads {
			for i, l := range h {
				if strings.HasPrefix(l, "alt-svc: ") {
					h[i] = strings.ReplaceAll(l, ":"+port+`"`, `:(this server's port)"`)
				}
			}
		}
	}
	return out, nil
}
