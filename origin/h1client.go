package origin

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The lean HTTP/1.1 client.
//
// A Pool whose servers are all plain http:// sends its simple requests
// (GET or HEAD, no body, no Upgrade, Expect or Connection header; see
// plainRequest) through h1Client rather than http.Transport. The request is
// written and the response read on the caller's goroutine, on a pooled
// keep-alive connection with a bufio.Reader and Writer of its own, where
// the Transport runs two goroutines per connection and hands every request
// and response between them over channels. Timeouts are connection
// deadlines rather than timers and contexts: the headers' wait is the
// sooner of the pool's timeout and the try's, each network read of the body
// read_timeout; the caller's cancellation sets a past deadline through
// the context's own AfterFunc when it has one (see afterFuncer), else
// context.AfterFunc, only when its context can be canceled at all.
//
// The response is parsed by http.ReadResponse, the Transport's own parser,
// so that what an origin can send is accepted or refused exactly as before
// (status line, header limits, obs-fold, Content-Length and
// Transfer-Encoding rules, chunked bodies and trailers); the client keeps
// the Transport's connection rules around it: 1xx responses skipped under
// one header byte limit, a connection reused only when the body was read to
// its end, neither side said close and no stray byte follows the response,
// and a request that fails on a reused connection before any byte of
// answer retried once on a new one (the origin closed it while idle),
// without counting against the server.

// idleConnTimeout is how long an idle connection is kept, as the
// Transport's IdleConnTimeout.
const idleConnTimeout = 90 * time.Second

// maxResponseHeaderBytes bounds the bytes read before the final response's
// headers end, 1xx responses included: the Transport's default.
const maxResponseHeaderBytes = 10 << 20

// maxInformational is how many 1xx answers a caller's Got1xxResponse
// trace is given before the final answer, with either client: the header
// byte limit starts again after each one the trace takes (the
// Transport's rule), so without a count an origin could send 1xx answers
// for as long as the try waits, each relayed by the edge to its client.
// Real origins send one or two.
const maxInformational = 10

// errTooManyInformational ends a try whose origin sent more.
var errTooManyInformational = fmt.Errorf("origin sent more than %d informational (1xx) answers", maxInformational)

// errHeaderLimit is the error of a response whose headers exceed
// maxResponseHeaderBytes.
var errHeaderLimit = fmt.Errorf("net/http: server response headers exceeded %d bytes; aborted", maxResponseHeaderBytes)

// errUnexpected101 is the error of a 101 answer to a request that asked
// for no upgrade.
var errUnexpected101 = errors.New("101 Switching Protocols to a request without Upgrade")

// aLongTimeAgo is a deadline in the past: it makes a blocked read or
// write return at once.
var aLongTimeAgo = time.Unix(1, 0)

// h1Conn is one keep-alive connection of the lean client.
type h1Conn struct {
	conn      net.Conn        // counted
	raw       syscall.RawConn // the socket's, for peekIdle; nil if none
	peek      func(fd uintptr) bool
	peekFit   bool    // peek's answer
	peekBuf   [1]byte // peek's buffer
	abort     func()  // the caller's cancellation: marks it and sets a past deadline; made once, as peek
	br        *bufio.Reader
	bw        *bufio.Writer
	limit     int64     // bytes the reader may still read from conn; see Read
	idleSince time.Time // when it went idle
	// bodyWait is read_timeout while a body is read (each Read that
	// goes to the network waits that long at most), 0 while the head
	// is (the exchange's deadline bounds it).
	bodyWait time.Duration
	canceled atomic.Bool // the caller's context ended during the exchange
}

// Read reads from the connection, at most limit bytes in all: the cap on
// a response's headers while they are read, as the Transport's readLimit.
func (c *h1Conn) Read(p []byte) (int, error) {
	if c.limit <= 0 {
		return 0, errHeaderLimit
	}
	if int64(len(p)) > c.limit {
		p = p[:c.limit]
	}
	if c.bodyWait > 0 {
		c.conn.SetReadDeadline(time.Now().Add(c.bodyWait))
		if c.canceled.Load() {
			// A cancellation whose past deadline the line above
			// replaced; one after it sets the past deadline itself.
			c.conn.SetReadDeadline(aLongTimeAgo)
		}
	}
	n, err := c.conn.Read(p)
	c.limit -= int64(n)
	return n, err
}

func (c *h1Conn) close() { c.conn.Close() }

// h1Idle is the idle connections to one address, shared by the pool's
// servers of that address. The most recently used is reused first; those
// idle longer than timeout (idleConnTimeout) are closed whenever the list
// is used, and by a sweep while it holds any, so that a pool that goes
// quiet does not keep its connections (nor, once the origin closed them,
// their sockets in CLOSE_WAIT) until it is closed.
type h1Idle struct {
	addr    string
	max     int           // MaxIdleConnsPerHost
	timeout time.Duration // idleConnTimeout, shorter in tests

	mu     sync.Mutex
	conns  []*h1Conn   // oldest first
	closed bool        // by Pool.Close: no more idle connections
	sweep  *time.Timer // armed while conns is not empty; nil before the first put
	swept  bool        // the sweep is armed
}

func newH1Idle(addr string, max int) *h1Idle {
	return &h1Idle{addr: addr, max: max, timeout: idleConnTimeout}
}

// get returns an idle connection fit for a request (see peekIdle), or
// nil; those found unfit are closed.
func (l *h1Idle) get(now time.Time) *h1Conn {
	for {
		l.mu.Lock()
		stale := l.expireLocked(now)
		var c *h1Conn
		if n := len(l.conns); n > 0 {
			c = l.conns[n-1]
			l.conns[n-1] = nil
			l.conns = l.conns[:n-1]
		}
		l.mu.Unlock()
		closeAll(stale)
		if c == nil || c.peekIdle() {
			return c
		}
		c.close()
	}
}

// put makes c idle, or closes it when the list is full or closed.
func (l *h1Idle) put(c *h1Conn, now time.Time) {
	c.idleSince = now
	l.mu.Lock()
	stale := l.expireLocked(now)
	if l.closed || len(l.conns) >= l.max {
		l.mu.Unlock()
		closeAll(stale)
		c.close()
		return
	}
	l.conns = append(l.conns, c)
	l.armLocked(l.timeout)
	l.mu.Unlock()
	closeAll(stale)
}

// armLocked arms the sweep to run after d, unless it is armed already
// (it then runs no later than the oldest connection's expiry: the list
// only grows newer connections).
func (l *h1Idle) armLocked(d time.Duration) {
	if l.swept {
		return
	}
	l.swept = true
	if l.sweep == nil {
		l.sweep = time.AfterFunc(d, l.sweepExpired)
		return
	}
	l.sweep.Reset(d)
}

// sweepExpired is the sweep: it closes the connections idle longer than
// timeout and runs again when the oldest one left expires.
func (l *h1Idle) sweepExpired() {
	now := time.Now()
	l.mu.Lock()
	l.swept = false
	stale := l.expireLocked(now)
	if len(l.conns) > 0 && !l.closed {
		l.armLocked(max(l.timeout-now.Sub(l.conns[0].idleSince), time.Millisecond))
	}
	l.mu.Unlock()
	closeAll(stale)
}

// expireLocked takes the connections idle longer than idleConnTimeout
// off the list and returns them, to be closed outside the lock.
func (l *h1Idle) expireLocked(now time.Time) []*h1Conn {
	n := 0
	for n < len(l.conns) && now.Sub(l.conns[n].idleSince) >= l.timeout {
		n++
	}
	if n == 0 {
		return nil
	}
	stale := slices.Clone(l.conns[:n])
	l.conns = slices.Delete(l.conns, 0, n)
	return stale
}

// closeIdle closes every idle connection; with final, later ones too.
func (l *h1Idle) closeIdle(final bool) {
	l.mu.Lock()
	conns := l.conns
	l.conns = nil
	if final {
		l.closed = true
	}
	if l.sweep != nil && l.sweep.Stop() {
		l.swept = false
	}
	l.mu.Unlock()
	closeAll(conns)
}

func closeAll(conns []*h1Conn) {
	for _, c := range conns {
		c.close()
	}
}

// plainRequest reports whether the lean client may send req: a GET or HEAD
// without a body, nothing that asks for more than one plain exchange
// (Upgrade, Expect, Connection, a close), and only header fields and a Host
// the Transport would send as they are. Anything else goes through the
// Transport, which sends it, or refuses it, as before.
func plainRequest(req *http.Request) bool {
	if req.Method != http.MethodGet && req.Method != http.MethodHead && req.Method != "" {
		return false
	}
	if (req.Body != nil && req.Body != http.NoBody) || req.ContentLength != 0 || req.Close ||
		len(req.TransferEncoding) != 0 || req.Trailer != nil || req.URL == nil {
		return false
	}
	for k, vv := range req.Header {
		switch k {
		case "Connection", "Upgrade", "Expect", "Content-Length", "Transfer-Encoding", "Trailer", "Host", "Te", "Proxy-Connection":
			return false
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return false
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return false
			}
		}
	}
	return true
}

// plainTarget returns the Host header and request target the lean client
// sends for req ("" for the host: the server's own, or its override), and
// false when either is one the Transport would rewrite or refuse (the
// Transport then decides).
func plainTarget(req *http.Request) (host string, target requestTarget, ok bool) {
	host = req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !validPlainHost(host) {
		return "", requestTarget{}, false
	}
	target = targetOf(req.URL)
	if !plainTargetBytes(target.path) || !plainTargetBytes(target.query) {
		return "", requestTarget{}, false
	}
	return host, target, true
}

// requestTarget is the request target the lean client writes: what
// url.URL.RequestURI returns, in the parts it joins, so that they are
// written one after the other instead. RequestURI built a string of
// them for every miss with a query: BenchmarkRequestTarget (the check
// and the head written) makes no allocation, was one, and takes about
// 132 CPU ns, was about 210.
type requestTarget struct {
	path     string // the escaped path, "/" for none; or the opaque part (with its scheme when it starts with "//")
	query    string // RawQuery
	hasQuery bool   // a '?' is written, then query: ForceQuery or RawQuery != ""
}

// targetOf splits u's RequestURI as RequestURI composes it
// (TestRequestLineAsRequestURI).
func targetOf(u *url.URL) requestTarget {
	path := u.Opaque
	if path == "" {
		path = u.EscapedPath()
		if path == "" {
			path = "/"
		}
	} else if strings.HasPrefix(path, "//") {
		path = u.Scheme + ":" + path // rare: an opaque "//x" keeps its scheme
	}
	return requestTarget{path: path, query: u.RawQuery, hasQuery: u.ForceQuery || u.RawQuery != ""}
}

// plainTargetBytes reports whether s has no control byte, blank or DEL,
// which the request line cannot carry (the Transport refuses the control
// bytes; a blank would split the line).
func plainTargetBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b <= ' ' || b == 0x7f {
			return false
		}
	}
	return true
}

// validPlainHost reports whether the Transport would send host as it is
// ("" stands for the server's own host).
func validPlainHost(host string) bool {
	return host == "" || (httpguts.ValidHostHeader(host) && !strings.Contains(host, "%") && isASCII(host))
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// writeRequest writes req's head as the Transport does: request line, Host,
// User-Agent (Go's default when the request has none), then the other
// fields sorted by name, values trimmed by textproto.TrimString as the
// Transport trims them (plainRequest let no CR or LF through, so it cuts
// the values' optional white space; strings.Trim with a cutset made one
// on every call, about 0.7 % of an all-miss profile).
func writeRequest(w *bufio.Writer, req *http.Request, host string, target requestTarget) {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(target.path)
	if target.hasQuery {
		w.WriteByte('?')
		w.WriteString(target.query)
	}
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	ua := "Go-http-client/1.1"
	if vv, ok := req.Header["User-Agent"]; ok {
		ua = ""
		if len(vv) > 0 {
			ua = textproto.TrimString(vv[0])
		}
	}
	if ua != "" {
		w.WriteString("User-Agent: ")
		w.WriteString(ua)
		w.WriteString("\r\n")
	}
	var keysBuf [32]string
	keys := keysBuf[:0]
	for k := range req.Header {
		if k != "User-Agent" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range req.Header[k] {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(textproto.TrimString(v))
			w.WriteString("\r\n")
		}
	}
	w.WriteString("\r\n")
}

// staleConnError is the error of a request on a reused connection that
// failed before any byte of answer came: the origin most likely closed the
// connection while it was idle.
type staleConnError struct{ err error }

func (e *staleConnError) Error() string { return "reused connection: " + e.err.Error() }
func (e *staleConnError) Unwrap() error { return e.err }

// h1Dial opens a new connection to s for the lean client, through the
// pool's counted dialer; deadline bounds the dial with connect_timeout.
func (p *Pool) h1Dial(ctx context.Context, s *server, deadline time.Time) (*h1Conn, error) {
	d := net.Dialer{Timeout: p.cfg.ConnectTimeout, Deadline: deadline, KeepAlive: 30 * time.Second}
	conn, err := p.conns.dial(d.DialContext)(ctx, "tcp", s.addr)
	if err != nil {
		return nil, err
	}
	c := &h1Conn{conn: conn}
	if sc, ok := conn.(*countedConn).Conn.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	c.br = bufio.NewReaderSize(c, 4096)
	c.bw = bufio.NewWriterSize(conn, 4096)
	return c, nil
}

// h1RoundTrip sends req to s on an idle connection or a new one and reads
// the response's headers by deadline. A reused connection that fails
// before any answer is replaced by a new one, once. now is when the try
// starts, the idle list's clock.
func (p *Pool) h1RoundTrip(ctx context.Context, req *http.Request, s *server, host string, target requestTarget, now, deadline time.Time) (*http.Response, error) {
	c := s.h1.get(now)
	for {
		reused := c != nil
		if !reused {
			var err error
			if c, err = p.h1Dial(ctx, s, deadline); err != nil {
				return nil, err
			}
		}
		resp, err := p.h1Exchange(ctx, c, req, s, host, target, deadline, reused)
		if err == nil {
			return resp, nil
		}
		c.close()
		var stale *staleConnError
		if reused && errors.As(err, &stale) && ctx.Err() == nil && time.Now().Before(deadline) {
			c = nil // once more, on a new connection
			continue
		}
		return nil, err
	}
}

// h1Exchange writes req on c and reads the response's headers. On error
// the caller closes c.
func (p *Pool) h1Exchange(ctx context.Context, c *h1Conn, req *http.Request, s *server, host string, target requestTarget, deadline time.Time, reused bool) (*http.Response, error) {
	c.bodyWait = 0
	c.canceled.Store(false)
	if err := c.conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	var stop func() bool
	if a, ok := ctx.(afterFuncer); ok {
		stop = a.AfterFunc(c.abortFunc())
	} else if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, c.abortFunc())
	}
	resp, framedTwice, err := p.h1Read(ctx, c, req, host, target, reused)
	if err != nil {
		if stop != nil {
			stop()
		}
		return nil, err
	}
	hasBody := req.Method != http.MethodHead && resp.ContentLength != 0
	if !hasBody {
		canceled := stop != nil && !stop()
		if resp.Close || framedTwice || canceled || c.br.Buffered() > 0 {
			c.close()
		} else {
			s.h1.put(c, time.Now())
		}
		resp.Body = http.NoBody
		return resp, nil
	}
	// The head's deadline (the try's, the pool's) ends with it: the
	// body's waits are read_timeout's, set as each Read goes to the
	// network (h1Conn.Read).
	c.bodyWait = p.cfg.ReadTimeout
	if c.bodyWait <= 0 {
		c.conn.SetReadDeadline(time.Time{})
		if c.canceled.Load() {
			c.conn.SetReadDeadline(aLongTimeAgo)
		}
	}
	b := &h1Body{body: resp.Body, c: c, stop: stop, keep: !resp.Close && !framedTwice, p: p, s: s, parent: ctx}
	if resp.Body == nil { // readSimpleResponse's: ContentLength bytes follow
		b.body, b.remain = nil, resp.ContentLength
	}
	resp.Body = b
	return resp, nil
}

// afterFuncer is a context that registers a function to run when it ends
// itself: context.AfterFunc's own protocol (a context type that has the
// method is asked before a goroutine is started for it), asked first
// here, since a context's own registration can be cheaper than
// context.AfterFunc's (the edge's fill contexts have a slot for it).
// Whatever it is, the function runs once the context is done; this
// client's abort is quick and takes no lock, so it may run on the
// goroutine that ends the context.
type afterFuncer interface {
	AfterFunc(func()) (stop func() bool)
}

// abortFunc is c's abort on the caller's cancellation: it marks the
// cancellation and sets a past deadline. It is made once per connection.
func (c *h1Conn) abortFunc() func() {
	if c.abort == nil {
		c.abort = func() {
			c.canceled.Store(true)
			c.conn.SetDeadline(aLongTimeAgo)
		}
	}
	return c.abort
}

// h1Read writes the request and reads the final response's headers,
// skipping 1xx responses.
func (p *Pool) h1Read(ctx context.Context, c *h1Conn, req *http.Request, host string, target requestTarget, reused bool) (resp *http.Response, framedTwice bool, err error) {
	writeRequest(c.bw, req, host, target)
	if err := c.bw.Flush(); err != nil {
		if reused && !isTimeout(err) {
			return nil, false, &staleConnError{err}
		}
		return nil, false, err
	}
	c.limit = maxResponseHeaderBytes
	if _, err := c.br.Peek(1); err != nil {
		if reused && !isTimeout(err) && err != errHeaderLimit {
			return nil, false, &staleConnError{err}
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, false, err
	}
	if resp, ok := readSimpleResponse(c.br, req); ok {
		c.limit = math.MaxInt64
		return resp, false, nil
	}
	informational := 0 // 1xx answers given to the caller's trace
	for {
		// An answer framed both ways (Transfer-Encoding and
		// Content-Length) is read as chunked, as ReadResponse does,
		// but its connection is not reused: such an answer is how
		// response splitting looks (RFC 9112 §6.3). ReadResponse drops
		// the Content-Length, so it is looked for in the head first
		// (when the head is in the buffer).
		buf, _ := c.br.Peek(c.br.Buffered())
		framedTwice = headFramedTwice(buf)
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			if c.limit <= 0 {
				return nil, false, errHeaderLimit
			}
			return nil, false, err
		}
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return nil, false, errUnexpected101
		case resp.StatusCode >= 100 && resp.StatusCode <= 199:
			// Informational: the final answer follows. A caller's
			// trace gets it (a 103 the edge relays), as from the
			// Transport, and then the header limit starts again.
			if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.Got1xxResponse != nil {
				if informational++; informational > maxInformational {
					return nil, false, errTooManyInformational
				}
				if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
					return nil, false, err
				}
				c.limit = maxResponseHeaderBytes
			}
			continue
		}
		c.limit = math.MaxInt64
		return resp, framedTwice && resp.TransferEncoding != nil, nil
	}
}

// headFramedTwice reports whether the response head at the start of buf
// (when it ends within buf) has both a Transfer-Encoding and a
// Content-Length field line.
func headFramedTwice(buf []byte) bool {
	var te, cl bool
	for len(buf) > 0 {
		eol := bytes.IndexByte(buf, '\n')
		if eol < 0 {
			return false // the head goes on past buf
		}
		line := bytes.TrimSuffix(buf[:eol], []byte("\r"))
		buf = buf[eol+1:]
		if len(line) == 0 {
			return te && cl
		}
		te = te || hasFoldPrefix(line, "transfer-encoding:")
		cl = cl || hasFoldPrefix(line, "content-length:")
	}
	return false
}

func hasFoldPrefix(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && strings.EqualFold(string(b[:len(prefix)]), prefix)
}

// isTimeout reports whether err is a deadline's.
func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// h1Body is a response body of the lean client: it puts its connection
// back among the idle ones once read to its end, if it may be reused, and
// closes it otherwise; its read errors are [*Error] values, counted
// against the server as poolBody's are, and closing it gives the
// server's slot back.
type h1Body struct {
	body   io.Reader // the net/http body reader: length, chunks, trailers; nil for remain
	remain int64     // without body: the bytes of the body still to read from c
	c      *h1Conn
	stop   func() bool  // the caller's cancellation; nil if it cannot be canceled
	keep   bool         // neither side said close
	state  atomic.Int32 // 0 while the body is read; 1 once the connection was put back or closed
	closed atomic.Bool  // Close ran: the slot went back

	p      *Pool
	s      *server
	parent context.Context // the caller's
	err    *Error          // the first read error, returned again after it
}

// Read reads the body, setting the connection's read deadline to
// read_timeout from now before any read that will wait on the network.
func (b *h1Body) Read(buf []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.closed.Load() {
		return 0, b.fail(KindCanceled, errBodyClosed)
	}
	if b.state.Load() != 0 {
		return 0, io.EOF
	}
	var n int
	var err error
	if b.body != nil {
		n, err = b.body.Read(buf)
	} else {
		n, err = b.readRemain(buf)
	}
	if err == nil {
		return n, nil
	}
	if err == io.EOF {
		b.finish(true)
		return n, err
	}
	b.finish(false)
	kind, cause := KindTruncated, error(nil)
	switch {
	case b.closed.Load(): // by Close, while this Read waited
		kind = KindCanceled
	case b.parent.Err() != nil:
		kind = b.parentKind()
	case isTimeout(err):
		kind, cause = KindTimeout, errReadTimeout
	}
	return n, b.fail(kind, withCause(err, cause))
}

// Buffered reports whether the rest of the body, of known length, is in
// the connection's buffer already: reading it will not wait on the
// network. Only the body's reader may ask (it reads remain).
func (b *h1Body) Buffered() bool {
	return b.body == nil && b.err == nil && b.state.Load() == 0 && !b.closed.Load() &&
		int64(b.c.br.Buffered()) >= b.remain
}

// readRemain reads the rest of a body of known length from the
// connection's reader, as net/http's body over an io.LimitedReader does:
// io.EOF with its last bytes, io.ErrUnexpectedEOF if the connection ends
// before.
func (b *h1Body) readRemain(buf []byte) (int, error) {
	if int64(len(buf)) > b.remain {
		buf = buf[:b.remain]
	}
	n, err := b.c.br.Read(buf)
	b.remain -= int64(n)
	switch {
	case b.remain == 0:
		return n, io.EOF
	case err == io.EOF:
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

// parentKind is the kind of error the caller's context ended the body
// with: its deadline or its cancellation.
func (b *h1Body) parentKind() Kind {
	if errors.Is(b.parent.Err(), context.DeadlineExceeded) {
		return KindTimeout
	}
	return KindCanceled
}

// errBodyClosed is the error of a Read after Close.
var errBodyClosed = errors.New("read on closed response body")

// fail records the body's first error, counts it against the server
// unless the caller is the cause, and returns it.
func (b *h1Body) fail(kind Kind, err error) *Error {
	b.p.metrics.errors.WithLabelValues(b.s.name, kind.String()).Inc()
	if kind != KindCanceled {
		b.p.serverResult(b.s, false, err)
	}
	b.err = &Error{Kind: kind, Pool: b.p.cfg.Name, Server: b.s.name, Tries: 1, Err: err}
	return b.err
}

// Close closes the connection unless the body was read to its end, and
// gives the slot back; it may be called more than once, and while a Read
// waits.
func (b *h1Body) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	if b.state.CompareAndSwap(0, 1) {
		if b.stop != nil {
			b.stop()
		}
		b.c.close()
	}
	b.s.slots.release()
	return nil
}

// finish puts the connection back when the body ended cleanly and it may
// be reused, and closes it otherwise.
func (b *h1Body) finish(eof bool) {
	if !b.state.CompareAndSwap(0, 1) {
		return
	}
	canceled := b.stop != nil && !b.stop()
	if eof && b.keep && !canceled && b.c.br.Buffered() == 0 {
		b.s.h1.put(b.c, time.Now())
		return
	}
	b.c.close()
}
