package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// h1CloseAttack writes one GET per connection and closes it unread.
type h1CloseAttack struct {
	cfg AttackConfig
	t   target
	c   *attackCounters
	f   *fanout
}

func (a *h1CloseAttack) start(ctx context.Context) error {
	// One request first, to find out whether anything listens.
	conn, err := a.dial(ctx)
	if err != nil {
		return err
	}
	return conn.Close()
}

func (a *h1CloseAttack) dial(ctx context.Context) (net.Conn, error) {
	d := &net.Dialer{Timeout: a.cfg.ClientTimeout}
	if !a.t.tls {
		return d.DialContext(ctx, "tcp", a.t.addr)
	}
	td := &tls.Dialer{NetDialer: d, Config: clientTLS(a.cfg.TLSConfig, "http/1.1")}
	return td.DialContext(ctx, "tcp", a.t.addr)
}

func (a *h1CloseAttack) fire(ctx context.Context, n int64) bool {
	return a.f.try(func() {
		conn, err := a.dial(ctx)
		if err != nil {
			a.c.fail(err)
			return
		}
		defer conn.Close()
		req := "GET " + a.t.requestURI + strconv.FormatInt(n, 10) + " HTTP/1.1\r\nHost: " + a.t.host +
			"\r\nUser-Agent: meridian-bench-attack\r\n\r\n"
		conn.SetWriteDeadline(time.Now().Add(a.cfg.ClientTimeout))
		if _, err := io.WriteString(conn, req); err != nil {
			a.c.fail(err)
			return
		}
		a.c.sent.Add(1)
	})
}

func (a *h1CloseAttack) finish() { a.f.wait() }

// clientTLS clones base (nil: the defaults) with the given ALPN protocols.
func clientTLS(base *tls.Config, protos ...string) *tls.Config {
	c := &tls.Config{}
	if base != nil {
		c = base.Clone()
	}
	c.NextProtos = protos
	return c
}

// getAttack sends GETs over HTTP/1.1 keep-alive and reads each answer to
// its end, or abandons it after the client timeout (unique-keys,
// slow-misses).
type getAttack struct {
	cfg AttackConfig
	t   target
	c   *attackCounters
	f   *fanout
	tr  *http.Transport
}

func newGetAttack(cfg AttackConfig, t target, c *attackCounters) *getAttack {
	var p http.Protocols
	p.SetHTTP1(true)
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: cfg.ClientTimeout}).DialContext,
		TLSClientConfig:     clientTLS(cfg.TLSConfig),
		MaxIdleConnsPerHost: cfg.MaxInflight,
		DisableCompression:  true,
		Protocols:           &p,
	}
	return &getAttack{cfg: cfg, t: t, c: c, f: newFanout(cfg.MaxInflight), tr: tr}
}

func (a *getAttack) start(context.Context) error { return nil }

func (a *getAttack) fire(ctx context.Context, n int64) bool {
	return a.f.try(func() { a.get(ctx, n) })
}

func (a *getAttack) get(ctx context.Context, n int64) {
	rctx, cancel := context.WithTimeout(ctx, a.cfg.ClientTimeout)
	defer cancel()
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		if i.Err == nil && !wrote.Swap(true) {
			a.c.sent.Add(1)
		}
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(rctx, trace), http.MethodGet,
		a.t.url+strconv.FormatInt(n, 10), nil)
	if err != nil {
		a.c.fail(err)
		return
	}
	req.Host = a.t.host
	resp, err := a.tr.RoundTrip(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil {
			a.c.answer(resp.StatusCode)
			return
		}
	}
	switch {
	case rctx.Err() != nil && wrote.Load():
		// Our timeout, or the attack stopped (cut short by the kill
		// limit, or its end) while the answer was on its way: not the
		// server's doing.
		a.c.abandoned.Add(1)
	default:
		a.c.fail(err)
	}
}

func (a *getAttack) finish() {
	a.f.wait()
	a.tr.CloseIdleConnections()
}

// h3CancelAttack sends each request over HTTP/3 and cancels it as soon as
// it is written: the request stream is opened, its HEADERS written and its
// sending side closed (so the whole request goes out), then its receiving
// side is cancelled (STOP_SENDING with H3_REQUEST_CANCELLED), which ends
// the request's context on a quic-go server. quic-go's RoundTrip cannot do
// this: cancelling its context resets the sending side too, which drops a
// request not yet on the wire, and most never reach the server.
type h3CancelAttack struct {
	cfg   AttackConfig
	t     target
	c     *attackCounters
	f     *fanout
	tr    *http3.Transport // makes the client conns; it dials nothing itself
	conns []*h3Conn
}

// h3Conn is one of the attack's QUIC connections, opened again when the
// server closes it.
type h3Conn struct {
	// mu guards qc and cc, and serializes the dials (the requests that
	// wait for a dial have nothing else to do).
	mu sync.Mutex
	qc *quic.Conn
	cc *http3.ClientConn
}

func newH3CancelAttack(cfg AttackConfig, t target, c *attackCounters) *h3CancelAttack {
	a := &h3CancelAttack{cfg: cfg, t: t, c: c, f: newFanout(cfg.MaxInflight), tr: &http3.Transport{DisableCompression: true}}
	for range cfg.Conns {
		a.conns = append(a.conns, &h3Conn{})
	}
	return a
}

// h3Cancelled is the code of the attack's STOP_SENDING.
const h3Cancelled = quic.StreamErrorCode(http3.ErrCodeRequestCanceled)

// start opens each connection and sends one request on it that is let
// finish, so that a server without HTTP/3 is an error, not a run of
// failures.
func (a *h3CancelAttack) start(ctx context.Context) error {
	for _, h := range a.conns {
		cc, err := h.get(ctx, a)
		if err != nil {
			return fmt.Errorf("h3: %w", err)
		}
		rctx, cancel := context.WithTimeout(ctx, a.cfg.ClientTimeout)
		err = a.head(rctx, cc)
		cancel()
		if err != nil {
			return fmt.Errorf("h3: %w", err)
		}
	}
	return nil
}

// head sends a HEAD for the attack's URL and reads the response.
func (a *h3CancelAttack) head(ctx context.Context, cc *http3.ClientConn) error {
	str, err := cc.OpenRequestStream(ctx)
	if err != nil {
		return err
	}
	defer str.CancelRead(h3Cancelled)
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, a.t.url+"start", nil)
	if err != nil {
		return err
	}
	req.Host = a.t.host
	if err := str.SendRequestHeader(req); err != nil {
		return err
	}
	str.Close()
	resp, err := str.ReadResponse()
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// get returns the connection's client conn, dialling when there is none
// or the server closed it.
func (h *h3Conn) get(ctx context.Context, a *h3CancelAttack) (*http3.ClientConn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.qc != nil && h.qc.Context().Err() == nil {
		return h.cc, nil
	}
	if h.qc != nil {
		h.qc.CloseWithError(0, "")
		h.qc, h.cc = nil, nil
	}
	dctx, cancel := context.WithTimeout(ctx, a.cfg.ClientTimeout)
	defer cancel()
	qc, err := quic.DialAddr(dctx, a.t.addr, clientTLS(a.cfg.TLSConfig, http3.NextProtoH3), &quic.Config{})
	if err != nil {
		return nil, err
	}
	a.c.dials.Add(1)
	h.qc, h.cc = qc, a.tr.NewClientConn(qc)
	return h.cc, nil
}

// close closes the connection.
func (h *h3Conn) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.qc != nil {
		h.qc.CloseWithError(0, "")
		h.qc, h.cc = nil, nil
	}
}

func (a *h3CancelAttack) fire(ctx context.Context, n int64) bool {
	h := a.conns[n%int64(len(a.conns))]
	return a.f.try(func() {
		cc, err := h.get(ctx, a)
		if err != nil {
			a.c.fail(err)
			return
		}
		rctx, cancel := context.WithTimeout(ctx, a.cfg.ClientTimeout)
		defer cancel()
		str, err := cc.OpenRequestStream(rctx) // waits for the server's stream credit
		if err != nil {
			a.c.fail(err)
			return
		}
		req, err := http.NewRequestWithContext(rctx, http.MethodGet, a.t.url+strconv.FormatInt(n, 10), nil)
		if err == nil {
			req.Host = a.t.host
			err = str.SendRequestHeader(req)
		}
		if err != nil {
			str.CancelWrite(h3Cancelled)
			str.CancelRead(h3Cancelled)
			a.c.fail(err)
			return
		}
		str.Close() // the request is complete: HEADERS and FIN
		a.c.sent.Add(1)
		str.CancelRead(h3Cancelled) // and called off
		a.c.resets.Add(1)
	})
}

func (a *h3CancelAttack) finish() {
	a.f.wait()
	for _, h := range a.conns {
		h.close()
	}
}
