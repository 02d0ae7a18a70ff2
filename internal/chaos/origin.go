// Package chaos is the fault injection of whole-CDN tests: an origin
// whose failure modes a test switches on and off, and delaying, dropping
// and refusing TCP proxies on the links between regions. The CDN itself
// is cdntest's (cdntest.StartCDN: regions of edge nodes started in-process
// through node.Start, the wiring the binary uses); Links puts a Proxy on
// every one of its peer links. There is no netem on the CI kernel: every
// fault is injected in the process, on loopback.
//
// A typical test:
//
//	o := chaos.StartOrigin(t)
//	links := chaos.NewLinks(t)
//	cdn := cdntest.StartCDN(t, nil, cdntest.CDNOptions{
//		Regions:  []string{"r1", "r2", "r3"},
//		Shield:   []string{"r1"},
//		PeerAddr: links.PeerAddr,
//		Config:   func(_ string, _ int, c *node.Config) { c.Sites[0].Origin = o.URL },
//	})
//	links.Set("r2", "r1", chaos.Link{Refuse: true})
//	o.SetFault(chaos.Fault{HeaderDelay: time.Second})
//	cdn.Region("r2").Get(0, "/a?cc=max-age%3D600")
//	fetches := o.Requests()
//
// Tests assert the figures they measure (origin requests per object, per
// client request) as bounds, never durations.
package chaos

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/origin"
)

// Fault is how the origin misbehaves; the zero value serves normally.
type Fault struct {
	// HeaderDelay delays every answer's header (a slow origin).
	HeaderDelay time.Duration
	// Status answers every request with this status (500: a failing
	// origin) instead of the object. 0 serves normally.
	Status int
	// Hang never answers, until the client goes away.
	Hang bool
	// Reset resets every connection without answering.
	Reset bool
	// BodyStall stops every full-body answer half-way for this long (a
	// slow body) before sending the rest. Range answers never stall.
	BodyStall time.Duration
}

// Origin is a demo origin (origin.Demo: see its query parameters) behind a
// switchable Fault, on 127.0.0.1. It answers Range requests (with
// If-Range) for the demo's objects, so that fills can resume from it.
type Origin struct {
	// Demo serves the objects and counts every request that reaches the
	// origin, failed ones included.
	*origin.Demo
	// URL is the origin's base URL, http://127.0.0.1:port.
	URL string

	srv    *httptest.Server
	fault  atomic.Pointer[Fault]
	ranges atomic.Int64
	stalls atomic.Int64
	done   chan struct{}
	once   sync.Once

	mu     sync.Mutex
	total  int64
	counts map[string]int64 // path?query → requests that reached the origin
}

// StartOrigin starts an origin that serves normally; the test's Cleanup
// stops it.
func StartOrigin(t testing.TB) *Origin {
	t.Helper()
	o := &Origin{Demo: origin.NewDemo(nil), done: make(chan struct{}), counts: map[string]int64{}}
	o.fault.Store(&Fault{})
	o.srv = httptest.NewServer(http.HandlerFunc(o.serve))
	o.URL = o.srv.URL
	t.Cleanup(o.Close)
	return o
}

// Close stops the origin, releasing every waiting handler first. It is
// safe to call more than once.
func (o *Origin) Close() {
	o.once.Do(func() {
		close(o.done)
		o.Demo.Close()
		o.srv.CloseClientConnections()
		o.srv.Close()
	})
}

// SetFault switches the origin's behaviour for the requests that arrive
// from now on.
func (o *Origin) SetFault(f Fault) { o.fault.Store(&f) }

// Requests counts the requests that reached the origin (admin paths
// excepted), whatever the fault made of them.
func (o *Origin) Requests() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.total
}

// RequestsFor counts the requests for pathAndQuery ("/a?x=1", the query
// as sent) that reached the origin.
func (o *Origin) RequestsFor(pathAndQuery string) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[pathAndQuery]
}

// RangeRequests counts the Range requests the origin answered.
func (o *Origin) RangeRequests() int64 { return o.ranges.Load() }

// Stalls counts the answers that reached a BodyStall half-way.
func (o *Origin) Stalls() int64 { return o.stalls.Load() }

func (o *Origin) serve(w http.ResponseWriter, r *http.Request) {
	f := *o.fault.Load()
	if strings.HasPrefix(r.URL.Path, "/_stats") || r.URL.Path == "/healthz" {
		o.Demo.ServeHTTP(w, r)
		return
	}
	key := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		key += "?" + r.URL.RawQuery
	}
	o.mu.Lock()
	o.total++
	o.counts[key]++
	o.mu.Unlock()
	if f.HeaderDelay > 0 && !o.wait(r, f.HeaderDelay) {
		hangUp(w, false)
		return
	}
	switch {
	case f.Hang:
		o.wait(r, -1)
		hangUp(w, false)
	case f.Reset:
		hangUp(w, true)
	case f.Status != 0:
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "chaos origin: failing", f.Status)
	case r.Header.Get("Range") != "" && r.Method == http.MethodGet:
		o.serveRange(w, r)
	case f.BodyStall > 0 && r.Method == http.MethodGet:
		o.Demo.ServeHTTP(&stallWriter{ResponseWriter: w, o: o, r: r, stall: f.BodyStall}, r)
	default:
		o.Demo.ServeHTTP(w, r)
	}
}

// hangUp closes the connection without an answer; with reset, with a TCP
// RST.
func hangUp(w http.ResponseWriter, reset bool) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok && reset {
		tc.SetLinger(0)
	}
	conn.Close()
}

// serveRange answers a Range request from the demo's whole answer, with
// net/http's Range and If-Range rules. It counts as one origin request.
func (o *Origin) serveRange(w http.ResponseWriter, r *http.Request) {
	o.ranges.Add(1)
	full := r.Clone(r.Context())
	full.Header.Del("Range")
	full.Header.Del("If-Range")
	rec := httptest.NewRecorder()
	o.Demo.ServeHTTP(rec, full)
	if rec.Code != http.StatusOK {
		for k, vs := range rec.Header() {
			w.Header()[k] = vs
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
		return
	}
	for k, vs := range rec.Header() {
		if k != "Content-Length" {
			w.Header()[k] = vs
		}
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(rec.Body.Bytes()))
}

// wait blocks for d (for ever if d < 0); false if the client went away
// or the origin closed.
func (o *Origin) wait(r *http.Request, d time.Duration) bool {
	var timeout <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
		return true
	case <-r.Context().Done():
	case <-o.done:
	}
	return false
}

// stallWriter stops a body half-way (by its Content-Length) for stall.
type stallWriter struct {
	http.ResponseWriter
	o       *Origin
	r       *http.Request
	stall   time.Duration
	half    int64 // -1 once stalled or unknown
	written int64
	started bool
}

func (s *stallWriter) WriteHeader(code int) {
	if !s.started {
		s.started = true
		s.half = -1
		if cl := s.Header().Get("Content-Length"); cl != "" && code == http.StatusOK {
			if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n > 1 {
				s.half = n / 2
			}
		}
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *stallWriter) Write(p []byte) (int, error) {
	if !s.started {
		s.WriteHeader(http.StatusOK)
	}
	if s.half < 0 || s.written+int64(len(p)) < s.half {
		n, err := s.ResponseWriter.Write(p)
		s.written += int64(n)
		return n, err
	}
	k := s.half - s.written
	n, err := s.ResponseWriter.Write(p[:k])
	s.written += int64(n)
	if err != nil {
		return n, err
	}
	http.NewResponseController(s.ResponseWriter).Flush()
	s.half = -1
	s.o.stalls.Add(1)
	if !s.o.wait(s.r, s.stall) {
		return n, context.Canceled
	}
	m, err := s.ResponseWriter.Write(p[k:])
	s.written += int64(m)
	return n + m, err
}

func (s *stallWriter) Flush() { http.NewResponseController(s.ResponseWriter).Flush() }

// Unwrap lets http.ResponseController reach the connection (the demo
// hijacks it for resets).
func (s *stallWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
