package edge_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/origin"
)

// Issue 13's attacks, each on its own edge over real sockets: HTTP/2
// rapid reset, HTTP/3 request-then-cancel, HTTP/1.1 request-then-close,
// a flood of unique keys and a slow origin asked for many distinct
// objects. Each asserts that the origin saw at most the configured caps
// at once (not the attack's rate), that no fill goes on for a request its
// client abandoned, and that a legitimate client kept getting its cached
// object during the attack and after it.

// attackCap is the origin pool's cap on requests (and connections) at once
// in these tests.
const attackCap = 4

// attackOrigin answers /hot with a small cacheable object. Every other
// path is the attacker's: it counts the request, sends a header and the
// first KiB of a 64 KiB body (uncacheable, or cacheable with ?store), and
// then holds the rest until the request is called off or hold is closed.
// It records how many attacker requests it holds at once.
type attackOrigin struct {
	total, cur, peak atomic.Int64
	hold             chan struct{}
	fast             bool // send the whole body at once (a fast origin)
	headerWait       bool // hold before the header instead (a slow origin)
}

const attackBody = 64 << 10

func (a *attackOrigin) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/hot" {
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "hot object")
		return
	}
	a.total.Add(1)
	n := a.cur.Add(1)
	defer a.cur.Add(-1)
	for p := a.peak.Load(); n > p && !a.peak.CompareAndSwap(p, n); p = a.peak.Load() {
	}
	if a.headerWait {
		select {
		case <-a.hold:
		case <-r.Context().Done():
			return
		}
	}
	if strings.Contains(r.URL.RawQuery, "store") {
		w.Header().Set("Cache-Control", "max-age=600")
	} else {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.Header().Set("Content-Length", strconv.Itoa(attackBody))
	if a.fast || a.headerWait {
		w.Write(make([]byte, attackBody))
		return
	}
	w.Write(make([]byte, 1024))
	w.(http.Flusher).Flush()
	select {
	case <-a.hold:
		w.Write(make([]byte, attackBody-1024))
	case <-r.Context().Done():
	}
}

// attackEnv starts an edge whose origin pool takes attackCap requests at
// once and queues briefly, in front of a, with mutate applied.
func attackEnv(t *testing.T, a *attackOrigin, mutate ...func(*edge.Config)) *env {
	t.Helper()
	a.hold = make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-a.hold:
		default:
			close(a.hold)
		}
	})
	return newEnv(t, a.serve, append([]func(*edge.Config){func(c *edge.Config) {
		c.Sites[0].Pool = origin.PoolConfig{MaxInflight: attackCap, MaxConns: attackCap, QueueTimeout: 50 * time.Millisecond}
		c.Sites[0].Timeout = time.Minute // only a called-off fill ends early
	}}, mutate...)...)
}

// legitClient fetches /hot over its own connection from 127.0.0.9 until
// stop is closed, and reports how many answers were wrong.
type legitClient struct {
	ok, bad atomic.Int64
	first   atomic.Value // string: the first wrong answer
	stop    chan struct{}
	done    chan struct{}
}

func startLegit(t *testing.T, get func() (*http.Response, string, error)) *legitClient {
	t.Helper()
	l := &legitClient{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for i := 0; i < 20000; i++ {
			select {
			case <-l.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			resp, body, err := get()
			if err == nil && resp.StatusCode == 200 && body == "hot object" && strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
				l.ok.Add(1)
				continue
			}
			l.bad.Add(1)
			if err != nil {
				l.first.CompareAndSwap(nil, err.Error())
			} else {
				l.first.CompareAndSwap(nil, fmt.Sprintf("%d %q Cache-Status %q", resp.StatusCode, body, resp.Header.Get("Cache-Status")))
			}
		}
	}()
	return l
}

// check stops the client and asserts every answer it got was the cached
// object.
func (l *legitClient) check(t *testing.T) {
	t.Helper()
	close(l.stop)
	<-l.done
	if l.bad.Load() > 0 || l.ok.Load() == 0 {
		t.Errorf("legitimate client during the attack: %d right, %d wrong (first: %v)", l.ok.Load(), l.bad.Load(), l.first.Load())
	}
}

// h1Legit is a legitimate HTTP/1.1 client of e from 127.0.0.9.
func h1Legit(t *testing.T, e *env) func() (*http.Response, string, error) {
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.9")}}).DialContext,
		ResponseHeaderTimeout: 10 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	return getter(tr, e.base+"/hot")
}

// getter returns a func that GETs url for testHost over rt and reads the
// body.
func getter(rt http.RoundTripper, url string) func() (*http.Response, string, error) {
	return func() (*http.Response, string, error) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = testHost
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return nil, "", err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b), err
	}
}

// afterAttack asserts what every attack leaves: the origin never held
// more than the cap, every request it was holding for an attacker has
// been called off (the hold was never released), and the cached object
// is still served.
func afterAttack(t *testing.T, e *env, a *attackOrigin, get func() (*http.Response, string, error)) {
	t.Helper()
	t.Logf("origin requests %d, at most %d at once", a.total.Load(), a.peak.Load())
	// The edge frees a slot when it has called a request off; the origin
	// notices a moment later. Requests whose cancellation is on its way
	// may overlap the next ones, at most one per slot.
	if p := a.peak.Load(); p > 2*attackCap {
		t.Errorf("the origin held %d attacker requests at once, above the cap of %d (and as many on their way out)", p, attackCap)
	}
	if a.total.Load() == 0 {
		t.Fatal("no attacker request reached the origin: the attack tested nothing")
	}
	eventually(t, "every abandoned fill called off at the origin", func() bool { return a.cur.Load() == 0 })
	eventually(t, "no fill in progress", func() bool { return e.metric("meridian_edge_inflight_bytes") == 0 })
	resp, body, err := get()
	if err != nil || resp.StatusCode != 200 || body != "hot object" {
		t.Fatalf("legitimate client after the attack: %v %v %q", err, resp, body)
	}
}

func TestAttackHTTP1RequestThenClose(t *testing.T) {
	a := &attackOrigin{}
	e := attackEnv(t, a)
	get := h1Legit(t, e)
	if _, _, err := get(); err != nil {
		t.Fatal(err)
	}
	legit := startLegit(t, get)
	// 150 connections (as the attack) from 8 workers: each sends a
	// GET for a new uncacheable object, waits for the first byte of the
	// answer (so that its fill has reached the origin, or been refused),
	// and closes.
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= 150; i = next.Add(1) {
				c, err := net.DialTimeout("tcp", e.srv.Addr(), 5*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(c, "GET /h1/%d HTTP/1.1\r\nHost: %s\r\n\r\n", i, testHost)
				c.Read(make([]byte, 1))
				c.Close()
			}
		}()
	}
	wg.Wait()
	legit.check(t)
	afterAttack(t, e, a, get)
}

// h2Attack opens an HTTP/2 connection and sends HEADERS then RST_STREAM
// for up to n requests (request i for path(i)) until the edge closes the
// connection. It returns how many it sent and whether the edge closed the
// connection (waiting up to 15 s for that after the last one).
func h2Attack(t *testing.T, addr string, conf *tls.Config, path func(i int) string, n int) (sent int, closedByEdge bool) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q", p)
	}
	var wmu sync.Mutex
	fr := http2.NewFramer(conn, conn)
	io.WriteString(conn, http2.ClientPreface)
	fr.WriteSettings()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
				wmu.Lock()
				fr.WriteSettingsAck()
				wmu.Unlock()
			}
		}
	}()
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	for i := 0; i < n; i++ {
		select {
		case <-closed:
			return sent, true
		default:
		}
		hbuf.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", testHost}, {":path", path(i)}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		id := uint32(2*i + 1)
		wmu.Lock()
		err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true})
		if err == nil {
			err = fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
		wmu.Unlock()
		if err != nil {
			break
		}
		sent++
	}
	select {
	case <-closed:
		return sent, true
	case <-time.After(15 * time.Second):
		conn.Close()
		<-closed
		return sent, false
	}
}

func TestAttackHTTP2RapidReset(t *testing.T) {
	// Both fronts: with "fast" the TLS listener's HTTP/2 is the lean front.
	a := &attackOrigin{}
	withTLS, pool := tlsFor(t)
	e := attackEnv(t, a, withTLS)
	conf := &tls.Config{RootCAs: pool, ServerName: testHost}
	h2 := &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: true,
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.9")}}).DialContext}
	defer h2.CloseIdleConnections()
	get := getter(h2, "https://"+e.srv.TLSAddr()+"/hot")
	if r, _, err := get(); err != nil || r.ProtoMajor != 2 {
		t.Fatalf("legitimate h2 client: %v %v", r, err)
	}
	legit := startLegit(t, get)
	// Four connections one after the other (the 4 connections for
	// 3 s caused 11,962 origin requests), each until the edge closes it.
	sent := 0
	for c := range 4 {
		n, _ := h2Attack(t, e.srv.TLSAddr(), &tls.Config{RootCAs: pool, ServerName: testHost, NextProtos: []string{"h2"}},
			func(i int) string { return fmt.Sprintf("/h2-%d/%d", c, i) }, 1000)
		sent += n
	}
	t.Logf("%d requests sent and reset", sent)
	legit.check(t)
	afterAttack(t, e, a, get)
	eventually(t, "the four abusive h2 connections counted", func() bool {
		return e.metric("meridian_edge_abusive_connections_closed_total", "protocol", "h2") == 4
	})
}

func TestAttackHTTP3RequestThenCancel(t *testing.T) {
	if testFront != edge.FrontNetHTTP {
		t.Skip("the QUIC listener does not depend on the HTTP/1.1 front")
	}
	a := &attackOrigin{}
	withTLS, pool := tlsFor(t)
	e := attackEnv(t, a, withTLS)
	h3 := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: testHost}}
	defer h3.Close()
	get := getter(h3, "https://"+e.srv.TLSAddr()+"/hot")
	if r, _, err := get(); err != nil || r.ProtoMajor != 3 {
		t.Fatalf("legitimate h3 client: %v %v", r, err)
	}
	legit := startLegit(t, get)
	// One connection, as the (3,414 cancelled requests caused
	// 3,289 origin requests), then a second one.
	sent := 0
	for c := range 2 {
		qc, err := dialQUIC(t, e.srv.TLSAddr(), "127.0.0.2", pool)
		if err != nil {
			t.Fatal(err)
		}
		cc := (&http3.Transport{}).NewClientConn(qc)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		for i := 0; i < 1000 && qc.Context().Err() == nil; i++ {
			str, err := cc.OpenRequestStream(ctx)
			if err != nil {
				break
			}
			req, _ := http.NewRequest("GET", fmt.Sprintf("https://%s/h3-%d/%d", e.srv.TLSAddr(), c, i), nil)
			req.Host = testHost
			if err := str.SendRequestHeader(req); err != nil {
				break
			}
			str.CancelRead(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
			sent++
		}
		select {
		case <-qc.Context().Done():
		case <-ctx.Done():
			t.Errorf("connection %d still open after %d cancelled requests", c, sent)
		}
		cancel()
		qc.CloseWithError(0, "")
	}
	t.Logf("%d requests sent and cancelled", sent)
	legit.check(t)
	afterAttack(t, e, a, get)
}

// A flood of unique cacheable keys from many clients: the origin sees at
// most the cap at once, the store stays within max_bytes, bodies in
// flight within max_inflight_bytes, and the hot object (asked all along)
// stays cached.
func TestAttackUniqueKeyFlood(t *testing.T) {
	a := &attackOrigin{fast: true}
	const maxBytes, inflight = 1 << 20, 256 << 10
	e := attackEnv(t, a, func(c *edge.Config) {
		c.Cache.MaxBytes = maxBytes
		c.Cache.MaxObjectBytes = 128 << 10
		c.Cache.MaxInflightBytes = inflight
		c.Cache.InflightWait = 50 * time.Millisecond
	})
	get := h1Legit(t, e)
	// The hot object is asked twice before the flood: a popular object
	// (the store's protected segment), which no number of keys asked once
	// may evict, however fast they come.
	for range 2 {
		if _, _, err := get(); err != nil {
			t.Fatal(err)
		}
	}
	legit := startLegit(t, get)
	var peakInflight, peakStore atomic.Int64
	sample := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-sample:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if v := int64(e.metric("meridian_edge_inflight_bytes")); v > peakInflight.Load() {
				peakInflight.Store(v)
			}
			if v := int64(e.metric("meridian_edge_store_bytes")); v > peakStore.Load() {
				peakStore.Store(v)
			}
		}
	}()
	var wg sync.WaitGroup
	var next atomic.Int64
	var status sync.Map // "code Cache-Status" → *atomic.Int64
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("127.0.1.%d", w+1))}}).DialContext}
			defer tr.CloseIdleConnections()
			for i := next.Add(1); i <= 600; i = next.Add(1) {
				req, _ := http.NewRequest("GET", fmt.Sprintf("%s/flood/%d?store", e.base, i), nil)
				req.Host = testHost
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Error(err)
					return
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 && n != attackBody {
					t.Errorf("flood answer cut: %d bytes", n)
				}
				c, _ := status.LoadOrStore(fmt.Sprint(resp.StatusCode, " ", resp.Header.Get("Cache-Status")), new(atomic.Int64))
				c.(*atomic.Int64).Add(1)
			}
		}()
	}
	wg.Wait()
	close(sample)
	<-sampled
	status.Range(func(k, v any) bool { t.Logf("flood answers %v: %d", k, v.(*atomic.Int64).Load()); return true })
	t.Logf("peak bytes in flight %d (budget %d), peak store bytes %d (budget %d)", peakInflight.Load(), inflight, peakStore.Load(), maxBytes)
	// One fill at a time may go past the budget by its own body, when
	// every other fill holding room waits on upstream (see byteBudget).
	if p := peakInflight.Load(); p > inflight+attackBody {
		t.Errorf("bytes in flight peaked at %d, above max_inflight_bytes %d and one body", p, inflight)
	}
	if p := peakStore.Load(); p > maxBytes {
		t.Errorf("store peaked at %d bytes, above max_bytes %d", p, maxBytes)
	}
	// A miss the budget cannot take is refused before it asks the
	// origin: the origin's work is not thrown away (on the code before,
	// every fill took a first chunk and then waited for the rest, and 95
	// origin requests gave 18 answers).
	var whole int64
	status.Range(func(k, v any) bool {
		if strings.HasPrefix(k.(string), "200 ") {
			whole += v.(*atomic.Int64).Load()
		}
		return true
	})
	if wasted := a.total.Load() - whole; wasted > attackCap {
		t.Errorf("%d origin requests gave %d whole answers: %d wasted", a.total.Load(), whole, wasted)
	}
	legit.check(t)
	afterAttack(t, e, a, get)
	if n := e.origin.count("/hot"); n != 1 {
		t.Errorf("the hot object was fetched %d times: the flood evicted it", n)
	}
}

// A slow origin asked for many distinct objects by patient clients: the
// origin holds at most the cap; the rest wait in the pool's queue for a
// bounded time and get 503 with Retry-After, not a pile of requests on the
// origin; hits go on meanwhile.
func TestAttackSlowOriginManyMisses(t *testing.T) {
	a := &attackOrigin{headerWait: true}
	e := attackEnv(t, a)
	get := h1Legit(t, e)
	if _, _, err := get(); err != nil {
		t.Fatal(err)
	}
	legit := startLegit(t, get)
	var wg sync.WaitGroup
	codes := make(chan *http.Response, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("127.0.2.%d", i+1))}}).DialContext}
			defer tr.CloseIdleConnections()
			req, _ := http.NewRequest("GET", fmt.Sprintf("%s/slow/%d?store", e.base, i), nil)
			req.Host = testHost
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp
		}()
	}
	// Those the origin could not take are refused while it still holds
	// the others.
	refused := 0
	for refused < 64-attackCap {
		select {
		case r := <-codes:
			if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
				t.Fatalf("a miss past the origin's cap: %d (Retry-After %q), want 503 with Retry-After", r.StatusCode, r.Header.Get("Retry-After"))
			}
			refused++
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d misses past the cap refused after 10 s", refused, 64-attackCap)
		}
	}
	if got := a.cur.Load(); got != attackCap {
		t.Errorf("the origin holds %d requests, want the cap %d", got, attackCap)
	}
	legit.check(t)
	close(a.hold)
	wg.Wait()
	close(codes)
	for r := range codes {
		if r.StatusCode != 200 {
			t.Errorf("a miss the origin took: %d", r.StatusCode)
		}
	}
	afterAttack(t, e, a, get)
}
