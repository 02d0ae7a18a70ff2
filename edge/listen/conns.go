package listen

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meridiancdn/meridian/edge"
)

// Connection-level defences of a Server's listeners, applied once per
// connection (at accept) or once per request on HTTP/2 and HTTP/3, never
// on the fast front's hit path:
//
//   - connLimiter caps the open connections, in all and per client
//     address (server.max_connections, server.max_connections_per_ip);
//   - connGuard closes an HTTP/2 or HTTP/3 connection whose client cancels
//     most of its requests before an answer (rapid reset);
//   - reqFramer (framing.go) finds the HTTP/1.1 requests with both
//     Content-Length and Transfer-Encoding that net/http hides.
//
// Lock order: connLimiter.mu and connGuard.mu are leaves; no I/O is done
// under either (a guard closes its connection after unlocking).

// connLimiter counts the client connections of a Server's listeners and
// refuses those past the caps. Its per-address table holds only the
// addresses that have connections open, so it is bounded by the cap.
type connLimiter struct {
	max, perIP int // ≤ 0: no cap
	m          *connMetrics
	open       atomic.Int64

	mu   sync.Mutex
	byIP map[netip.Addr]int // guarded by mu
}

func newConnLimiter(sc edge.ServerConfig, m *connMetrics) *connLimiter {
	return &connLimiter{max: sc.MaxConnections, perIP: sc.MaxConnectionsPerIP, m: m, byIP: map[netip.Addr]int{}}
}

// clientKey is the address a client's connections are counted under: its
// IP, or for IPv6 its /64 (one host commonly holds a whole /64). The zero
// Addr for a connection that is not over IP.
func clientKey(addr net.Addr) netip.Addr {
	var ap netip.AddrPort
	switch a := addr.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		return netip.Addr{}
	}
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		ip = netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return ip
}

// admit counts a new connection from addr, or reports the cap it meets
// (and counts the rejection). A counted connection must be released once.
func (l *connLimiter) admit(addr net.Addr) (key netip.Addr, ok bool) {
	if n := l.open.Add(1); l.max > 0 && n > int64(l.max) {
		l.open.Add(-1)
		l.m.rejectedTotal.Inc()
		return netip.Addr{}, false
	}
	key = clientKey(addr)
	if l.perIP > 0 && key.IsValid() {
		l.mu.Lock()
		n := l.byIP[key]
		if n >= l.perIP {
			l.mu.Unlock()
			l.open.Add(-1)
			l.m.rejectedPerIP.Inc()
			return netip.Addr{}, false
		}
		l.byIP[key] = n + 1
		l.mu.Unlock()
	}
	l.m.open.Inc()
	return key, true
}

// release uncounts a connection that admit counted under key.
func (l *connLimiter) release(key netip.Addr) {
	if l.perIP > 0 && key.IsValid() {
		l.mu.Lock()
		if n := l.byIP[key] - 1; n > 0 {
			l.byIP[key] = n
		} else {
			delete(l.byIP, key)
		}
		l.mu.Unlock()
	}
	l.open.Add(-1)
	l.m.open.Dec()
}

// crowded reports whether addr already holds half its per-address share:
// QUIC then validates a new connection's source address (a Retry round
// trip) before it counts, so that spoofed Initial packets cannot use up a
// victim address's share.
func (l *connLimiter) crowded(addr net.Addr) bool {
	key := clientKey(addr)
	if l.perIP <= 0 || !key.IsValid() {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byIP[key] >= (l.perIP+1)/2
}

// refuse closes a connection refused at accept with a reset rather than
// a FIN, so that a flood of refused connections leaves no TIME_WAIT.
func refuse(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// limitListener admits the connections of a net/http server's listener.
// With framed, each connection follows its requests' framing (reqFramer).
type limitListener struct {
	net.Listener
	l       *connLimiter
	framed  bool
	maxHead int // net/http's header limit, for the framer
	// sendTimeout is server.send_timeout (see sendDeadline).
	sendTimeout time.Duration
}

// Accept returns the next admitted connection; refused ones are closed.
func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, ok := ll.l.admit(c.RemoteAddr())
		if !ok {
			refuse(c)
			continue
		}
		cc := &clientConn{Conn: c, l: ll.l, key: key}
		cc.send.timeout = ll.sendTimeout
		if ll.framed {
			cc.fr = newReqFramer(ll.maxHead)
		}
		return cc, nil
	}
}

// clientConn is an admitted connection: closing it releases its count.
type clientConn struct {
	net.Conn
	l      *connLimiter
	key    netip.Addr
	fr     *reqFramer // nil unless framed
	send   sendDeadline
	closed atomic.Bool
}

// Write writes p within the connection's send timeout.
func (c *clientConn) Write(p []byte) (int, error) { return c.send.write(c.Conn, p) }

// sendChunk is the most a write hands the kernel at once under a send
// timeout, so that a large answer renews its deadline as it goes.
const sendChunk = 256 << 10

// sendDeadline is a connection's send timeout (server.send_timeout):
// before its writes the write deadline moves to timeout from now (at most
// every renewEvery), and they go out in chunks of sendChunk, so that a
// write fails when the client took nothing for about timeout however
// large the answer, and never while it keeps reading (nginx's
// send_timeout counts the same way). A client that stops reading (a
// slow-read attack) then holds its connection, its goroutine and its
// socket buffer no longer. The zero timeout sets no deadline. Safe for
// concurrent use.
type sendDeadline struct {
	timeout time.Duration
	renewed atomic.Int64 // when the deadline last moved, in unix ns
}

// renew moves c's write deadline to timeout from now, unless it moved
// within the last renewEvery (a quarter of the timeout, at most a second:
// moving it costs a runtime timer update, so not on every write).
func (s *sendDeadline) renew(c net.Conn) {
	if s.timeout <= 0 {
		return
	}
	now := time.Now()
	every := min(s.timeout/4, time.Second)
	if last := s.renewed.Load(); now.UnixNano()-last < int64(every) {
		return
	}
	s.renewed.Store(now.UnixNano())
	c.SetWriteDeadline(now.Add(s.timeout))
}

// write writes p to c in chunks, renewing the deadline before each.
// What the socket takes at once goes first in one write, however large:
// on loopback each write pushes its bytes through to the reader, so a
// 1 MiB answer in four 256 KiB writes cost 242-255 µs of CPU per hit
// against 173-184 µs in one (wrk, 3 interleaved runs); the chunks are
// for what has to wait for the client.
func (s *sendDeadline) write(c net.Conn, p []byte) (n int, err error) {
	if s.timeout <= 0 {
		return c.Write(p)
	}
	if len(p) > sendChunk {
		s.renew(c)
		if n, err = writeNow(c, p); err != nil || n == len(p) {
			return n, err
		}
		p = p[n:]
	}
	for {
		s.renew(c)
		m := min(len(p), sendChunk)
		k, err := c.Write(p[:m])
		n += k
		if err != nil || m == len(p) {
			return n, err
		}
		p = p[m:]
	}
}

// writeNow writes what of p the socket c takes without waiting, in one
// system call; n is 0, and err nil, when it takes nothing now or c is not
// a socket it can write to so.
func writeNow(c net.Conn, p []byte) (n int, err error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, nil
	}
	var werr error
	if err := raw.Write(func(fd uintptr) bool {
		for {
			k, e := syscall.Write(int(fd), p)
			if e == syscall.EINTR {
				continue
			}
			if k > 0 {
				n = k
			}
			if e != nil && e != syscall.EAGAIN {
				werr = e
			}
			return true // never wait here: the chunks do, within the deadline
		}
	}); err != nil {
		return n, err
	}
	return n, werr
}

// sendConn is a connection whose body goes out with sendfile
// (store.BodyReader.WriteTo): the raw socket for the kernel, and the
// send timeout renewed between the chunks it sends.
type sendConn struct {
	net.Conn
	send *sendDeadline
}

// RenewWriteDeadline renews the send timeout (store.DeadlineRenewer).
func (c sendConn) RenewWriteDeadline() { c.send.renew(c.Conn) }

// SyscallConn is the socket's, for sendfile.
func (c sendConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("listen: not a socket")
	}
	return sc.SyscallConn()
}

func (c *clientConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.fr != nil && n > 0 {
		c.fr.feed(p[:n])
	}
	return n, err
}

// Close closes the connection and releases its count, once.
func (c *clientConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c.key)
	}
	return err
}

// CloseWrite half-closes the connection, as net/http does on a *net.TCPConn.
func (c *clientConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *clientConn) framer() *reqFramer { return c.fr }

// framerKey carries a connection's *reqFramer in its requests' contexts.
type framerKey struct{}

// framerContext is a plain server's ConnContext: it makes a framed
// connection's framer known to its requests.
func framerContext(ctx context.Context, c net.Conn) context.Context {
	if f, ok := c.(interface{ framer() *reqFramer }); ok && f.framer() != nil {
		return context.WithValue(ctx, framerKey{}, f.framer())
	}
	return ctx
}

// The rapid-reset guard: a connection is closed once resetLimit of its
// last resetWindow requests were cancelled by the client before any
// answer. A browser cancels requests when the user navigates away or
// scrolls past lazy images: tens at a time, among requests that it lets
// finish, and it rarely has more than 100 in flight on one connection.
// HTTP/2 rapid reset (CVE-2023-44487) and its HTTP/3 equivalent cancel
// nearly every request, so the guard trips after about 100 of them: an
// attacker pays a new TLS or QUIC handshake (within the per-address
// connection cap) for each 100 abandoned requests, instead of none.
// Counting requests rather than time keeps the rule free of clocks and
// equally fair to slow and fast clients.
const (
	resetWindow = 200
	resetLimit  = 100
)

// connGuard is one HTTP/2 or HTTP/3 connection's record of its recent
// requests' outcomes.
type connGuard struct {
	close func(proto int) // closes the connection; proto is the ProtoMajor of the request that tripped

	mu      sync.Mutex
	ring    [(resetWindow + 63) / 64]uint64 // bit i: request i (mod resetWindow) was reset
	next    int
	resets  int
	tripped bool
}

// connGuardKey carries a connection's *connGuard in its requests' contexts.
type connGuardKey struct{}

// record adds one request's outcome and closes the connection when the
// window holds too many resets.
func (g *connGuard) record(reset bool, proto int) {
	g.mu.Lock()
	w, bit := g.next/64, uint64(1)<<(g.next%64)
	if g.ring[w]&bit != 0 {
		g.resets--
	}
	if reset {
		g.ring[w] |= bit
		g.resets++
	} else {
		g.ring[w] &^= bit
	}
	g.next = (g.next + 1) % resetWindow
	trip := !g.tripped && g.resets >= resetLimit
	if trip {
		g.tripped = true
	}
	g.mu.Unlock()
	if trip {
		g.close(proto)
	}
}

// guardResets records, for each request on a guarded connection, whether
// its client went away (its context ended) before the response started.
// On HTTP/2 and HTTP/3 it also holds each answer to the send timeout
// (server.send_timeout; 0 for none, see watchedWriter.send).
func guardResets(next http.Handler, sendTimeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g, _ := r.Context().Value(connGuardKey{}).(*connGuard)
		if g == nil {
			next.ServeHTTP(w, r)
			return
		}
		ww := &watchedWriter{ResponseWriter: w}
		if r.ProtoMajor >= 2 && sendTimeout > 0 {
			if d, ok := w.(writeDeadliner); ok {
				ww.send, ww.deadliner = sendTimeout, d
			}
		}
		defer func() { g.record(!ww.started && r.Context().Err() != nil, r.ProtoMajor) }()
		next.ServeHTTP(ww, r)
	})
}

// writeDeadliner is a stream's writer with a write deadline: HTTP/2's
// (net/http resets the stream when it passes) and HTTP/3's (quic-go's
// stream write fails).
type writeDeadliner interface {
	SetWriteDeadline(time.Time) error
}

// watchedWriter notes whether a final response was started and, on an
// HTTP/2 or HTTP/3 stream, holds the answer to the send timeout.
//
// The send timeout on those protocols: a client can keep reading the
// connection yet never grant the stream flow-control credit (no
// WINDOW_UPDATE, no MAX_STREAM_DATA), and the stream's writes then wait
// for ever, holding the handler's goroutine and what it holds, which the
// connection's own deadline (sendDeadline) cannot see: the connection
// makes progress. So a stream gets a write deadline of send from its
// first write of a body (the time an answer waits for upstream before it
// is not counted, and a header alone needs no flow-control credit),
// moved to send from now before the writes of a long answer (at most
// every send/4, at most every second), which go in chunks of sendChunk:
// the stream is reset when a write made no progress for about send, and
// never while the client takes the answer, however large. An answer
// that then sends nothing for send (a stream from the origin with such
// a pause) is reset too, where the origin's read_timeout (30 s by
// default) would have ended it first.
type watchedWriter struct {
	http.ResponseWriter
	started   bool
	send      time.Duration  // the send timeout; 0 for none
	deadliner writeDeadliner // the stream's, with send
	renewed   time.Time      // when the deadline last moved; zero before the first write
}

func (w *watchedWriter) WriteHeader(code int) {
	if code >= 200 {
		w.started = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *watchedWriter) Write(p []byte) (n int, err error) {
	w.started = true
	if w.send <= 0 {
		return w.ResponseWriter.Write(p)
	}
	for {
		w.renew()
		m := min(len(p), sendChunk)
		k, err := w.ResponseWriter.Write(p[:m])
		n += k
		if err != nil || m == len(p) {
			return n, err
		}
		p = p[m:]
	}
}

// renew moves the stream's write deadline to send from now, unless it
// moved within the last send/4 (at most a second): on HTTP/2 a move is a
// message to the connection's goroutine, so not on every write.
func (w *watchedWriter) renew() {
	now := time.Now()
	if now.Sub(w.renewed) < min(w.send/4, time.Second) {
		return
	}
	w.renewed = now
	w.deadliner.SetWriteDeadline(now.Add(w.send))
}

// Flush sends what is buffered (a 200 header at least).
func (w *watchedWriter) Flush() {
	w.started = true
	if w.send > 0 {
		w.renew()
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *watchedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
