package edge_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go/http3"

	"github.com/meridiancdn/meridian/edge"
)

// echoOrigin is a WebSocket echo server; other requests get 426, as an
// endpoint that only speaks WebSocket answers them.
func echoOrigin(opened *atomic.Int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			w.Header().Set("Upgrade", "websocket")
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		if opened != nil {
			opened.Add(1)
		}
		ctx := context.Background()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, append([]byte("echo:"), msg...)); err != nil {
				return
			}
		}
	}
}

func dialWS(ctx context.Context, e *env, path string) (*websocket.Conn, *http.Response, error) {
	return websocket.Dial(ctx, "ws://"+strings.TrimPrefix(e.base, "http://")+path, &websocket.DialOptions{Host: testHost})
}

// TestWebSocketThroughEdge: a real WebSocket client talks to an echo
// origin through the edge (on each HTTP/1.1 front: TestMain runs both);
// nothing is cached, so each connection reaches the origin.
func TestWebSocketThroughEdge(t *testing.T) {
	var opened atomic.Int64
	e := newEnv(t, echoOrigin(&opened))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for round := range 2 {
		c, resp, err := dialWS(ctx, e, "/ws")
		if err != nil {
			t.Fatalf("round %d: dial through the edge: %v (resp %v)", round, err, resp)
		}
		if !strings.Contains(resp.Header.Get("Via"), "edge1") {
			t.Errorf("101 without the edge's Via: %q", resp.Header.Get("Via"))
		}
		for i := range 3 {
			msg := fmt.Sprintf("hello %d.%d", round, i)
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			_, got, err := c.Read(ctx)
			if err != nil || string(got) != "echo:"+msg {
				t.Fatalf("read %q, %v; want echo:%s", got, err, msg)
			}
		}
		// A large binary message, both ways.
		big := make([]byte, 300<<10)
		for i := range big {
			big[i] = byte(i)
		}
		c.SetReadLimit(1 << 20)
		if err := c.Write(ctx, websocket.MessageBinary, big); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.Read(ctx); err != nil || len(got) != len(big)+5 {
			t.Fatalf("big message: %d bytes, %v", len(got), err)
		}
		c.Close(websocket.StatusNormalClosure, "")
	}
	if n := opened.Load(); n != 2 {
		t.Fatalf("origin accepted %d WebSockets, want 2 (never cached)", n)
	}
	if n := e.counter("meridian_edge_upgraded_total"); n != 2 {
		t.Fatalf("meridian_edge_upgraded_total %v", n)
	}
	waitFor(t, func() bool { return e.metric("meridian_edge_upgraded_connections") == 0 })
}

// TestWebSocketOff: a site whose upgrade.protocols is empty strips
// Upgrade as before, and the origin answers 426.
func TestWebSocketOff(t *testing.T) {
	e := newEnv(t, echoOrigin(nil), func(c *edge.Config) { c.Sites[0].Upgrade.Protocols = []string{} })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, resp, err := dialWS(ctx, e, "/ws")
	if err == nil || resp == nil || resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("dial: %v, resp %v; want the origin's 426", err, resp)
	}
	// Upgrade without Connection: upgrade is no upgrade request either.
	r, _ := e.get("/ws", "Upgrade", "websocket")
	wantStatus(t, r, http.StatusUpgradeRequired)
}

// TestWebSocketCap: past server.max_upgraded an upgrade is answered 503;
// a closed connection frees its place.
func TestWebSocketCap(t *testing.T) {
	e := newEnv(t, echoOrigin(nil), func(c *edge.Config) { c.Server.MaxUpgraded = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c1, _, err := dialWS(ctx, e, "/ws")
	if err != nil {
		t.Fatal(err)
	}
	if n := e.metric("meridian_edge_upgraded_connections"); n != 1 {
		t.Fatalf("upgraded connections %v, want 1", n)
	}
	_, resp, err := dialWS(ctx, e, "/ws")
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("second upgrade: %v, resp %v; want 503 with Retry-After", err, resp)
	}
	if n := e.counter("meridian_edge_upgrade_rejected_total"); n != 1 {
		t.Fatalf("rejected %v", n)
	}
	c1.Close(websocket.StatusNormalClosure, "")
	waitFor(t, func() bool { return e.metric("meridian_edge_upgraded_connections") == 0 })
	c3, _, err := dialWS(ctx, e, "/ws")
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	c3.Close(websocket.StatusNormalClosure, "")
}

// TestWebSocketIdleTimeout: a connection on which nobody sends anything
// is closed after upgrade.idle_timeout (short here; no claim on how
// soon).
func TestWebSocketIdleTimeout(t *testing.T) {
	e := newEnv(t, echoOrigin(nil), func(c *edge.Config) { c.Sites[0].Upgrade.IdleTimeout = 100 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := dialWS(ctx, e, "/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if _, _, err := c.Read(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		t.Fatalf("idle connection: read %v; want it closed by the edge", err)
	}
	waitFor(t, func() bool { return e.metric("meridian_edge_upgraded_connections") == 0 })
}

// TestUpgradeHostile: CONNECT to a site's host is refused, never
// forwarded; an origin that switches to a protocol nobody asked for is
// a 502.
func TestUpgradeHostile(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			t.Errorf("CONNECT reached the origin")
		}
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "h2c")
		w.WriteHeader(http.StatusSwitchingProtocols)
	})
	addr := strings.TrimPrefix(e.base, "http://")
	if got := rawExchange(t, addr, "CONNECT site.test:443 HTTP/1.1\r\nHost: site.test:443\r\n\r\n"); got != http.StatusMethodNotAllowed {
		t.Fatalf("CONNECT: %d, want 405", got)
	}
	if got := rawExchange(t, addr, "GET /ws HTTP/1.1\r\nHost: site.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"); got != http.StatusBadGateway {
		t.Fatalf("mismatched switch: %d, want 502", got)
	}
	if e.origin.total.Load() != 1 {
		t.Fatalf("origin saw %d requests, want 1 (the upgrade only)", e.origin.total.Load())
	}
}

// TestWebSocketOverTLS: wss:// through the edge's TLS listener, which
// speaks HTTP/1.1 to a client that does not ask for h2 (browsers open
// such a connection for WebSockets: the edge does not offer HTTP/2's
// extended CONNECT).
func TestWebSocketOverTLS(t *testing.T) {
	te := newTLSEnv(t, echoOrigin(nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: te.pool(), ServerName: testHost}}
	defer tr.CloseIdleConnections()
	c, _, err := websocket.Dial(ctx, "wss://"+te.tlsAddr+"/ws", &websocket.DialOptions{Host: testHost, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("over tls")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.Read(ctx); err != nil || string(got) != "echo:over tls" {
		t.Fatalf("read %q, %v", got, err)
	}
	c.Close(websocket.StatusNormalClosure, "")
	// An HTTP/2 CONNECT (what extended CONNECT would be) is refused.
	h2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: te.pool(), ServerName: testHost}, ForceAttemptHTTP2: true}
	defer h2.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodConnect, "https://"+te.tlsAddr, nil)
	req.Host = testHost
	resp, err := h2.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("HTTP/2 CONNECT: %s %d, want HTTP/2 405", resp.Proto, resp.StatusCode)
	}
	// And over HTTP/3: a CONNECT with a site's Host is never forwarded.
	h3 := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: te.pool(), ServerName: testHost}}
	defer h3.Close()
	req, _ = http.NewRequest(http.MethodConnect, "https://"+te.tlsAddr, nil)
	req.Host = testHost
	resp, err = h3.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 3 || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("HTTP/3 CONNECT: %s %d, want HTTP/3 405", resp.Proto, resp.StatusCode)
	}
	if n := te.origin.total.Load(); n != 1 {
		t.Fatalf("origin saw %d requests, want 1 (the WebSocket; no CONNECT)", n)
	}
}

// TestWebSocketDrain: when the edge drains, an open WebSocket keeps
// working through its site's upgrade.drain_grace, then the edge closes
// it and counts it; a new upgrade is refused (503); a tunnel that ends
// on its own ends the drain early, uncounted; and DrainUpgraded never
// outlasts its context: at the deadline it closes what is left.
func TestWebSocketDrain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	echo := func(t *testing.T, c *websocket.Conn, msg string) error {
		t.Helper()
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			return err
		}
		_, got, err := c.Read(ctx)
		if err == nil && string(got) != "echo:"+msg {
			t.Fatalf("read %q, want echo:%s", got, msg)
		}
		return err
	}
	closedByEdge := func(t *testing.T, c *websocket.Conn) {
		t.Helper()
		if _, _, err := c.Read(ctx); err == nil || ctx.Err() != nil {
			t.Fatalf("read %v; want the connection closed by the edge", err)
		}
	}

	t.Run("grace", func(t *testing.T) {
		e := newEnv(t, echoOrigin(nil), func(c *edge.Config) { c.Sites[0].Upgrade.DrainGrace = 300 * time.Millisecond })
		open, _, err := dialWS(ctx, e, "/ws")
		if err != nil {
			t.Fatal(err)
		}
		defer open.CloseNow()
		gone, _, err := dialWS(ctx, e, "/ws")
		if err != nil {
			t.Fatal(err)
		}
		drained := make(chan error, 1)
		go func() { drained <- e.edge.DrainUpgraded(ctx) }()
		waitFor(t, func() bool {
			_, resp, err := dialWS(ctx, e, "/ws")
			return err != nil && resp != nil && resp.StatusCode == http.StatusServiceUnavailable
		})
		// The client that leaves by itself within the grace is no drain's.
		gone.Close(websocket.StatusGoingAway, "")
		closedByEdge(t, open)
		if err := <-drained; err != nil {
			t.Fatalf("DrainUpgraded: %v", err)
		}
		if n := e.counter("meridian_edge_upgrade_drained_total"); n != 1 {
			t.Fatalf("meridian_edge_upgrade_drained_total %v, want 1", n)
		}
		if n := e.metric("meridian_edge_upgraded_connections"); n != 0 {
			t.Fatalf("%v upgraded connections after the drain", n)
		}
	})

	t.Run("works within the grace, closed at the deadline", func(t *testing.T) {
		e := newEnv(t, echoOrigin(nil), func(c *edge.Config) { c.Sites[0].Upgrade.DrainGrace = time.Hour })
		c, _, err := dialWS(ctx, e, "/ws")
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		dctx, dcancel := context.WithCancel(ctx)
		drained := make(chan error, 1)
		go func() { drained <- e.edge.DrainUpgraded(dctx) }()
		waitFor(t, func() bool {
			_, resp, err := dialWS(ctx, e, "/ws")
			return err != nil && resp != nil && resp.StatusCode == http.StatusServiceUnavailable
		})
		for i := range 3 {
			if err := echo(t, c, fmt.Sprint("still here ", i)); err != nil {
				t.Fatalf("within the grace: %v", err)
			}
		}
		select {
		case err := <-drained:
			t.Fatalf("DrainUpgraded returned %v with a connection open in its grace", err)
		default:
		}
		dcancel() // the shutdown's deadline
		if err := <-drained; !errors.Is(err, context.Canceled) {
			t.Fatalf("DrainUpgraded at its deadline: %v", err)
		}
		closedByEdge(t, c)
		waitFor(t, func() bool { return e.counter("meridian_edge_upgrade_drained_total") == 1 })
		waitFor(t, func() bool { return e.metric("meridian_edge_upgraded_connections") == 0 })
	})
}

// TestWebSocketUncappedCounted: with server.max_upgraded -1 (no cap) the
// open tunnels are still counted, so that the gauge and the drain see
// them (they went uncounted, and the count negative, before).
func TestWebSocketUncappedCounted(t *testing.T) {
	e := newEnv(t, echoOrigin(nil), func(c *edge.Config) { c.Server.MaxUpgraded = -1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := dialWS(ctx, e, "/ws")
	if err != nil {
		t.Fatal(err)
	}
	if n := e.metric("meridian_edge_upgraded_connections"); n != 1 {
		t.Fatalf("upgraded connections %v, want 1", n)
	}
	c.Close(websocket.StatusNormalClosure, "")
	waitFor(t, func() bool { return e.metric("meridian_edge_upgraded_connections") == 0 })
}
