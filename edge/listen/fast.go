package listen

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/policy"
)

// The fast front (server.front "fast"): see the package doc for what it
// answers and how it lends requests to net/http. The reader is a
// conservative subset of HTTP/1.1: it accepts only what net/http accepts
// and reads the same way, and refers every doubt (bare LF, obs-fold,
// control characters, duplicate Host, an unusual target or version) to
// net/http, which then answers it.

// fastFront is the fast HTTP/1.1 server of one listener.
type fastFront struct {
	cfg   edge.ServerConfig
	h     *edge.Handler // nil: no fast path, every request goes to net/http
	log   *slog.Logger
	now   func() time.Time // the Date clock; the cache's clock is h's
	inner *http.Server
	hand  *handoffListener
	lim   *connLimiter // counts connections at accept
	// watchAfter is how long a handler runs before a read watches its
	// connection (see the constant watchAfter); tests shorten it.
	watchAfter time.Duration

	closing atomic.Bool
	mu      sync.Mutex
	conns   map[*fastConn]struct{}
	wg      sync.WaitGroup
	date    dateCache
}

// dateField is a formatted Date header line, valid for one second.
type dateField struct {
	sec  int64
	line []byte
}

// Connection states, for a graceful Shutdown.
const (
	connIdle      = iota // waiting for a request's first byte
	connActive           // reading a request or writing a response, or lent to net/http for one request
	connPermanent        // given to net/http for good: its Shutdown drains it
)

func newFastFront(cfg edge.ServerConfig, handler http.Handler, inner *http.Server, lim *connLimiter, log *slog.Logger) *fastFront {
	f := &fastFront{cfg: cfg, log: log, now: time.Now, inner: inner, lim: lim, conns: map[*fastConn]struct{}{}, watchAfter: watchAfter}
	f.h, _ = handler.(*edge.Handler)
	inner.ConnState = func(c net.Conn, s http.ConnState) {
		if hc, ok := c.(*handoffConn); ok {
			hc.idle.Store(s == http.StateIdle)
		}
	}
	return f
}

// serve accepts connections on ln until it is closed.
func (f *fastFront) serve(ln net.Listener) error {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if f.closing.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of file descriptors and the like: wait, as net/http.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		client, ok := f.lim.admit(nc.RemoteAddr())
		if !ok {
			refuse(nc)
			continue
		}
		c := &fastConn{f: f, nc: nc, client: client, buf: make([]byte, 4096)}
		c.send.timeout = f.cfg.SendTimeout
		f.mu.Lock()
		if f.closing.Load() {
			f.mu.Unlock()
			nc.Close()
			f.lim.release(client)
			continue
		}
		f.conns[c] = struct{}{}
		f.wg.Add(1)
		f.mu.Unlock()
		go c.serve()
	}
}

// shutdown closes idle connections and waits for the others to finish
// their request (those lent to net/http come back at their request
// boundary and are closed then) until ctx ends, then shuts net/http's
// server down. The listener must be closed already.
func (f *fastFront) shutdown(ctx context.Context) error {
	f.closing.Store(true)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var err error
	for {
		busy := false
		var idle []net.Conn
		f.mu.Lock()
		for c := range f.conns {
			switch c.state.Load() {
			case connIdle:
				idle = append(idle, c.nc)
				busy = true // until its goroutine has gone
			case connActive:
				busy = true
			}
		}
		f.mu.Unlock()
		for _, nc := range idle { // not under f.mu: no I/O under a lock
			nc.Close()
		}
		if !busy {
			break
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-tick.C:
			continue
		}
		break
	}
	if ierr := f.inner.Shutdown(ctx); err == nil {
		err = ierr
	}
	return err
}

// close closes every connection at once and waits for their goroutines.
func (f *fastFront) close() {
	f.closing.Store(true)
	f.inner.Close()
	f.hand.Close()
	f.mu.Lock()
	all := make([]net.Conn, 0, len(f.conns))
	for c := range f.conns {
		all = append(all, c.nc)
	}
	f.mu.Unlock()
	for _, nc := range all {
		nc.Close()
	}
	f.wg.Wait()
}

// dateLine returns the Date header line for the current second.
func (f *fastFront) dateLine() []byte { return f.date.line(f.now()) }

// dateCache is the Date header line of the current second, made once a
// second for every connection of a front.
type dateCache struct{ p atomic.Pointer[dateField] }

// line returns the Date header line for now's second.
func (c *dateCache) line(now time.Time) []byte {
	sec := now.Unix()
	if d := c.p.Load(); d != nil && d.sec == sec {
		return d.line
	}
	line := make([]byte, 0, 64)
	line = append(line, "Date: "...)
	line = now.UTC().AppendFormat(line, http.TimeFormat)
	line = append(line, "\r\n"...)
	c.p.Store(&dateField{sec: sec, line: line})
	return line
}

// fastConn is one client connection of the fast front.
type fastConn struct {
	f      *fastFront
	nc     net.Conn
	client netip.Addr // what the connection is counted under (connLimiter)
	state  atomic.Int32
	buf    []byte // read buffer; buf[r:w] is unread
	r, w   int
	wbuf   []byte
	vec    net.Buffers
	vecArr [2][]byte
	hit    edge.Hit // the hit being answered; reused by the connection's requests
	// send is the connection's send timeout, for the hits written here
	// and the requests lent to net/http alike.
	send sendDeadline
	// For the requests served through the handler here (fast_miss.go),
	// made with the first: the base of their contexts, the client's
	// address as a string, the timer that starts the read that watches
	// the connection once the handler has run for watchAfter, and where
	// that read says what it got. watchMu guards what the timer's
	// goroutine reads: the request's context, and whether serveMiss has
	// set the deadline that ends the watch (watchEnded). It is held over
	// SetReadDeadline only, never over a read or a write.
	base       context.Context
	remote     string
	watchTimer *time.Timer
	watched    chan watchResult
	watchMu    sync.Mutex
	watchCtx   *reqContext
	watchEnded bool
	// The writer's buffers besides wbuf (see fastWriter): body bytes
	// held before the header, and the header's fields.
	pend, fields []byte
	// The writer of the request being served through the handler and
	// its emptied header map, kept for the next (see serveMiss).
	mw  fastWriter
	hdr http.Header
}

// request is what the fast reader keeps of a request's header.
type request struct {
	head   bool   // HEAD, else GET
	target []byte // origin-form request target
	host   []byte // Host field value
	proto  []byte // the last X-Forwarded-Proto field value, nil if none
	ae     []byte // the Accept-Encoding field value, nil if none
	// What the access log says of the client, as ServeHTTP reads it:
	// the first User-Agent, Referer and traceparent, the one
	// X-Forwarded-For.
	userAgent, referer, forwardedFor, traceparent []byte
	close                                         bool // Connection: close
	clientCC                                      bool // a Cache-Control field is present
	plain                                         bool // nothing in the header rules out a stored answer
	bodyless                                      bool // no Content-Length or Transfer-Encoding: the request ends with its header
	lendable                                      bool // Expect or Upgrade: only net/http answers it
}

func (c *fastConn) serve() {
	f := c.f
	defer func() {
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
		f.lim.release(c.client) // the connection is closed by now, or lent for good and closed
		f.wg.Done()
	}()
	sc := f.cfg
	limit := sc.MaxHeaderBytes
	// The first request's header must be complete within
	// read_header_timeout of the accept, as net/http has it; a later
	// one within read_header_timeout of its first byte. Partial reads
	// never extend it.
	var acceptDeadline time.Time
	if sc.ReadHeaderTimeout > 0 {
		acceptDeadline = time.Now().Add(sc.ReadHeaderTimeout)
	}
	first := true
	for {
		var headDeadline time.Time // zero: the header came without a wait
		if first {
			headDeadline = acceptDeadline
		}
		if c.r == c.w {
			c.r, c.w = 0, 0
			c.state.Store(connIdle)
			if f.closing.Load() {
				c.nc.Close()
				return
			}
			if first {
				if !acceptDeadline.IsZero() {
					c.nc.SetReadDeadline(acceptDeadline)
				}
			} else if sc.IdleTimeout > 0 {
				c.nc.SetReadDeadline(time.Now().Add(sc.IdleTimeout))
			}
			n, err := c.nc.Read(c.buf)
			c.state.Store(connActive)
			if err != nil && n == 0 {
				c.nc.Close()
				return
			}
			c.w = n
		}
		c.state.Store(connActive)
		end, next, verdict := scanHead(c.buf[c.r:c.w], 0, limit)
		if verdict == headMore {
			if !first && sc.ReadHeaderTimeout > 0 {
				headDeadline = time.Now().Add(sc.ReadHeaderTimeout)
				c.nc.SetReadDeadline(headDeadline)
			}
			for verdict == headMore {
				if c.w == len(c.buf) {
					c.makeRoom(limit)
				}
				if c.w == len(c.buf) {
					verdict = headRefer // cannot hold it: net/http answers 431
					break
				}
				n, err := c.nc.Read(c.buf[c.w:])
				c.w += n
				if err != nil {
					// A timeout, a reset or EOF before the header ended:
					// net/http closes silently too.
					c.nc.Close()
					return
				}
				end, next, verdict = scanHead(c.buf[c.r:c.w], next, limit)
			}
		}
		scanned := verdict
		first = false
		var req request
		if verdict == headDone {
			verdict = parseHead(c.buf[c.r:c.r+end], &req)
		}
		if verdict != headDone || !req.bodyless {
			// The rest of the connection. A header that has not ended
			// keeps its deadline: net/http must not restart the clock.
			var keep time.Time
			if scanned != headDone {
				keep = headDeadline
			}
			c.lendRest(c.buf[c.r:c.w], keep)
			return
		}
		if !req.plain || f.h == nil || !c.serveHit(&req) {
			if f.h != nil && !req.lendable {
				ctx := newReqContext(c.missContext())
				if r := c.newRequest(c.buf[c.r:c.r+end], &req, ctx); r != nil {
					c.r += end
					if !c.serveMiss(r, req.head, ctx) {
						return
					}
					continue
				}
			}
			pending := c.buf[c.r : c.r+end]
			c.r += end
			if !c.lend(pending) {
				return
			}
			continue
		}
		c.r += end
		if req.close || f.closing.Load() {
			c.nc.Close()
			return
		}
	}
}

// makeRoom moves the unread bytes to the front of the buffer, or grows it
// up to what a header of limit bytes needs.
func (c *fastConn) makeRoom(limit int) {
	if c.r > 0 {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
		return
	}
	if len(c.buf) >= limit+1 {
		return
	}
	nb := make([]byte, min(2*len(c.buf), limit+1))
	c.w = copy(nb, c.buf[:c.w])
	c.buf = nb
}

// serveHit answers req from the cache if it is a plain fresh hit.
func (c *fastConn) serveHit(req *request) bool {
	h := c.f.h
	x := &c.hit
	if !h.LookupHit(edge.HitRequest{Head: req.head, Host: req.host, Target: req.target, ForwardedProto: req.proto,
		CacheControl: req.clientCC, Remote: c.nc.RemoteAddr(), AcceptEncoding: req.ae, UserAgent: req.userAgent, Referer: req.referer,
		ForwardedFor: req.forwardedFor, Traceparent: req.traceparent}, x) {
		return false
	}
	b := x.AppendHead(c.wbuf[:0], c.f.dateLine)
	if req.close {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	body := x.Body()
	sent := len(body)
	var err error
	c.send.renew(c.nc)
	switch {
	case x.BodyOnDisk() && x.BodySize() <= 32<<10:
		// Read from its file behind the header: one write, as below.
		if b, err = x.AppendBody(b); err == nil {
			_, err = c.nc.Write(b)
		}
	case x.BodyOnDisk():
		// The header, then the body straight from its file (sendfile).
		if _, err = c.nc.Write(b); err == nil {
			var n int64
			n, err = x.WriteBody(sendConn{Conn: c.nc, send: &c.send})
			sent = int(n)
		}
	case len(body) <= 32<<10:
		b = append(b, body...)
		_, err = c.nc.Write(b)
	default:
		// The header and the body's first chunk in one write; the rest
		// in chunks, each within the send timeout.
		first := body[:min(len(body), sendChunk)]
		c.vecArr = [2][]byte{b, first}
		c.vec = c.vecArr[:]
		_, err = c.vec.WriteTo(c.nc)
		c.vecArr = [2][]byte{}
		if err == nil && len(first) < len(body) {
			_, err = c.send.write(c.nc, body[len(first):])
		}
	}
	if cap(b) <= 64<<10 {
		c.wbuf = b[:0]
	}
	h.Delivered(x, sent)
	if err != nil {
		// The client is gone; the next read ends the connection.
		c.nc.Close()
	}
	return true
}

// lendRest gives the rest of the connection to net/http, with pending as
// the first bytes it reads, and waits until net/http has closed it. A
// non-zero headDeadline bounds the reading of the header that pending
// starts. net/http's reads are followed by a reqFramer, so that a request
// with faulty framing is refused (Server.plainGuard).
func (c *fastConn) lendRest(pending []byte, headDeadline time.Time) {
	hc := &handoffConn{Conn: c.nc, send: &c.send, pending: pending, back: make(chan bool, 1),
		fr: newReqFramer(c.f.cfg.MaxHeaderBytes), headDeadline: headDeadline}
	c.state.Store(connPermanent)
	if !c.f.hand.give(hc) {
		c.nc.Close()
		return
	}
	<-hc.back
}

// lend hands the connection to net/http with pending as the first bytes it
// reads: exactly one request without a body. The connection comes back
// when net/http is at the next request boundary; lend reports whether it
// came back.
func (c *fastConn) lend(pending []byte) bool {
	hc := &handoffConn{Conn: c.nc, send: &c.send, pending: pending, once: true, back: make(chan bool, 1)}
	c.state.Store(connActive)
	if !c.f.hand.give(hc) {
		c.nc.Close()
		return false
	}
	if !<-hc.back {
		return false
	}
	if len(hc.stash) > 0 {
		// Bytes net/http's background read took: they follow what the
		// buffer holds.
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
		if c.w+len(hc.stash) > len(c.buf) {
			nb := make([]byte, c.w+len(hc.stash)+4096)
			copy(nb, c.buf[:c.w])
			c.buf = nb
		}
		c.w += copy(c.buf[c.w:], hc.stash)
	}
	return true
}

// handoffConn is a connection lent to net/http: it reads the bytes the fast
// reader already took first, then the connection.
type handoffConn struct {
	net.Conn
	send    *sendDeadline // the fast connection's
	pending []byte
	once    bool
	fr      *reqFramer // follows net/http's reads on a connection lent for good
	// headDeadline, when set, bounds the first read deadline net/http
	// sets: that of the header that pending starts.
	headDeadline time.Time
	stash        []byte      // bytes after the lent request, for the fast reader
	idle         atomic.Bool // net/http is between requests (ConnState)
	handback     atomic.Bool
	closeOnce    sync.Once
	back         chan bool // true: returned to the fast reader; false: closed
}

// Write writes p within the connection's send timeout.
func (hc *handoffConn) Write(p []byte) (int, error) { return hc.send.write(hc.Conn, p) }

func (hc *handoffConn) Read(p []byte) (int, error) {
	if len(hc.pending) > 0 {
		n := copy(p, hc.pending)
		hc.pending = hc.pending[n:]
		if hc.fr != nil {
			hc.fr.feed(p[:n])
		}
		return n, nil
	}
	if hc.fr != nil {
		n, err := hc.Conn.Read(p)
		if n > 0 {
			hc.fr.feed(p[:n])
		}
		return n, err
	}
	if hc.once {
		if hc.idle.Load() {
			// The lent request is answered and net/http wants the next:
			// end its connection here and take it back.
			hc.handback.Store(true)
			return 0, io.EOF
		}
		// net/http's background read, which notices a client that
		// leaves (an error here cancels the request's context). Bytes
		// here start the next request, sent before the handler returned:
		// keep them for the fast reader and end the background read
		// without a byte, as net/http stops watching once it has one.
		n, err := hc.Conn.Read(p)
		if n > 0 {
			hc.stash = append(hc.stash, p[:n]...)
			return 0, nil
		}
		return n, err
	}
	return hc.Conn.Read(p)
}

// Close closes the connection, unless net/http ends it at a request
// boundary of a lent request: then it goes back to the fast reader.
func (hc *handoffConn) Close() error {
	var err error
	hc.closeOnce.Do(func() {
		if hc.handback.Load() {
			hc.back <- true
			return
		}
		err = hc.Conn.Close()
		hc.back <- false
	})
	return err
}

// SetReadDeadline sets the read deadline; the first one that net/http
// sets (for the header it reads first) is kept within headDeadline.
func (hc *handoffConn) SetReadDeadline(t time.Time) error {
	if d := hc.headDeadline; !d.IsZero() {
		hc.headDeadline = time.Time{}
		if t.IsZero() || t.After(d) {
			t = d
		}
	}
	return hc.Conn.SetReadDeadline(t)
}

func (hc *handoffConn) framer() *reqFramer { return hc.fr }

// CloseWrite half-closes the connection, as net/http does on a *net.TCPConn.
func (hc *handoffConn) CloseWrite() error {
	if cw, ok := hc.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// handoffListener is the listener of the net/http server behind the fast
// front: its connections are the ones the fast front lends.
type handoffListener struct {
	addr      net.Addr
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// give passes c to net/http; false if its server has stopped.
func (l *handoffListener) give(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

// Accept returns the next lent connection.
func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept. It is safe to call more than once.
func (l *handoffListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

// Addr is the fast front's listening address.
func (l *handoffListener) Addr() net.Addr { return l.addr }

// Verdicts of the header reader.
const (
	headMore  = iota // the header has not ended yet
	headDone         // a complete header, or a request parsed
	headRefer        // refer to net/http
)

// scanHead looks for the end of a request header in p, resuming at from
// (where the previous call on a shorter p stopped, 0 at first). It refers
// to net/http a bare LF, a header of more than limit bytes, and blank
// lines before the request line. With headMore, next is where to resume.
func scanHead(p []byte, from, limit int) (end, next, verdict int) {
	if from == 0 && len(p) > 0 && (p[0] == '\r' || p[0] == '\n') {
		return 0, 0, headRefer
	}
	for i := from; ; {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			if len(p) > limit {
				return 0, 0, headRefer
			}
			return 0, i, headMore
		}
		j += i
		if j == 0 || p[j-1] != '\r' {
			return 0, 0, headRefer
		}
		if j >= 3 && p[j-2] == '\n' && p[j-3] == '\r' {
			if j+1 > limit {
				return 0, 0, headRefer
			}
			return j + 1, 0, headDone
		}
		i = j + 1
	}
}

// parseHead reads a complete request header (ending in CRLF CRLF) into req.
// It returns headRefer for anything that net/http should see: not GET or
// HEAD over HTTP/1.1 with an origin-form target, duplicate or missing
// Host, an unusual field or character.
func parseHead(p []byte, req *request) int {
	line, rest := cutLine(p)
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		line = line[4:]
	case bytes.HasPrefix(line, []byte("HEAD ")):
		req.head = true
		line = line[5:]
	default:
		return headRefer
	}
	sp := bytes.IndexByte(line, ' ')
	if sp < 1 || string(line[sp+1:]) != "HTTP/1.1" || !validTarget(line[:sp]) {
		return headRefer
	}
	req.target = line[:sp]
	req.plain, req.bodyless = true, true
	hosts := 0
	for len(rest) > 2 {
		line, rest = cutLine(rest)
		colon := bytes.IndexByte(line, ':')
		if colon < 1 || !validName(line[:colon]) {
			return headRefer // includes obs-fold: a line starting with SP or HTAB
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if !validValue(value) {
			return headRefer
		}
		switch {
		case equalFold(name, "host"):
			hosts++
			if !validHost(value) {
				return headRefer
			}
			req.host = value
		case equalFold(name, "connection"):
			for len(value) > 0 {
				var tok []byte
				if i := bytes.IndexByte(value, ','); i >= 0 {
					tok, value = trimOWS(value[:i]), value[i+1:]
				} else {
					tok, value = trimOWS(value), nil
				}
				switch {
				case equalFold(tok, "close"):
					req.close = true
				case len(tok) == 0, equalFold(tok, "keep-alive"):
				default:
					return headRefer // upgrade and friends
				}
			}
		case equalFold(name, "content-length"), equalFold(name, "transfer-encoding"):
			req.bodyless = false
			return headRefer
		case equalFold(name, "cache-control"):
			req.clientCC = true
		case equalFold(name, "accept-encoding"):
			if req.ae != nil {
				req.plain = false // two lines: ServeHTTP reads them both
			}
			req.ae = value
		case equalFold(name, "x-forwarded-proto"):
			req.proto = value // the last line counts, as ServeHTTP reads it (edge.HitRequest)
		case equalFold(name, "user-agent"):
			if req.userAgent == nil {
				req.userAgent = value
			}
		case equalFold(name, "referer"):
			if req.referer == nil {
				req.referer = value
			}
		case equalFold(name, "x-forwarded-for"):
			if req.forwardedFor != nil {
				req.plain = false // a chain over several lines: ServeHTTP reads it
			}
			req.forwardedFor = value
		case equalFold(name, "traceparent"):
			if req.traceparent == nil {
				req.traceparent = value
			}
		case equalFold(name, "range"), equalFold(name, "if-match"), equalFold(name, "if-none-match"),
			equalFold(name, "if-modified-since"), equalFold(name, "if-unmodified-since"), equalFold(name, "if-range"),
			equalFold(name, "authorization"):
			req.plain = false
		case equalFold(name, "expect"), equalFold(name, "upgrade"):
			req.plain, req.lendable = false, true
		}
	}
	if hosts != 1 {
		return headRefer
	}
	return headDone
}

// cutLine splits p at its first CRLF.
func cutLine(p []byte) (line, rest []byte) {
	i := bytes.IndexByte(p, '\n')
	if i < 1 {
		return p, nil
	}
	return p[:i-1], p[i+1:]
}

// trimOWS cuts a field value's optional white space (RFC 9110 §5.6.3)
// from both ends: strings.Trim(v, " \t") without the cutset's set made on
// every call (1.4 % of an all-miss profile went to strings.Trim, here
// and in the origin client).
func trimOWS[T string | []byte](v T) T {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// equalFold compares an ASCII field name with a lower-case one.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// validName reports whether a field name is a token (RFC 9110 §5.1).
func validName(b []byte) bool {
	for _, c := range b {
		if !policy.IsTchar(c) {
			return false
		}
	}
	return len(b) > 0
}

// validValue reports whether a field value has no control characters
// but HTAB (so no CR, LF or NUL).
func validValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validHost accepts a plain reg-name or IPv4 host with an optional port:
// letters, digits, '-', '.', and one ':' followed by a port number (at
// most 65535). Anything fancier (IPv6 literals, user info,
// percent-encoding, an empty or out-of-range port) goes to net/http and
// edge's ServeHTTP, which answer a malformed Host with 400; whatever it
// accepts, ServeHTTP routes (FuzzParseHead checks it).
func validHost(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	port := -1
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '-', c == '.':
			if port >= 0 {
				return false
			}
		case '0' <= c && c <= '9':
		case c == ':' && port < 0 && i > 0:
			port = i
		default:
			return false
		}
	}
	return port != len(b)-1 && (port < 0 || validPort(b[port+1:]))
}

// validTarget accepts an origin-form target of unreserved, sub-delims,
// ':', '@', '/', '?' and well-formed percent-escapes.
func validTarget(b []byte) bool {
	if len(b) == 0 || b[0] != '/' {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			continue
		}
		switch c {
		case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@', '/', '?':
			continue
		case '%':
			if i+2 < len(b) && isHex(b[i+1]) && isHex(b[i+2]) {
				i += 2
				continue
			}
		}
		return false
	}
	return true
}

// validPort reports whether p is a decimal port number up to 65535 (at
// most five digits).
func validPort(p []byte) bool {
	if len(p) == 0 || len(p) > 5 {
		return false
	}
	n := 0
	for _, c := range p {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
