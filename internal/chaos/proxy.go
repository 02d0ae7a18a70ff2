package chaos

import (
	"net"
	"sync"
	"testing"
	"time"
)

// Link is how a Proxy treats its connections; the zero value forwards.
type Link struct {
	// Delay holds every chunk of bytes this long before forwarding it,
	// each way (added latency).
	Delay time.Duration
	// Drop accepts connections but forwards nothing either way (a
	// black hole: the other side sees silence, then its own timeout).
	Drop bool
	// Refuse closes every new connection at once, with a reset.
	Refuse bool
}

// Proxy is a TCP proxy on 127.0.0.1 in front of one address, for the
// links between nodes: it adds latency, drops or refuses connections, and
// cuts the ones open. It stands in for netem, which the CI kernel lacks.
type Proxy struct {
	ln net.Listener

	mu     sync.Mutex
	target string
	link   Link
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// StartProxy starts a proxy to target; the test's Cleanup stops it.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetLink changes how new and open connections are treated (open ones
// see the new Delay and Drop on their next chunk).
func (p *Proxy) SetLink(l Link) {
	p.mu.Lock()
	p.link = l
	p.mu.Unlock()
}

// SetTarget points new connections at another address.
func (p *Proxy) SetTarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
}

// Cut resets every open connection.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		reset(c)
	}
}

// Close stops the proxy and closes its connections; it returns once every
// goroutine it started has ended. Safe to call more than once.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		link, target, closed := p.link, p.target, p.closed
		if !closed {
			p.conns[c] = struct{}{}
			p.wg.Add(1)
		}
		p.mu.Unlock()
		if closed {
			c.Close()
			return
		}
		go p.serve(c, link, target)
	}
}

// serve forwards one connection until either side closes.
func (p *Proxy) serve(c net.Conn, link Link, target string) {
	defer p.wg.Done()
	defer p.forget(c)
	if link.Refuse {
		reset(c)
		return
	}
	up, err := net.DialTimeout("tcp", target, 2*time.Second)
	if err != nil {
		reset(c)
		return
	}
	if !p.track(up) {
		up.Close()
		return
	}
	defer p.forget(up)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(up, c) }()
	go func() { defer wg.Done(); p.pipe(c, up) }()
	wg.Wait()
}

// pipe copies src to dst chunk by chunk, applying the current link; when
// either side ends it closes both.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			link := p.link
			p.mu.Unlock()
			if link.Delay > 0 {
				time.Sleep(link.Delay)
			}
			if !link.Drop {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return // EOF included: HTTP/1.1 does not half-close
		}
	}
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) forget(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// reset closes c with a TCP RST.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}
