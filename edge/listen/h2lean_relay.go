package listen

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The relay: the streams a lean HTTP/2 connection does not answer itself
// go to x/net's HTTP/2 server over an in-memory connection (net.Pipe),
// started with the connection's first such stream. The lean connection is
// that server's client: it re-encodes each request's header block with
// an encoder of its own (the client's table is the lean decoder's),
// keeps the stream's ID (a client's IDs only increase, and a server
// takes skipped ones as closed), and passes DATA, RST_STREAM,
// WINDOW_UPDATE and the settings that shape answers on. The server's
// frames come back through relayReader, which re-encodes header blocks
// with the client's encoder and passes the rest on.
//
// Flow control. Toward the server, the client's windows are mirrored:
// the server gets the client's initial stream window and frame size, the
// client's stream WINDOW_UPDATEs, and as much connection window as the
// client has granted and hits have not used (relay.sendView). So the
// server sends no more on a stream than the client allows, and a DATA
// frame the connection window cannot take yet (hits used it) waits, one
// frame at most, for the client's credit, within the send timeout, after
// which the stream is reset as x/net resets a stream whose writes stall.
// Toward the client, the lean front advertises x/net's own settings, and
// the client's connection window follows the server's
// (relay.recvConn): the server enforces request bodies' flow control.

// relay is a lean connection's x/net server and the in-memory connection
// to it.
type relay struct {
	c   *leanConn
	cli net.Conn // the client's end of the pipe
	br  *bufio.Reader
	fr  *http2.Framer // reads: relayReader's; writes: under pmu
	wg  sync.WaitGroup
	// done closes when the relay stops: a DATA frame waiting for credit
	// gives up.
	done     chan struct{}
	stopOnce sync.Once

	pmu    sync.Mutex
	pw     *bufio.Writer  // guarded by pmu
	pre    []byte         // guarded by pmu: the preface and settings, sent before anything else
	enc    *hpack.Encoder // guarded by pmu
	encBuf bytes.Buffer   // guarded by pmu

	// Guarded by the connection's mu:
	sendView int64 // the server's connection send window, as granted
	recvConn int64 // what the server lets the client send on the connection
	waiting  bool  // a DATA frame waits for the client's connection window
}

// relayConn is the server's end of the pipe, dressed as the client's
// connection: its addresses and TLS state (x/net's server checks the TLS
// version and cipher, and gives each request its TLS and RemoteAddr).
type relayConn struct {
	net.Conn
	local, remote net.Addr
	state         tls.ConnectionState
}

func (c *relayConn) LocalAddr() net.Addr                  { return c.local }
func (c *relayConn) RemoteAddr() net.Addr                 { return c.remote }
func (c *relayConn) ConnectionState() tls.ConnectionState { return c.state }

// startRelayLocked starts the connection's relay: x/net's server on one
// end of a pipe, relayReader on the other. c.mu must be held.
func (c *leanConn) startRelayLocked() *relay {
	cli, srv := net.Pipe()
	r := &relay{c: c, cli: cli, br: bufio.NewReaderSize(cli, 16<<10), pw: bufio.NewWriterSize(cli, 16<<10),
		done: make(chan struct{}), sendView: h2InitialWindow, recvConn: h2InitialWindow}
	r.fr = http2.NewFramer(r.pw, r.br)
	r.fr.ReadMetaHeaders = hpack.NewDecoder(leanHeaderTable, nil)
	r.fr.MaxHeaderListSize = 1 << 24
	r.fr.SetMaxReadFrameSize(1<<24 - 1)
	r.enc = hpack.NewEncoder(&r.encBuf)

	var pre bytes.Buffer
	pre.WriteString(http2.ClientPreface)
	pf := http2.NewFramer(&pre, nil)
	pf.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(c.initWin)},
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: c.maxFrame},
	)
	if give := r.syncConnLocked(); give > 0 {
		pf.WriteWindowUpdate(0, uint32(give))
	}
	r.pre = pre.Bytes()
	c.relay = r

	sc := &relayConn{Conn: srv, local: c.tc.LocalAddr(), remote: c.tc.RemoteAddr(), state: c.tc.ConnectionState()}
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		c.l.inner.ServeConn(newH2Conn(sc, headerHold), &http2.ServeConnOpts{Context: c.ctx, Handler: c.handler, BaseConfig: c.l.innerBase})
		srv.Close()
	}()
	go r.read()
	return r
}

// syncConnLocked grants the server the connection window the client has
// granted that the server does not have yet, and returns it (0: none).
// The connection's mu must be held.
func (r *relay) syncConnLocked() int64 {
	d := r.c.sendConn - r.sendView
	if d <= 0 {
		return 0
	}
	r.sendView += d
	return d
}

// stop ends the relay: the pipe closes, so the server and relayReader
// end; it waits for both.
func (r *relay) stop() {
	r.stopOnce.Do(func() {
		close(r.done)
		r.cli.Close()
	})
	r.wg.Wait()
}

// write runs fn, which writes frames to the server, after the preface,
// and sends them.
func (r *relay) write(fn func()) {
	r.pmu.Lock()
	defer r.pmu.Unlock()
	if r.pre != nil {
		r.pw.Write(r.pre)
		r.pre = nil
	}
	fn()
	r.pw.Flush() // a failure is the pipe's end: relayReader sees it too
}

// writeHeaders re-encodes a request's (or its trailers') header block for
// the server. A header list the lean front found too long (truncated)
// goes as its pseudo-header fields and a field that makes it too long
// for the server too, which answers 431 as it would have.
func (r *relay) writeHeaders(f *http2.MetaHeadersFrame, _ bool) {
	fields := f.Fields
	var pad string
	if f.Truncated {
		fields, pad = f.PseudoFields(), r.c.l.truncatedPad()
	}
	r.write(func() {
		r.encBuf.Reset()
		for _, hf := range fields {
			r.enc.WriteField(hf)
		}
		if pad != "" {
			r.enc.WriteField(hpack.HeaderField{Name: truncatedPadName, Value: pad, Sensitive: true})
		}
		block := r.encBuf.Bytes()
		first := true
		for first || len(block) > 0 {
			n := min(len(block), h2DefaultMaxFrame)
			if first {
				r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: block[:n],
					EndStream: f.StreamEnded(), EndHeaders: n == len(block)})
			} else {
				r.fr.WriteContinuation(f.StreamID, n == len(block), block[:n])
			}
			block = block[n:]
			first = false
		}
	})
}

// writeData passes a DATA frame on, padding included, so that the
// server's flow control counts what the client's does.
func (r *relay) writeData(f *http2.DataFrame) {
	data := f.Data()
	pad := 0
	if f.Flags.Has(http2.FlagDataPadded) {
		pad = int(f.Length) - len(data) - 1
	}
	r.write(func() {
		if pad > 0 || f.Flags.Has(http2.FlagDataPadded) {
			r.fr.WriteDataPadded(f.StreamID, f.StreamEnded(), data, make([]byte, max(pad, 0)))
			return
		}
		r.fr.WriteData(f.StreamID, f.StreamEnded(), data)
	})
}

func (r *relay) writePriority(f *http2.PriorityFrame) {
	r.write(func() { r.fr.WritePriority(f.StreamID, f.PriorityParam) })
}

func (r *relay) writeRST(id uint32, code http2.ErrCode) {
	r.write(func() { r.fr.WriteRSTStream(id, code) })
}

func (r *relay) writeWindowUpdate(id, inc uint32) {
	r.write(func() { r.fr.WriteWindowUpdate(id, inc) })
}

func (r *relay) writeSettings(s []http2.Setting) {
	r.write(func() { r.fr.WriteSettings(s...) })
}

// read is relayReader: it passes the server's frames on to the client
// until the pipe ends.
func (r *relay) read() {
	defer r.wg.Done()
	c := r.c
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			// The server ended (or the relay stopped): the connection
			// cannot answer its relayed streams any more.
			select {
			case <-r.done:
			default:
				c.closeConn()
			}
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				r.write(func() { r.fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				r.write(func() { r.fr.WritePing(true, f.Data) })
			}
		case *http2.WindowUpdateFrame:
			c.fromServerWindow(f)
		case *http2.MetaHeadersFrame:
			c.relayHeaders(f)
		case *http2.DataFrame:
			c.relayData(r, f)
		case *http2.RSTStreamFrame:
			c.mu.Lock()
			_, ok := c.streams[f.StreamID]
			c.mu.Unlock()
			if ok {
				c.wmu.Lock()
				c.fr.WriteRSTStream(f.StreamID, f.ErrCode)
				c.wmu.Unlock()
				c.mu.Lock()
				c.endStreamLocked(f.StreamID)
				c.mu.Unlock()
				c.closeIfDrained()
			}
		case *http2.GoAwayFrame:
			// x/net's server says GOAWAY on a connection error (the
			// client's fault, as it would say it to the client) or when
			// an answer asked to close the connection.
			c.goAway(f.ErrCode, f.ErrCode != http2.ErrCodeNo)
		}
		if r.br.Buffered() == 0 {
			c.wmu.Lock()
			c.flushLocked()
			c.wmu.Unlock()
		}
	}
}

// fromServerWindow passes the server's WINDOW_UPDATE on: for the
// connection, as much as makes the client's window the server's.
func (c *leanConn) fromServerWindow(f *http2.WindowUpdateFrame) {
	c.mu.Lock()
	r := c.relay
	var give int64
	ok := true
	if f.StreamID == 0 {
		r.recvConn += int64(f.Increment)
		if d := r.recvConn - c.recvConn; d > 0 {
			give = d
			c.recvConn += d
		}
	} else {
		_, ok = c.streams[f.StreamID]
		give = int64(f.Increment)
	}
	c.mu.Unlock()
	if ok && give > 0 {
		c.wmu.Lock()
		c.fr.WriteWindowUpdate(f.StreamID, uint32(give))
		c.wmu.Unlock()
	}
}

// relayHeaders passes an answer's header block on, re-encoded.
func (c *leanConn) relayHeaders(f *http2.MetaHeadersFrame) {
	c.mu.Lock()
	_, ok := c.streams[f.StreamID]
	maxFrame := int(c.maxFrame)
	c.mu.Unlock()
	if !ok {
		return
	}
	c.wmu.Lock()
	c.encBuf = c.encBuf[:0]
	for _, hf := range f.Fields {
		c.enc.WriteField(hf)
	}
	c.sizeSent = true
	c.out.writeBlock(c.encBuf, f.StreamID, maxFrame, f.StreamEnded())
	c.wmu.Unlock()
	if f.StreamEnded() {
		c.serverEnded(f.StreamID)
	}
}

// serverEnded notes that a relayed stream's answer ended.
func (c *leanConn) serverEnded(id uint32) {
	c.mu.Lock()
	st := c.streams[id]
	if st != nil {
		st.serverEnded = true
		if st.clientEnded {
			c.endStreamLocked(id)
		}
	}
	c.mu.Unlock()
	c.closeIfDrained()
}

// relayData passes a DATA frame of an answer on once the client's
// windows take it: one frame waits at most the send timeout for credit,
// then its stream is reset (the server's too).
func (c *leanConn) relayData(r *relay, f *http2.DataFrame) {
	id, n := f.StreamID, int64(len(f.Data()))
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		c.mu.Lock()
		st := c.streams[id]
		if st == nil {
			// Reset meanwhile: the server spent connection window the
			// client never sees used; it gets it back.
			r.waiting = false
			r.sendView -= n
			give := r.syncConnLocked()
			c.mu.Unlock()
			if give > 0 {
				r.writeWindowUpdate(0, uint32(give))
			}
			return
		}
		if n == 0 || n <= c.sendConn && n <= st.send {
			c.sendConn -= n
			st.send -= n
			r.sendView -= n
			r.waiting = false
			c.mu.Unlock()
			break
		}
		r.waiting = n > c.sendConn
		c.mu.Unlock()
		if timer == nil {
			if c.l.cfg.SendTimeout > 0 {
				timer = time.NewTimer(c.l.cfg.SendTimeout)
			} else {
				timer = time.NewTimer(time.Duration(1<<63 - 1))
			}
		}
		select {
		case <-c.credit:
		case <-r.done:
			return
		case <-timer.C:
			c.mu.Lock()
			r.waiting = false
			if c.streams[id] != nil {
				c.endStreamLocked(id)
			}
			r.sendView -= n
			give := r.syncConnLocked()
			c.mu.Unlock()
			c.wmu.Lock()
			c.fr.WriteRSTStream(id, http2.ErrCodeInternal)
			c.wmu.Unlock()
			r.writeRST(id, http2.ErrCodeCancel)
			if give > 0 {
				r.writeWindowUpdate(0, uint32(give))
			}
			c.closeIfDrained()
			return
		}
	}
	c.mu.Lock()
	maxFrame := int(c.maxFrame)
	c.mu.Unlock()
	data := f.Data()
	c.wmu.Lock()
	// In the client's frame size: the server has it, unless the client
	// lowered it just now.
	for first := true; first || len(data) > 0; first = false {
		k := min(len(data), maxFrame)
		c.fr.WriteData(id, f.StreamEnded() && k == len(data), data[:k])
		data = data[k:]
	}
	c.wmu.Unlock()
	if f.StreamEnded() {
		c.serverEnded(id)
	}
}
