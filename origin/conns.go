package origin

import (
	"context"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// connCounter counts the connections a transport has open, by the
// address it dialed: what the status page shows as a server's open
// connections. Its lock is a leaf: nothing else is taken under it.
type connCounter struct {
	mu   sync.Mutex
	open map[string]int // address → connections open; absent: none

	// max is max_conns (0: no cap) and evict, when set, closes idle
	// connections to an address: a dial that finds max connections
	// open calls it first. The Transport and the lean client each keep
	// idle connections of their own, and neither would otherwise close
	// the other's to stay under the cap together.
	max   int
	evict func(addr string)
}

// dialFunc is http.Transport's DialContext.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// dial wraps d so that every connection it makes is counted until closed.
func (c *connCounter) dial(d dialFunc) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if c.evict != nil && c.max > 0 && c.count(addr) >= c.max {
			c.evict(addr)
		}
		conn, err := d(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c.add(addr, 1)
		return &countedConn{Conn: conn, c: c, addr: addr}, nil
	}
}

func (c *connCounter) add(addr string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[addr] += n; c.open[addr] <= 0 {
		delete(c.open, addr)
	}
}

// count returns the connections open to addr.
func (c *connCounter) count(addr string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open[addr]
}

// countedConn is a counted connection: closing it (once, however often
// Close is called) takes it off the count.
type countedConn struct {
	net.Conn
	c    *connCounter
	addr string
	once sync.Once
}

func (cc *countedConn) Close() error {
	cc.once.Do(func() { cc.c.add(cc.addr, -1) })
	return cc.Conn.Close()
}

// CloseWrite half-closes the connection when the underlying one can, as
// net/http does on a *net.TCPConn (an upgraded connection's end).
func (cc *countedConn) CloseWrite() error {
	if cw, ok := cc.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// dialAddr is the address an http.Transport dials for u: its host and
// port, the scheme's default port when it has none.
func dialAddr(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port) // as the transport's canonical address
}

// maxErrorLen bounds the LastError a server keeps: an origin's error text
// (a TLS alert, a resolver's answer) is not the status page's to grow.
const maxErrorLen = 200

// failed records a failed request or health check of s at now (under
// Pool.mu).
func (s *server) failed(now time.Time, err error) {
	s.lastFailure = now
	if err == nil {
		s.lastError = ""
		return
	}
	msg := err.Error()
	if len(msg) > maxErrorLen {
		cut := maxErrorLen
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	s.lastError = msg
}
