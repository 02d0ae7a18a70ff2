package listen

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// The HTTPS listener's HTTP/2 (see the package doc, "HTTP/2"): x/net's
// HTTP/2 server, serving each connection through an h2Conn so that a
// response's header and body leave in one TLS record and one write.

// headerHold is the longest an h2Conn holds a response header back,
// waiting for the body that usually follows at once (a hit writes both
// within microseconds). A header whose body is slower (a miss's origin,
// a streaming handler, a 100 Continue) leaves at most this late: short
// beside any origin's latency, long beside a loaded server's scheduling
// delay between a handler's header and body writes.
const headerHold = 2 * time.Millisecond

// keepHeld is the most an h2Conn joins in one write, held header and
// next write together: a small answer's, so that its buffer, kept for
// the next answer, is small and joining allocates nothing.
const keepHeld = 4 << 10

// serveHTTP2 makes srv (whose TLSConfig is set) serve HTTP/2 with x/net's
// server over h2Conns, or with lean (when not nil) in front of it.
// ConfigureServer registers the server with srv (ALPN h2, graceful
// shutdown on srv.Shutdown, srv.HTTP2's settings); its per-connection
// entry is then replaced by one that wraps the connection, and is
// otherwise the same: the lean front's fallback for a connection it does
// not take.
func serveHTTP2(srv *http.Server, lean *leanH2) error {
	h2 := &http2.Server{}
	if err := http2.ConfigureServer(srv, h2); err != nil {
		return err
	}
	std := func(hs *http.Server, c *tls.Conn, h http.Handler) {
		// net/http hands the connection's context (ConnContext's values:
		// the rapid-reset guard, Alt-Svc) over with h, as it does to its
		// own HTTP/2 server.
		var ctx context.Context
		if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
			ctx = bc.BaseContext()
		}
		h2.ServeConn(newH2Conn(c, headerHold), &http2.ServeConnOpts{Context: ctx, Handler: h, BaseConfig: hs})
	}
	srv.TLSNextProto[http2.NextProtoTLS] = std
	if lean != nil {
		lean.fallback = std
		srv.TLSNextProto[http2.NextProtoTLS] = lean.serveConn
		srv.RegisterOnShutdown(lean.shutdown)
	}
	return nil
}

// tlsConn is what an h2Conn wraps: a *tls.Conn (ConnectionState gives
// the HTTP/2 server the TLS version and cipher it checks, and requests
// their TLS field).
type tlsConn interface {
	net.Conn
	ConnectionState() tls.ConnectionState
}

// h2Conn is an HTTP/2 connection as its server writes to it. net/http's
// and x/net's HTTP/2 servers send a response's HEADERS frame and flush
// before the handler's DATA is even queued (the handler waits for its
// header to be written), so every response costs two TLS records and two
// write system calls. An h2Conn holds back a write that ends with a
// HEADERS frame that does not end its stream, and sends it with the next
// write, as one record and one system call; if no write follows within
// hold, it sends it alone. Writes are otherwise untouched, in order.
//
// The HTTP/2 server writes from one goroutine at a time; the hold's timer
// is the only other writer. wmu serializes the two and is held across
// the write to the connection, as tls.Conn's own write lock is (it is the
// one lock in this package held over I/O; it is a leaf, and only writers
// of this connection wait on it). Close closes the connection before it
// takes wmu, so that it never waits on a write blocked by a client that
// does not read.
type h2Conn struct {
	tlsConn
	hold time.Duration

	wmu    sync.Mutex
	frames frameCursor // guarded by wmu
	held   []byte      // guarded by wmu: written to the server, not yet to the connection
	timer  *time.Timer // guarded by wmu; nil until the first hold
	err    error       // guarded by wmu: the held write's failure, for the next Write
}

func newH2Conn(c tlsConn, hold time.Duration) *h2Conn {
	return &h2Conn{tlsConn: c, hold: hold}
}

// Write writes p, or holds it back when it ends with a response header
// (see h2Conn).
func (c *h2Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	c.frames.advance(p)
	if c.frames.atOpenHeaders() && len(c.held)+len(p) <= keepHeld {
		c.held = append(c.held, p...)
		if c.timer == nil {
			c.timer = time.AfterFunc(c.hold, c.release)
		} else {
			c.timer.Reset(c.hold)
		}
		return len(p), nil
	}
	if len(c.held) == 0 {
		return c.tlsConn.Write(p)
	}
	c.timer.Stop()
	if len(c.held)+len(p) > keepHeld {
		// A large body (or a large header): joining them would
		// copy it into a buffer of its size for one write saved
		// among many, so the header goes first, alone.
		_, err := c.tlsConn.Write(c.held)
		c.held = c.held[:0]
		if err != nil {
			return 0, err
		}
		return c.tlsConn.Write(p)
	}
	b := append(c.held, p...)
	c.held = b[:0]
	n, err := c.tlsConn.Write(b)
	// The held bytes were reported written already.
	return max(0, n-(len(b)-len(p))), err
}

// release sends what is held, when no write came to take it along.
func (c *h2Conn) release() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(c.held) == 0 || c.err != nil {
		return
	}
	_, c.err = c.tlsConn.Write(c.held)
	c.held = c.held[:0]
}

// Close closes the connection, then stops the hold's timer: a write
// blocked on a client that does not read ends first, and frees wmu. What
// is held then is a header whose stream the server abandons with its
// connection.
func (c *h2Conn) Close() error {
	err := c.tlsConn.Close()
	c.wmu.Lock()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.wmu.Unlock()
	return err
}

// frameCursor follows the HTTP/2 frames of a connection's written bytes
// (RFC 9113 §4.1: a 9-byte header whose first 3 bytes are the payload's
// length), however the writes cut them.
type frameCursor struct {
	head  [9]byte
	nhead int  // bytes of the next frame header seen so far
	left  int  // bytes of the current frame's payload still to come
	typ   byte // the last frame's type
	flags byte // and flags
}

// The frame type and flags atOpenHeaders reads.
const (
	frameHeaders     = 0x1
	flagEndStream    = 0x1
	flagEndHeaders   = 0x4
	frameHeaderBytes = 9
)

// advance moves the cursor past p.
func (f *frameCursor) advance(p []byte) {
	for len(p) > 0 {
		if f.left > 0 {
			n := min(f.left, len(p))
			f.left -= n
			p = p[n:]
			continue
		}
		n := copy(f.head[f.nhead:], p)
		f.nhead += n
		p = p[n:]
		if f.nhead == frameHeaderBytes {
			f.nhead = 0
			f.left = int(f.head[0])<<16 | int(f.head[1])<<8 | int(f.head[2])
			f.typ, f.flags = f.head[3], f.head[4]
		}
	}
}

// atOpenHeaders reports whether the bytes so far end exactly with a whole
// header block in one HEADERS frame that does not end its stream: a
// response header whose body (or final header, after a 1xx) follows.
func (f *frameCursor) atOpenHeaders() bool {
	return f.nhead == 0 && f.left == 0 && f.typ == frameHeaders &&
		f.flags&flagEndHeaders != 0 && f.flags&flagEndStream == 0
}
