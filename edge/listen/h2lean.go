package listen

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meridiancdn/meridian/edge"
)

// The lean HTTP/2 front (server.front "fast" on the HTTPS listener): see
// the package doc, "HTTP/2". One goroutine per connection reads its
// frames and answers plain fresh hits itself; every other stream is
// relayed to x/net's HTTP/2 server over an in-memory connection
// (h2lean_relay.go).

// The settings the lean front advertises: x/net's server defaults, so
// that what a client may send on a relayed stream is what the server
// behind it accepts.
const (
	leanMaxStreams    = 250     // x/net's defaultMaxStreams
	leanMaxFrame      = 1 << 20 // x/net's defaultMaxReadFrameSize
	leanStreamRecvWin = 1 << 20 // x/net's MaxUploadBufferPerStream default
	leanConnRecvWin   = 1 << 20 // x/net's MaxUploadBufferPerConnection default
	leanHeaderTable   = 4096    // hpack's initial table size, both ways
	h2InitialWindow   = 65535   // RFC 9113 §6.9.2
	h2DefaultMaxFrame = 16384   // RFC 9113 §4.2
	// maxEmptyFrames is how many empty DATA frames (without END_STREAM)
	// in a row a connection may send: a sender that splits a body finely
	// sends some, a flood (CVE-2019-9518) sends nothing else.
	maxEmptyFrames     = 100
	leanPrefaceTimeout = 10 * time.Second
	// leanGoAwayLinger is how long a connection that said GOAWAY without
	// an error, with no stream left open, goes on reading before it
	// closes (x/net's goAwayTimeout): closed at once, a request or PING
	// the client sent meanwhile would sit unread in the kernel, which
	// then answers the close with a TCP reset instead of a FIN, and a
	// reset can discard the GOAWAY and the last answers before the client
	// reads them (golang.org/issue/18701). The client closing ends it
	// sooner.
	leanGoAwayLinger = time.Second
	// leanDiskInline is the largest body on disk a hit reads in to
	// answer; a larger one is relayed (sendfile cannot go through TLS
	// anyway).
	leanDiskInline = 32 << 10
)

// leanH2 is the lean HTTP/2 front of one HTTPS listener.
type leanH2 struct {
	h      *edge.Handler
	cfg    edge.ServerConfig
	altSvc string // the Alt-Svc of "auto" sites' hits; "" for none
	log    *slog.Logger
	// inner is the x/net server that relayed streams go to, with
	// innerBase as its http.Server settings (no timeouts: the lean
	// connection keeps them, see leanConn).
	inner     *http2.Server
	innerBase *http.Server
	// fallback serves a whole connection with x/net's server over an
	// h2Conn, as front "nethttp" does: one the lean front does not take
	// (TLS below 1.2 or a prohibited cipher, which x/net refuses).
	fallback func(hs *http.Server, c *tls.Conn, h http.Handler)

	date    dateCache
	writers sync.Pool // *bufio.Writer, held by a connection only while it writes

	mu      sync.Mutex
	conns   map[*leanConn]struct{} // guarded by mu
	closing bool                   // guarded by mu: Shutdown has begun
	done    bool                   // guarded by mu: Shutdown waits for wg
	wg      sync.WaitGroup         // the goroutines Shutdown starts
	pad     string                 // guarded by mu: see truncatedPad
}

func newLeanH2(h *edge.Handler, cfg edge.ServerConfig, altSvc string, log *slog.Logger) *leanH2 {
	l := &leanH2{h: h, cfg: cfg, altSvc: altSvc, log: log, conns: map[*leanConn]struct{}{}}
	// The relay's server counts only relayed streams, no more than the
	// lean front admits; its limits are the HTTPS server's, its timeouts
	// none (the lean connection keeps them).
	l.inner = &http2.Server{MaxConcurrentStreams: 4 * leanMaxStreams}
	l.innerBase = &http.Server{MaxHeaderBytes: cfg.MaxHeaderBytes, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	l.writers.New = func() any { return bufio.NewWriterSize(nil, 32<<10) }
	return l
}

// serveConn is the HTTPS server's TLSNextProto entry for h2: it serves
// c until it ends. h is net/http's handler for the connection (it sets
// each request's TLS from c) and carries the connection's base context.
func (l *leanH2) serveConn(hs *http.Server, c *tls.Conn, h http.Handler) {
	cs := c.ConnectionState()
	if cs.Version < tls.VersionTLS12 || cs.Version == tls.VersionTLS12 && !goodTLS12Cipher(cs.CipherSuite) {
		l.fallback(hs, c, h)
		return
	}
	ctx := context.Background()
	if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
		ctx = bc.BaseContext()
	}
	lc := newLeanConn(l, c, ctx, h)
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		c.Close()
		return
	}
	l.conns[lc] = struct{}{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.conns, lc)
		l.mu.Unlock()
	}()
	lc.serve()
}

// shutdown is the HTTPS server's RegisterOnShutdown hook: every lean
// connection says GOAWAY and closes once its streams are done (net/http's
// Shutdown waits for that, and closes what remains when its context
// ends).
func (l *leanH2) shutdown() {
	l.mu.Lock()
	if l.done {
		l.mu.Unlock()
		return // too late: everything is closed
	}
	l.closing = true
	conns := make([]*leanConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.wg.Add(len(conns)) // under mu: before wait's Wait
	l.mu.Unlock()
	for _, c := range conns {
		// Each on its own: a write to a client that does not read waits
		// up to the send timeout.
		go func() {
			defer l.wg.Done()
			c.goAway(http2.ErrCodeNo, false)
		}()
	}
}

// wait waits for the GOAWAYs shutdown sends; a shutdown hook that runs
// after it does nothing. The HTTPS server must be closed.
func (l *leanH2) wait() {
	l.mu.Lock()
	l.closing, l.done = true, true
	l.mu.Unlock()
	l.wg.Wait()
}

// dateLine returns the Date header line for the current second.
func (l *leanH2) dateLine() []byte { return l.date.line(time.Now()) }

// truncatedPadName is the field that truncatedPad's value goes in.
const truncatedPadName = "x-meridian-too-long"

// truncatedPad is a field value that makes a field (truncatedPadName) as
// large as the whole header list the relay's server accepts: sent after
// the pseudo-header fields of a request whose header list the lean front
// found too long (and so truncated), it makes x/net's server find the
// list too long as well, and answer 431 as it would have. (One byte
// longer, the value would pass the server's longest string, a connection
// error COMPRESSION_ERROR: the relay would end, and with it the
// connection's other streams, without an answer.)
func (l *leanH2) truncatedPad() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pad == "" {
		l.pad = strings.Repeat("a", int(l.maxHeaderList())-32-len(truncatedPadName))
	}
	return l.pad
}

// maxHeaderList is SETTINGS_MAX_HEADER_LIST_SIZE as x/net's server
// derives it from server.max_header_bytes.
func (l *leanH2) maxHeaderList() uint32 {
	n := l.cfg.MaxHeaderBytes
	if n <= 0 {
		n = http.DefaultMaxHeaderBytes
	}
	return uint32(n + 10*32)
}

// goodTLS12Cipher reports whether a TLS 1.2 cipher suite is one that
// HTTP/2 allows (RFC 9113 §9.2.2: ephemeral key exchange and an AEAD);
// for any other, x/net's server refuses the connection, so it gets it.
func goodTLS12Cipher(id uint16) bool {
	switch id {
	case tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:
		return true
	}
	return false
}

// leanConn is one HTTP/2 connection of the lean front. Its goroutine
// (serve) reads every frame and owns the read side; the relay's reader
// (relayReader) is the one other goroutine that writes to it.
//
// Locks, each a leaf, never one taken under another: wmu serializes the
// writes to the client (the frame writer, the hpack encoder, the
// buffered writer) and is held across the write to the connection, as
// tls.Conn's own write lock is (a write waits at most the send timeout);
// pmu does the same for the writes to the relay's in-memory connection;
// mu guards the streams and flow-control state and is never held over
// I/O.
type leanConn struct {
	l       *leanH2
	tc      *tls.Conn
	ctx     context.Context
	handler http.Handler
	guard   *connGuard // the rapid-reset guard of the connection, nil if none
	br      *bufio.Reader
	fr      *http2.Framer // reads: serve's only; writes: under wmu
	hit     edge.Hit      // serve's
	hitReq  hitFields     // serve's
	blocks  blockDecoder  // serve's: one-frame header blocks (readFrame)
	head    []byte        // serve's: a hit's HTTP/1.1 head, converted to hblock
	hblock  []byte        // serve's: a hit's header block
	empty   int           // serve's: empty DATA frames in a row

	wmu       sync.Mutex
	out       lazyWriter     // guarded by wmu
	enc       *hpack.Encoder // guarded by wmu: relayed answers' header blocks
	encBuf    []byte         // guarded by wmu
	tableSize uint32         // guarded by wmu: the client's header table size as enc has it
	sizeSent  bool           // guarded by wmu: every header block since the last change began with it
	minSize   uint32         // guarded by wmu: the smallest of the client's table sizes since the last size update sent
	werr      error          // guarded by wmu: the first write error; the connection is closing
	ready     bool           // guarded by wmu: our SETTINGS are written (a GOAWAY may follow)

	mu          sync.Mutex
	streams     map[uint32]*leanStream // guarded by mu: the relayed streams not yet closed
	maxClientID uint32                 // guarded by mu
	sendConn    int64                  // guarded by mu: the client's connection window
	initWin     int64                  // guarded by mu: the client's SETTINGS_INITIAL_WINDOW_SIZE
	maxFrame    uint32                 // guarded by mu: the client's SETTINGS_MAX_FRAME_SIZE
	recvConn    int64                  // guarded by mu: what the client may still send on the connection
	goingAway   bool                   // guarded by mu: GOAWAY sent
	goAwayID    uint32                 // guarded by mu: its last stream
	idleArmed   bool                   // guarded by mu: the read deadline is the idle timeout
	idleSince   time.Time              // guarded by mu: when it was last set
	settingsAck bool                   // guarded by mu: the client acknowledged our SETTINGS
	relay       *relay                 // guarded by mu: nil until a stream is relayed
	closed      bool                   // guarded by mu
	lingering   bool                   // guarded by mu: drained after a graceful GOAWAY, reading until leanGoAwayLinger passes
	credit      chan struct{}          // poked when a send window grows
}

// leanStream is a relayed stream as the client sees it.
type leanStream struct {
	send        int64 // the client's window for it
	clientEnded bool  // the client sent END_STREAM
	serverEnded bool  // END_STREAM relayed to the client
}

func newLeanConn(l *leanH2, c *tls.Conn, ctx context.Context, h http.Handler) *leanConn {
	lc := &leanConn{l: l, tc: c, ctx: ctx, handler: h,
		streams: map[uint32]*leanStream{}, sendConn: h2InitialWindow, initWin: h2InitialWindow,
		maxFrame: h2DefaultMaxFrame, recvConn: leanConnRecvWin, credit: make(chan struct{}, 1),
		tableSize: leanHeaderTable, sizeSent: true}
	lc.guard, _ = ctx.Value(connGuardKey{}).(*connGuard)
	lc.br = bufio.NewReaderSize(c, 8<<10)
	lc.out = lazyWriter{c: c, pool: &l.writers}
	lc.fr = http2.NewFramer(&lc.out, lc.br)
	lc.blocks.dec = hpack.NewDecoder(leanHeaderTable, nil)
	lc.fr.ReadMetaHeaders = lc.blocks.dec
	lc.fr.MaxHeaderListSize = l.maxHeaderList()
	lc.fr.SetMaxReadFrameSize(leanMaxFrame)
	lc.fr.SetReuseFrames()
	lc.enc = hpack.NewEncoder((*encSink)(lc))
	return lc
}

// encSink is where a leanConn's hpack encoder writes: its encBuf.
type encSink leanConn

func (s *encSink) Write(p []byte) (int, error) {
	s.encBuf = append(s.encBuf, p...)
	return len(p), nil
}

// lazyWriter is a buffered writer to the connection that holds a buffer
// (from a pool) only while it has something to send.
type lazyWriter struct {
	c    net.Conn
	bw   *bufio.Writer
	pool *sync.Pool
	fh   [frameHeaderBytes]byte // a frame header being written
}

func (w *lazyWriter) Write(p []byte) (int, error) {
	if w.bw == nil {
		w.bw = w.pool.Get().(*bufio.Writer)
		w.bw.Reset(w.c)
	}
	return w.bw.Write(p)
}

// Flush sends what is buffered and gives the buffer back.
func (w *lazyWriter) Flush() error {
	if w.bw == nil {
		return nil
	}
	err := w.bw.Flush()
	if err == nil {
		w.bw.Reset(nil)
		w.pool.Put(w.bw)
		w.bw = nil
	}
	return err
}

// errLeanClosed ends a leanConn's loop once it closed its connection.
var errLeanClosed = errors.New("listen: http/2 connection closed")

// serve reads and answers the connection's frames until it ends.
func (c *leanConn) serve() {
	defer c.finish()
	c.tc.SetReadDeadline(time.Now().Add(leanPrefaceTimeout))
	var pre [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.br, pre[:]); err != nil || string(pre[:]) != http2.ClientPreface {
		return
	}
	c.wmu.Lock()
	c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: leanMaxFrame},
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: leanMaxStreams},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: c.l.maxHeaderList()},
		http2.Setting{ID: http2.SettingHeaderTableSize, Val: leanHeaderTable},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: leanStreamRecvWin},
		http2.Setting{ID: http2.SettingNoRFC7540Priorities, Val: 1},
	)
	c.fr.WriteWindowUpdate(0, leanConnRecvWin-h2InitialWindow)
	c.ready = true
	c.flushLocked()
	c.wmu.Unlock()
	c.armIdle(true)
	first := true
	for {
		f, err := c.readFrame()
		if err != nil {
			if !c.readFailed(f, err) {
				return
			}
			continue
		}
		if first {
			if _, ok := f.(*http2.SettingsFrame); !ok {
				c.connectionError(f, http2.ErrCodeProtocol)
				return
			}
			first = false
		}
		if err := c.process(f); err != nil {
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				c.connectionError(f, http2.ErrCode(ce))
			}
			return
		}
		if c.br.Buffered() == 0 {
			c.wmu.Lock()
			c.flushLocked()
			err := c.werr
			c.wmu.Unlock()
			if err != nil {
				return
			}
			c.armIdle(false)
		}
	}
}

// connectionError ends the connection with GOAWAY code because of frame
// f (nil if unknown). As x/net's server, the GOAWAY's last stream is at
// least f's.
func (c *leanConn) connectionError(f http2.Frame, code http2.ErrCode) {
	if f != nil {
		c.mu.Lock()
		if id := f.Header().StreamID; id > c.maxClientID && !c.goingAway {
			c.maxClientID = id
		}
		c.mu.Unlock()
	}
	c.goAway(code, true)
}

// readFailed handles an error of ReadFrame (f is what it read, if
// anything) and reports whether reading goes on (after a stream error,
// answered with RST_STREAM).
func (c *leanConn) readFailed(f http2.Frame, err error) bool {
	var se http2.StreamError
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &se):
		// A relayed stream ends on x/net's server too, as its own
		// stream error would end it there.
		c.mu.Lock()
		st, r := c.streams[se.StreamID], c.relay
		if st != nil {
			c.endStreamLocked(se.StreamID)
		}
		c.mu.Unlock()
		if st != nil {
			r.writeRST(se.StreamID, http2.ErrCodeCancel)
		}
		c.wmu.Lock()
		c.fr.WriteRSTStream(se.StreamID, se.Code)
		c.wmu.Unlock()
		if st != nil {
			c.closeIfDrained()
		}
		return true
	case errors.Is(err, http2.ErrFrameTooLarge):
		c.goAway(http2.ErrCodeFrameSize, true)
	case errors.As(err, &ce):
		c.connectionError(f, http2.ErrCode(ce))
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.mu.Lock()
			lingering := c.lingering
			c.mu.Unlock()
			if lingering {
				return false // the linger's end
			}
			// The idle timeout, with no stream open (armIdle): GOAWAY,
			// then the linger. (Had the timeout cut a frame in two, the
			// rest reads as garbage: a connection error, closed at once.)
			c.goAway(http2.ErrCodeNo, false)
			c.mu.Lock()
			lingering = c.lingering
			c.mu.Unlock()
			return lingering
		}
	}
	return false
}

// armIdle sets the connection's read deadline to the idle timeout while
// no relayed stream is open (a hit never stays open), and clears it while
// one is: x/net's server closes a connection idle that long with GOAWAY.
// The deadline moves at most once a second (it costs a timer update).
func (c *leanConn) armIdle(force bool) {
	idle := c.l.cfg.IdleTimeout
	if idle <= 0 {
		if force {
			c.tc.SetReadDeadline(time.Time{}) // the preface's
		}
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armIdleLocked(idle, force)
}

func (c *leanConn) armIdleLocked(idle time.Duration, force bool) {
	if idle <= 0 || c.goingAway {
		return // draining: Shutdown's context, then the linger, bound it
	}
	now := time.Now()
	switch {
	case len(c.streams) > 0:
		if c.idleArmed || force {
			c.idleArmed = false
			c.tc.SetReadDeadline(time.Time{})
		}
	case force || !c.idleArmed || now.Sub(c.idleSince) >= time.Second:
		c.idleArmed, c.idleSince = true, now
		c.tc.SetReadDeadline(now.Add(idle))
	}
}

// process handles one frame from the client. A returned ConnectionError
// ends the connection with GOAWAY; any other error ends it.
func (c *leanConn) process(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		return c.processSettings(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			c.wmu.Lock()
			c.fr.WritePing(true, f.Data)
			c.wmu.Unlock()
		}
	case *http2.WindowUpdateFrame:
		return c.processWindowUpdate(f)
	case *http2.MetaHeadersFrame:
		return c.processHeaders(f)
	case *http2.DataFrame:
		return c.processData(f)
	case *http2.RSTStreamFrame:
		c.mu.Lock()
		if c.idleLocked(f.StreamID) {
			c.mu.Unlock()
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		st := c.streams[f.StreamID]
		r := c.relay
		if st != nil {
			c.endStreamLocked(f.StreamID)
		}
		c.mu.Unlock()
		if st != nil {
			r.writeRST(f.StreamID, f.ErrCode)
			c.closeIfDrained()
		}
	case *http2.PriorityFrame:
		// Priorities are ignored (RFC 9218, as x/net's server), but a
		// stream may not depend on itself (RFC 9113 §5.3.1): a relayed
		// one is reset by x/net's server (the frame goes to it), any
		// other here.
		if f.StreamDep != f.StreamID {
			return nil
		}
		c.mu.Lock()
		st, r := c.streams[f.StreamID], c.relay
		c.mu.Unlock()
		if st != nil {
			r.writePriority(f)
			return nil
		}
		c.wmu.Lock()
		c.fr.WriteRSTStream(f.StreamID, http2.ErrCodeProtocol)
		c.wmu.Unlock()
	case *http2.GoAwayFrame:
		// The client leaves: finish what is open, then close.
		c.goAway(http2.ErrCodeNo, false)
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil
}

func (c *leanConn) processSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		c.mu.Lock()
		c.settingsAck = true
		c.mu.Unlock()
		return nil
	}
	if f.NumSettings() > 100 || f.HasDuplicates() {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if err := f.ForeachSetting(func(s http2.Setting) error {
		if s.ID == http2.SettingNoRFC7540Priorities && s.Val > 1 {
			return http2.ConnectionError(http2.ErrCodeProtocol) // RFC 9218 §2.1
		}
		return s.Valid()
	}); err != nil {
		return err
	}
	var fwd []http2.Setting
	c.mu.Lock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.initWin
			for _, st := range c.streams {
				if st.send+delta > math.MaxInt32 {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
				st.send += delta
			}
			c.initWin = int64(s.Val)
			fwd = append(fwd, s)
		case http2.SettingMaxFrameSize:
			c.maxFrame = s.Val
			fwd = append(fwd, s)
		case http2.SettingMaxHeaderListSize:
			fwd = append(fwd, s)
		}
		return nil
	})
	r := c.relay
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.poke()
	c.wmu.Lock()
	if v, ok := f.Value(http2.SettingHeaderTableSize); ok {
		c.enc.SetMaxDynamicTableSize(v)
		c.tableSize = min(v, leanHeaderTable)
		if c.sizeSent || c.tableSize < c.minSize {
			c.minSize = c.tableSize
		}
		c.sizeSent = false
	}
	c.fr.WriteSettingsAck()
	c.wmu.Unlock()
	if r != nil && len(fwd) > 0 {
		r.writeSettings(fwd)
	}
	return nil
}

func (c *leanConn) processWindowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	c.mu.Lock()
	if f.StreamID == 0 {
		c.sendConn += inc
		if c.sendConn > math.MaxInt32 {
			c.mu.Unlock()
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		r := c.relay
		var give int64
		if r != nil {
			give = r.syncConnLocked()
		}
		c.mu.Unlock()
		c.poke()
		if give > 0 {
			r.writeWindowUpdate(0, uint32(give))
		}
		return nil
	}
	if c.idleLocked(f.StreamID) {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	st := c.streams[f.StreamID]
	r := c.relay
	if st != nil {
		st.send += inc
	}
	c.mu.Unlock()
	if st != nil {
		// x/net checks the stream's window for overflow and resets it.
		c.poke()
		r.writeWindowUpdate(f.StreamID, f.Increment)
	}
	return nil
}

func (c *leanConn) processData(f *http2.DataFrame) error {
	id, n := f.StreamID, int64(f.Length)
	if n == 0 && !f.StreamEnded() {
		// An empty DATA frame on an open stream says nothing: it is not
		// relayed, and a flood of them (CVE-2019-9518) ends the
		// connection. On a stream whose request ended, or a closed one,
		// it is a stream error STREAM_CLOSED as any DATA there (below).
		if c.empty++; c.empty > maxEmptyFrames {
			return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
		}
		c.mu.Lock()
		idle := c.idleLocked(id)
		st := c.streams[id]
		open := st != nil && !st.clientEnded
		c.mu.Unlock()
		if idle {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if open {
			return nil
		}
	} else {
		c.empty = 0
	}
	c.mu.Lock()
	if c.idleLocked(id) {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if c.goingAway && id > c.goAwayID {
		// Discarded, its connection window given back (RFC 9113 §6.8).
		c.mu.Unlock()
		c.giveBack(n)
		return nil
	}
	st := c.streams[id]
	r := c.relay
	if st == nil {
		if n > c.recvConn {
			c.mu.Unlock()
			c.wmu.Lock()
			c.fr.WriteRSTStream(id, http2.ErrCodeFlowControl)
			c.wmu.Unlock()
			return nil
		}
		c.mu.Unlock()
		// A closed stream (a hit, or one the relay closed): the client
		// gets its connection window back and the stream is reset, as
		// x/net's server does.
		c.wmu.Lock()
		if n > 0 {
			c.fr.WriteWindowUpdate(0, uint32(n))
		}
		c.fr.WriteRSTStream(id, http2.ErrCodeStreamClosed)
		c.wmu.Unlock()
		return nil
	}
	c.recvConn -= n
	r.recvConn -= n
	if f.StreamEnded() {
		st.clientEnded = true
		if st.serverEnded {
			c.endStreamLocked(id)
		}
	}
	c.mu.Unlock()
	r.writeData(f)
	return nil
}

// idleLocked reports whether stream id is idle (RFC 9113 §5.1): one the
// client has not opened, or an even one, which the server would open
// and never does (no push). mu must be held.
func (c *leanConn) idleLocked(id uint32) bool {
	return id%2 == 0 || id > c.maxClientID
}

// giveBack returns n bytes of connection window to the client.
func (c *leanConn) giveBack(n int64) {
	if n <= 0 {
		return
	}
	c.wmu.Lock()
	c.fr.WriteWindowUpdate(0, uint32(n))
	c.wmu.Unlock()
}

func (c *leanConn) processHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 != 1 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		// Trailers (or a protocol error x/net's server answers).
		if f.StreamEnded() {
			st.clientEnded = true
			if st.serverEnded {
				c.endStreamLocked(id)
			}
		}
		r := c.relay
		c.mu.Unlock()
		r.writeHeaders(f, false)
		return nil
	}
	if id <= c.maxClientID {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if c.goingAway {
		c.mu.Unlock()
		return nil // a stream after GOAWAY's last: ignored
	}
	c.maxClientID = id
	if f.HasPriority() && f.Priority.StreamDep == id {
		// A stream that depends on itself (RFC 9113 §5.3.1).
		c.mu.Unlock()
		c.wmu.Lock()
		c.fr.WriteRSTStream(id, http2.ErrCodeProtocol)
		c.wmu.Unlock()
		return nil
	}
	if len(c.streams)+1 > leanMaxStreams {
		code := http2.ErrCodeRefusedStream
		if c.settingsAck {
			code = http2.ErrCodeProtocol
		}
		c.mu.Unlock()
		c.wmu.Lock()
		c.fr.WriteRSTStream(id, code)
		c.wmu.Unlock()
		return nil
	}
	c.mu.Unlock()
	if f.StreamEnded() && !f.Truncated && c.l.h != nil && c.hitReq.read(f) && c.serveHit(id) {
		return nil
	}
	// Relayed: x/net's server answers it.
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errLeanClosed
	}
	r := c.relay
	if r == nil {
		r = c.startRelayLocked()
	}
	c.streams[id] = &leanStream{send: c.initWin, clientEnded: f.StreamEnded()}
	if c.idleArmed {
		c.idleArmed = false
		c.tc.SetReadDeadline(time.Time{})
	}
	c.mu.Unlock()
	r.writeHeaders(f, true)
	return nil
}

// hitFields is what the lean front reads of a request's header list to
// decide whether it is a plain hit: the same checks as the fast HTTP/1.1
// front's (parseHead), on HTTP/2's fields. Its byte slices view the
// decoder's strings, which are never changed.
type hitFields struct {
	req edge.HitRequest
}

// read fills h from f's fields and reports whether the request is a
// plain GET or HEAD: anything else, or any doubt, is relayed.
func (h *hitFields) read(f *http2.MetaHeadersFrame) bool {
	h.req = edge.HitRequest{TLS: true, HTTP2: true}
	r := &h.req
	var scheme, method bool
	for _, hf := range f.Fields {
		v := bytesOf(hf.Value)
		switch hf.Name {
		case ":method":
			switch hf.Value {
			case "GET":
			case "HEAD":
				r.Head = true
			default:
				return false
			}
			method = true
		case ":scheme":
			if hf.Value != "https" {
				return false
			}
			scheme = true
		case ":authority":
			if !validHost(v) {
				return false
			}
			r.Host = v
		case ":path":
			if !validTarget(v) {
				return false
			}
			r.Target = v
		case "cache-control":
			r.CacheControl = true
		case "accept-encoding":
			if r.AcceptEncoding != nil {
				return false // two fields: ServeHTTP reads them both
			}
			r.AcceptEncoding = v
		case "x-forwarded-proto":
			r.ForwardedProto = v // the last counts, as ServeHTTP reads it
		case "user-agent":
			if r.UserAgent == nil {
				r.UserAgent = v
			}
		case "referer":
			if r.Referer == nil {
				r.Referer = v
			}
		case "traceparent":
			if r.Traceparent == nil {
				r.Traceparent = v
			}
		case "x-forwarded-for":
			if r.ForwardedFor != nil {
				return false // a chain over several fields: ServeHTTP reads it
			}
			r.ForwardedFor = v
		case "host", "content-length", "transfer-encoding", "te", "connection", "keep-alive", "proxy-connection",
			"upgrade", "range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "if-range",
			"authorization", "expect", ":protocol":
			return false
		default:
			if len(hf.Name) > 0 && hf.Name[0] == ':' {
				return false
			}
		}
	}
	return method && scheme && r.Host != nil && r.Target != nil
}

// bytesOf views s as bytes, without a copy; they must not be changed.
func bytesOf(s string) []byte {
	if s == "" {
		return []byte{}
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// serveHit answers stream id from the cache if its request (c.hitReq) is
// a plain fresh hit whose body fits the client's windows.
func (c *leanConn) serveHit(id uint32) bool {
	h := c.l.h
	x := &c.hit
	c.hitReq.req.Remote = c.tc.RemoteAddr()
	if !h.LookupHit(c.hitReq.req, x) {
		return false
	}
	size := x.BodySize()
	if x.BodyOnDisk() && size > leanDiskInline {
		x.Release()
		return false
	}
	c.mu.Lock()
	if size > c.sendConn || size > c.initWin || c.relay != nil && c.relay.waiting {
		// It does not fit; or a relayed answer waits for connection
		// window, which hits must not take before it: relayed, it
		// queues behind.
		c.mu.Unlock()
		x.Release()
		return false
	}
	c.sendConn -= size
	maxFrame := int(c.maxFrame)
	c.mu.Unlock()

	c.head = x.AppendHead(c.head[:0], c.l.dateLine)
	body := x.Body()
	var err error
	if x.BodyOnDisk() {
		c.head, err = x.AppendBody(c.head)
		body = c.head[len(c.head)-int(size):]
		if err != nil || len(body) != int(size) {
			x.Release()
			c.mu.Lock()
			c.sendConn += size
			c.mu.Unlock()
			return false
		}
	}
	c.wmu.Lock()
	c.hblock = c.appendHitBlock(c.hblock[:0], c.head)
	c.sizeSent = true
	c.out.writeBlock(c.hblock, id, maxFrame, size == 0)
	for len(body) > 0 {
		n := min(len(body), maxFrame)
		var flags byte
		if n == len(body) {
			flags = flagEndStream
		}
		c.out.writeFrameHeader(n, frameData, flags, id)
		c.out.Write(body[:n])
		body = body[n:]
	}
	c.wmu.Unlock()
	if cap(c.head) > 16<<10 {
		c.head = nil // a disk body read in: not kept for every later hit
	}
	h.Delivered(x, int(size))
	if c.guard != nil {
		c.guard.record(false, 2)
	}
	return true
}

// appendHitBlock appends to b the header block of a hit whose HTTP/1.1
// head (AppendHead's) is head: every field a literal that is not
// indexed, so that the encoder's table (relayed answers') is untouched;
// after a change of the client's table size, led by the size updates
// (RFC 7541 §4.2: the smallest size since the last update, then the
// final one, as the encoder's own would be).
func (c *leanConn) appendHitBlock(b, head []byte) []byte {
	if !c.sizeSent {
		if c.minSize < c.tableSize {
			b = appendHpackInt(b, 0x20, 5, uint64(c.minSize))
		}
		b = appendHpackInt(b, 0x20, 5, uint64(c.tableSize))
	}
	line, rest := cutLine(head)
	status := "200"
	if len(line) >= 12 {
		status = string(line[9:12])
	}
	switch status {
	case "200":
		b = append(b, 0x88)
	case "204":
		b = append(b, 0x89)
	case "206":
		b = append(b, 0x8a)
	case "304":
		b = append(b, 0x8b)
	case "400":
		b = append(b, 0x8c)
	case "404":
		b = append(b, 0x8d)
	case "500":
		b = append(b, 0x8e)
	default:
		b = append(b, 0x08, 3) // literal, :status's name from the static table
		b = append(b, status...)
	}
	for len(rest) > 0 {
		line, rest = cutLine(rest)
		colon := 0
		for colon < len(line) && line[colon] != ':' {
			colon++
		}
		if colon == 0 || colon == len(line) {
			continue
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if connectionSpecific(name) || c.l.altSvc != "" && equalFold(name, "alt-svc") {
			continue // the connection's Alt-Svc replaces the stored one, as ServeHTTP's altSvcWriter does
		}
		b = append(b, 0x00)
		b = appendHpackInt(b, 0, 7, uint64(len(name)))
		for _, ch := range name {
			if 'A' <= ch && ch <= 'Z' {
				ch += 'a' - 'A'
			}
			b = append(b, ch)
		}
		b = appendHpackInt(b, 0, 7, uint64(len(value)))
		b = append(b, value...)
	}
	if a := c.l.altSvc; a != "" {
		b = append(b, 0x00, 7)
		b = append(b, "alt-svc"...)
		b = appendHpackInt(b, 0, 7, uint64(len(a)))
		b = append(b, a...)
	}
	return b
}

// connectionSpecific reports whether a field may not appear in HTTP/2
// (RFC 9113 §8.2.2).
func connectionSpecific(name []byte) bool {
	return equalFold(name, "connection") || equalFold(name, "keep-alive") || equalFold(name, "proxy-connection") ||
		equalFold(name, "transfer-encoding") || equalFold(name, "upgrade")
}

// appendHpackInt appends i as an hpack integer with an n-bit prefix,
// the prefix's other bits first (RFC 7541 §5.1).
func appendHpackInt(b []byte, first byte, n uint, i uint64) []byte {
	k := uint64(1)<<n - 1
	if i < k {
		return append(b, first|byte(i))
	}
	b = append(b, first|byte(k))
	i -= k
	for ; i >= 128; i >>= 7 {
		b = append(b, byte(0x80|(i&0x7f)))
	}
	return append(b, byte(i))
}

// Frame types and flags the lean front writes by hand.
const (
	frameData         = 0x0
	frameContinuation = 0x9
)

// writeFrameHeader writes a frame's 9-byte header.
func (w *lazyWriter) writeFrameHeader(length int, typ, flags byte, id uint32) {
	w.fh = [frameHeaderBytes]byte{byte(length >> 16), byte(length >> 8), byte(length), typ, flags,
		byte(id >> 24 & 0x7f), byte(id >> 16), byte(id >> 8), byte(id)}
	w.Write(w.fh[:])
}

// writeBlock writes a header block as a HEADERS frame and as many
// CONTINUATION frames as maxFrame needs.
func (w *lazyWriter) writeBlock(block []byte, id uint32, maxFrame int, endStream bool) {
	typ, flags := byte(frameHeaders), byte(0)
	if endStream {
		flags = flagEndStream
	}
	for first := true; first || len(block) > 0; first = false {
		n := min(len(block), maxFrame)
		f := flags
		if n == len(block) {
			f |= flagEndHeaders
		}
		w.writeFrameHeader(n, typ, f, id)
		w.Write(block[:n])
		block = block[n:]
		typ, flags = frameContinuation, 0
	}
}

// flushLocked sends what is buffered; a failure closes the connection.
// wmu must be held.
func (c *leanConn) flushLocked() {
	if c.werr != nil {
		return
	}
	if err := c.out.Flush(); err != nil {
		c.werr = err
		c.tc.NetConn().Close()
	}
}

// poke tells a relayed answer waiting for credit that a window grew.
func (c *leanConn) poke() {
	select {
	case c.credit <- struct{}{}:
	default:
	}
}

// endStreamLocked forgets a relayed stream that is closed. mu must be
// held.
func (c *leanConn) endStreamLocked(id uint32) {
	delete(c.streams, id)
	c.poke() // a DATA frame of it waiting for credit gives up
	if len(c.streams) == 0 && !c.goingAway {
		c.armIdleLocked(c.l.cfg.IdleTimeout, true)
	}
}

// closeIfDrained starts the connection's linger when it has said GOAWAY
// and no stream is left open: it goes on reading (a PING is answered, a
// new stream ignored) until the client closes or leanGoAwayLinger
// passes, when the read fails and serve ends.
func (c *leanConn) closeIfDrained() {
	c.mu.Lock()
	done := c.goingAway && len(c.streams) == 0 && !c.closed && !c.lingering
	if done {
		c.lingering = true
		c.idleArmed = false
	}
	c.mu.Unlock()
	if done {
		c.wmu.Lock()
		c.flushLocked()
		c.wmu.Unlock()
		c.tc.SetReadDeadline(time.Now().Add(leanGoAwayLinger))
	}
}

// goAway sends GOAWAY with code and the last stream the connection
// processes (once). An error code, or now, closes the connection after
// it; otherwise it closes once the open streams are done.
func (c *leanConn) goAway(code http2.ErrCode, now bool) {
	c.mu.Lock()
	if c.goingAway || c.closed {
		c.mu.Unlock()
		if now {
			c.closeConn()
		}
		return
	}
	c.goingAway, c.goAwayID = true, c.maxClientID
	last := c.maxClientID
	if c.idleArmed {
		// No idle timeout while draining; Shutdown's context bounds it.
		c.idleArmed = false
		c.tc.SetReadDeadline(time.Time{})
	}
	c.mu.Unlock()
	c.wmu.Lock()
	ready := c.ready
	if ready {
		c.fr.WriteGoAway(last, code, nil)
		c.flushLocked()
	}
	c.wmu.Unlock()
	if !ready || now || code != http2.ErrCodeNo {
		// An error, or now, or before our SETTINGS (a GOAWAY cannot come
		// first): closed at once.
		c.closeConn()
		return
	}
	c.closeIfDrained()
}

// closeConn closes the connection under TLS (a close_notify could wait
// on a client that does not read): serve's read ends, and serve cleans
// up.
func (c *leanConn) closeConn() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.tc.NetConn().Close()
}

// finish ends the connection: it closes, then the relay's server and
// reader stop.
func (c *leanConn) finish() {
	c.mu.Lock()
	c.closed = true
	r := c.relay
	c.mu.Unlock()
	c.tc.NetConn().Close()
	if r != nil {
		r.stop()
	}
	c.wmu.Lock()
	if c.out.bw != nil {
		c.out.bw.Reset(nil)
		c.out.pool.Put(c.out.bw)
		c.out.bw = nil
	}
	c.wmu.Unlock()
	c.hit.Release()
}
