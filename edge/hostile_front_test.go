package edge_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/listen"
	"github.com/meridiancdn/meridian/edge/store"
	"github.com/meridiancdn/meridian/internal/poll"
)

// Hostile clients against the client-facing listeners (issue 12 items 7,
// 8, 9, 11, 13 and issue 13's connection caps and stream-reset abuse).
// TestMain runs each test on both HTTP/1.1 fronts.

const hostHdr = "Host: " + testHost + "\r\n"

// dialFrom opens a TCP connection to addr from the local address from
// ("" for any): 127.0.0.x stand for distinct clients on loopback.
func dialFrom(t *testing.T, addr, from string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(15 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// readResp reads one response and its body from br.
func readResp(br *bufio.Reader, method string) (*http.Response, string, error) {
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

// wantClosed asserts that the edge closes c without sending another byte.
func wantClosed(t *testing.T, br *bufio.Reader, what string) {
	t.Helper()
	b, err := br.ReadByte()
	if err == nil {
		rest, _ := br.Peek(br.Buffered())
		t.Fatalf("%s: the connection stays open (read %q)", what, append([]byte{b}, rest...))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the connection stays open (no byte, no close, until the deadline)", what)
	}
}

// metric returns the value of the edge's series name{labels}: a counter,
// gauge, or the sum over series when labels is empty.
func (e *env) metric(name string, labels ...string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
				}
				if !found {
					continue series
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// eventually polls cond until it holds (see internal/poll).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, 10*time.Second, what, cond)
}

// formOrigin answers every request after reading its body whole: GETs
// with a cacheable "ok", other methods with "ok <method> <body>".
func formOrigin(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "ok")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintf(w, "ok %s %s", r.Method, b)
}

// Item 7: a request with both Content-Length and Transfer-Encoding (or
// Transfer-Encoding in HTTP/1.0) is answered 400 and its connection
// closed, wherever it comes on the connection: first, after a hit, after
// a miss, after a request with a body (which the fast front lends to
// net/http for good). Nothing of it reaches the origin.
func TestAmbiguousFramingRefused(t *testing.T) {
	e := newEnv(t, formOrigin)
	wantStatus(t, func() *http.Response { r, _ := e.get("/obj"); return r }(), 200)
	attacks := map[string]string{
		"CL and TE":          "GET /smuggle HTTP/1.1\r\n" + hostHdr + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"TE then CL":         "POST /smuggle HTTP/1.1\r\n" + hostHdr + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
		"case and spaces":    "POST /smuggle HTTP/1.1\r\n" + hostHdr + "content-length:  4 \r\ntransfer-encoding: CHUNKED\r\n\r\n0\r\n\r\n",
		"TE in HTTP/1.0":     "POST /smuggle HTTP/1.0\r\n" + hostHdr + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"TE, CL in HTTP/1.0": "POST /smuggle HTTP/1.0\r\n" + hostHdr + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
	}
	before := map[string]string{
		"first":                "",
		"after a hit":          "GET /obj HTTP/1.1\r\n" + hostHdr + "\r\n",
		"after a miss":         "GET /miss HTTP/1.1\r\n" + hostHdr + "\r\n",
		"after a body":         "POST /form HTTP/1.1\r\n" + hostHdr + "Content-Length: 3\r\n\r\nabc",
		"after a chunked body": "POST /form HTTP/1.1\r\n" + hostHdr + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"after OPTIONS *":      "OPTIONS * HTTP/1.1\r\n" + hostHdr + "\r\n",
	}
	// What a desync would turn into a request of its own.
	const next = "GET /next HTTP/1.1\r\n" + hostHdr + "\r\n"
	for an, attack := range attacks {
		for bn, prefix := range before {
			t.Run(an+"/"+bn, func(t *testing.T) {
				c := dialFrom(t, e.srv.Addr(), "")
				io.WriteString(c, prefix+attack+next)
				br := bufio.NewReader(c)
				if prefix != "" {
					resp, body, err := readResp(br, "GET")
					if err != nil || resp.StatusCode != 200 {
						t.Fatalf("the request before: %v %v %q", resp, err, body)
					}
				}
				resp, body, err := readResp(br, "GET")
				if err != nil {
					t.Fatalf("no answer to the attack: %v", err)
				}
				if resp.StatusCode != http.StatusBadRequest || !resp.Close {
					t.Fatalf("attack answered %d (Connection: close %v), want 400 and close: %q", resp.StatusCode, resp.Close, body)
				}
				wantClosed(t, br, "after the 400")
			})
		}
	}
	if n := e.origin.count("/smuggle") + e.origin.count("/next"); n != 0 {
		t.Fatalf("the origin got %d requests of the attacks", n)
	}
	if got, want := e.metric("meridian_edge_ambiguous_framing_total"), float64(len(attacks)*len(before)); got != want {
		t.Fatalf("meridian_edge_ambiguous_framing_total %v, want %v", got, want)
	}
}

// Item 7, the other way: requests that only look like it are served and
// the connection kept: a body that contains such a header, chunk
// extensions, the CRLF that clients add after a POST body, OPTIONS *.
func TestFramingNoFalseAlarm(t *testing.T) {
	e := newEnv(t, formOrigin)
	fake := "GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
	steps := []struct {
		raw, method, body string
	}{
		{"POST /form HTTP/1.1\r\n" + hostHdr + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(fake)) + fake, "POST", "ok POST " + fake},
		{"GET /obj HTTP/1.1\r\n" + hostHdr + "\r\n", "GET", "ok"},
		{"POST /form HTTP/1.1\r\n" + hostHdr + "Transfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x;ext=1\r\n%s\r\n0\r\n\r\n", len(fake), fake), "POST", "ok POST " + fake},
		{"\r\nGET /obj HTTP/1.1\r\n" + hostHdr + "\r\n", "GET", "ok"}, // CRLF after a POST body
		{"OPTIONS * HTTP/1.1\r\n" + hostHdr + "\r\n", "OPTIONS", ""},
		{"PUT /form HTTP/1.1\r\n" + hostHdr + "Content-Length: 2\r\n\r\nhi", "PUT", "ok PUT hi"},
		{"GET /obj HTTP/1.1\r\n" + hostHdr + "Content-Length: 0\r\n\r\n", "GET", "ok"},
		{"GET /obj HTTP/1.1\r\n" + hostHdr + "\r\n", "GET", "ok"},
	}
	for _, pipelined := range []bool{false, true} {
		c := dialFrom(t, e.srv.Addr(), "")
		br := bufio.NewReader(c)
		if pipelined {
			var all strings.Builder
			for _, s := range steps {
				all.WriteString(s.raw)
			}
			io.WriteString(c, all.String())
		}
		for i, s := range steps {
			if !pipelined {
				io.WriteString(c, s.raw)
			}
			resp, body, err := readResp(br, s.method)
			if err != nil {
				t.Fatalf("pipelined %v, step %d: %v", pipelined, i, err)
			}
			if resp.StatusCode != 200 || body != s.body || resp.Close {
				t.Fatalf("pipelined %v, step %d: %d %q (close %v), want 200 %q", pipelined, i, resp.StatusCode, body, resp.Close, s.body)
			}
		}
	}
	if n := e.metric("meridian_edge_ambiguous_framing_total"); n != 0 {
		t.Fatalf("%v requests refused", n)
	}
}

// Item 8: a malformed chunked request body on a pass-through request is
// the client's fault: 400, the connection closed, and the upstream
// request aborted (the origin never gets a complete body).
func TestMalformedChunkedBodyIs400(t *testing.T) {
	got := make(chan error, 16)
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		got <- err
		w.WriteHeader(http.StatusOK)
	})
	for name, body := range map[string]string{
		"bad size":       "5\r\nhello\r\nZZ\r\nxx\r\n0\r\n\r\n",
		"no CRLF":        "5\r\nhelloXY3\r\nabc\r\n0\r\n\r\n",
		"bare LF":        "5\nhello\r\n0\r\n\r\n",
		"size too large": "10000000000000000\r\nhello\r\n0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			c := dialFrom(t, e.srv.Addr(), "")
			io.WriteString(c, "POST /upload HTTP/1.1\r\n"+hostHdr+"Transfer-Encoding: chunked\r\n\r\n"+body)
			br := bufio.NewReader(c)
			resp, text, err := readResp(br, "POST")
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusBadRequest || !resp.Close {
				t.Fatalf("answered %d (close %v) %q, want 400 and close", resp.StatusCode, resp.Close, text)
			}
			wantCS(t, resp, "fwd=method", "detail=client-body")
			wantClosed(t, br, "after the 400")
			select {
			case err := <-got:
				if err == nil {
					t.Fatal("the origin read a complete body")
				}
			case <-time.After(2 * time.Second):
				// The transport gave up before it sent the header.
			}
		})
	}
}

// Item 9: the first request's header must be complete within
// read_header_timeout of the accept on both fronts: a client that waits
// just short of it before its first byte and again before the end is cut
// off at the deadline, not served. (The fast front used to restart the
// clock at the first partial read, allowing twice the timeout.)
func TestSlowHeaderDeadline(t *testing.T) {
	const rht = 2 * time.Second
	e := newEnv(t, formOrigin, func(c *edge.Config) { c.Server.ReadHeaderTimeout = rht })
	e.get("/obj")
	for name, parts := range map[string][]string{
		// Each part is sent 0.65 × rht after the previous one: the
		// header ends at 1.3 × rht, past the deadline.
		"first byte late":    {"", "GET /obj HTTP/1.1\r\n", hostHdr + "\r\n"},
		"header in two":      {"GET /obj HTTP/1.1\r\n", "", hostHdr + "\r\n"},
		"lent mid-header":    {"GET /obj HTTP/1.1\r\n" + hostHdr, "X-A: 1\n", "\r\n"}, // a bare LF: the fast front lends it unfinished
		"second request":     {"GET /obj HTTP/1.1\r\n" + hostHdr + "\r\nGET /obj HTTP/1.1\r\n", "", hostHdr + "\r\n"},
		"body request, slow": {"POST /form HTTP/1.1\r\n", "", hostHdr + "Content-Length: 2\r\n\r\nhi"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := dialFrom(t, e.srv.Addr(), "")
			start := time.Now()
			for i, p := range parts {
				if i > 0 {
					time.Sleep(time.Until(start.Add(time.Duration(i) * rht * 65 / 100)))
				}
				io.WriteString(c, p)
			}
			// Closed by 1.3 × rht at the latest (a header that ended
			// in time would be answered, then idle for idle_timeout).
			c.SetReadDeadline(start.Add(rht*13/10 + rht))
			all, err := io.ReadAll(c)
			open := err != nil && !isReset(err)
			served := strings.Count(string(all), "HTTP/1.1 200")
			want := 0
			if name == "second request" {
				want = 1 // the first request, sent at once, is answered
			}
			if served != want || open {
				t.Fatalf("%d requests answered (want %d), connection still open %v (%v): the header took %v against read_header_timeout %v:\n%s",
					served, want, open, err, rht*13/10, rht, all)
			}
		})
	}
}

func isReset(err error) bool {
	return err != nil && (errors.Is(err, io.EOF) || strings.Contains(err.Error(), "reset"))
}

// tlsFor gives a config mutation that adds the TLS (HTTP/2 and HTTP/3)
// listener, and the pool that trusts its certificate.
func tlsFor(t *testing.T) (func(*edge.Config), *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM, err := listen.SelfSignedCert([]string{"127.0.0.1", testHost}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return func(c *edge.Config) {
		c.TLS = &edge.TLSConfig{Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile}
	}, pool
}

// Item 9 / issue 13: server.max_connections and max_connections_per_ip,
// on the plain listener (either front), the TLS listener and QUIC, all
// counted together; a connection past a cap is closed at accept, counted
// by reason, and its slot is free again once a connection closes.
func TestConnectionCaps(t *testing.T) {
	withTLS, pool := tlsFor(t)
	e := newEnv(t, formOrigin, withTLS, func(c *edge.Config) {
		c.Server.MaxConnections = 4
		c.Server.MaxConnectionsPerIP = 2
	})
	e.get("/obj")
	eventually(t, "the client's connection counted", func() bool { return e.metric("meridian_edge_connections") == 1 })
	e.client.CloseIdleConnections()
	eventually(t, "the client's connection released", func() bool { return e.metric("meridian_edge_connections") == 0 })

	hit := func(c net.Conn) error {
		if _, err := io.WriteString(c, "GET /obj HTTP/1.1\r\n"+hostHdr+"\r\n"); err != nil {
			return err
		}
		resp, _, err := readResp(bufio.NewReader(c), "GET")
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		return err
	}
	tlsConf := &tls.Config{RootCAs: pool, ServerName: testHost, NextProtos: []string{"h2", "http/1.1"}}
	tlsDial := func(from string) (*tls.Conn, error) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", e.srv.TLSAddr(), tlsConf)
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, err
	}

	a1 := dialFrom(t, e.srv.Addr(), "127.0.0.1")
	if err := hit(a1); err != nil {
		t.Fatal(err)
	}
	a2, err := tlsDial("127.0.0.1") // the TLS listener counts with the plain one
	if err != nil {
		t.Fatal(err)
	}
	if a3, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}}).Dial("tcp", e.srv.Addr()); err == nil {
		defer a3.Close()
		a3.SetDeadline(time.Now().Add(10 * time.Second))
		if err := hit(a3); err == nil {
			t.Fatal("a third connection from 127.0.0.1 was served (max_connections_per_ip 2)")
		}
	}
	if _, err := tlsDial("127.0.0.1"); err == nil {
		t.Fatal("a third TLS connection from 127.0.0.1 was accepted")
	}
	start := time.Now()
	qc, err := dialQUIC(t, e.srv.TLSAddr(), "127.0.0.1", pool)
	if err == nil {
		qc.CloseWithError(0, "")
		t.Fatal("a third connection from 127.0.0.1 over QUIC was accepted")
	}
	t.Logf("QUIC refused after %v: %v", time.Since(start), err)
	// A QUIC client may send its Initial more than once: each is refused.
	if got := e.metric("meridian_edge_connections_rejected_total", "reason", "max_connections_per_ip"); got < 3 {
		t.Fatalf("rejected per ip: %v, want 3 or more", got)
	}

	b1 := dialFrom(t, e.srv.Addr(), "127.0.0.2") // another client
	if err := hit(b1); err != nil {
		t.Fatalf("127.0.0.2 refused: %v", err)
	}
	qb, err := dialQUIC(t, e.srv.TLSAddr(), "127.0.0.2", pool)
	if err != nil {
		t.Fatalf("127.0.0.2 over QUIC: %v", err)
	}
	eventually(t, "4 connections open", func() bool { return e.metric("meridian_edge_connections") == 4 })
	// max_connections 4 reached: refused at accept (the reset may even
	// beat the connect's return).
	if c1, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}).Dial("tcp", e.srv.Addr()); err == nil {
		defer c1.Close()
		c1.SetDeadline(time.Now().Add(10 * time.Second))
		if err := hit(c1); err == nil {
			t.Fatal("a fifth connection was served (max_connections 4)")
		}
	}
	if got := e.metric("meridian_edge_connections_rejected_total", "reason", "max_connections"); got != 1 {
		t.Fatalf("rejected for max_connections: %v, want 1", got)
	}

	a2.Close()
	qb.CloseWithError(0, "")
	eventually(t, "two connections released", func() bool { return e.metric("meridian_edge_connections") == 2 })
	a4 := dialFrom(t, e.srv.Addr(), "127.0.0.1")
	if err := hit(a4); err != nil {
		t.Fatalf("127.0.0.1 refused after one of its connections closed: %v", err)
	}
	if err := hit(a1); err != nil {
		t.Fatalf("the first connection no longer served: %v", err)
	}
}

// dialQUIC opens a QUIC (HTTP/3) connection to addr from the local IP from.
func dialQUIC(t *testing.T, addr, from string, pool *x509.CertPool) (*quic.Conn, error) {
	t.Helper()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(from)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	t.Cleanup(func() { tr.Close(); udp.Close() })
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return tr.Dial(ctx, raddr, &tls.Config{RootCAs: pool, ServerName: testHost, NextProtos: []string{http3.NextProtoH3}}, &quic.Config{})
}

// Configuration of the caps: defaults, -1, and refusals naming the field.
func TestConnectionCapsConfig(t *testing.T) {
	site := "sites: [{hosts: [a.test], origin: 'http://127.0.0.1:1'}]\n"
	c, err := edge.ParseConfig([]byte(site))
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.MaxConnections != 4096 || c.Server.MaxConnectionsPerIP != 128 || c.Server.AllowTrace {
		t.Fatalf("defaults: %+v", c.Server)
	}
	if c, err := edge.ParseConfig([]byte("server: {max_connections: -1, max_connections_per_ip: -1}\n" + site)); err != nil ||
		c.Server.MaxConnections != -1 || c.Server.MaxConnectionsPerIP != -1 {
		t.Fatalf("-1: %+v %v", c.Server, err)
	}
	for yaml, field := range map[string]string{
		"server: {max_connections: -2}":                              "server.max_connections",
		"server: {max_connections_per_ip: -5}":                       "server.max_connections_per_ip",
		"server: {max_connections: 10, max_connections_per_ip: 11}":  "server.max_connections_per_ip",
		"server: {max_connections: 10, max_connections_per_ip: 10}":  "",
		"server: {max_connections: -1, max_connections_per_ip: 500}": "",
	} {
		_, err := edge.ParseConfig([]byte(yaml + "\n" + site))
		if field == "" && err != nil || field != "" && (err == nil || !strings.Contains(err.Error(), field)) {
			t.Errorf("%s: %v, want an error naming %q", yaml, err, field)
		}
	}
}

// Item 11: TRACE is refused by default and never forwarded; with
// allow_trace it is forwarded with Max-Forwards decremented, and answered
// by the edge at Max-Forwards 0 without credentials; OPTIONS honours
// Max-Forwards likewise.
func TestTraceAndMaxForwards(t *testing.T) {
	for _, allow := range []bool{false, true} {
		e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Got-Max-Forwards", strings.Join(r.Header["Max-Forwards"], ","))
			w.Header().Set("Allow", "GET, OPTIONS, TRACE")
			w.WriteHeader(200)
		}, func(c *edge.Config) { c.Server.AllowTrace = allow })
		type want struct {
			status int
			origin bool   // forwarded
			mf     string // Max-Forwards the origin got
		}
		trace405 := want{status: 405}
		cases := []struct {
			method, mf string
			want, when want
		}{
			{"TRACE", "", trace405, want{200, true, ""}},
			{"TRACE", "5", trace405, want{200, true, "4"}},
			{"TRACE", "0", trace405, want{200, false, ""}},
			{"OPTIONS", "", want{200, true, ""}, want{200, true, ""}},
			{"OPTIONS", "3", want{200, true, "2"}, want{200, true, "2"}},
			{"OPTIONS", "99999999999", want{200, true, "2147483646"}, want{200, true, "2147483646"}},
			{"OPTIONS", "0", want{200, false, ""}, want{200, false, ""}},
			{"OPTIONS", "x1", want{400, false, ""}, want{400, false, ""}},
		}
		for _, tc := range cases {
			w := tc.want
			if allow {
				w = tc.when
			}
			hdr := http.Header{"Cookie": {"session=secret"}, "Authorization": {"Bearer secret"}}
			if tc.mf != "" {
				hdr.Set("Max-Forwards", tc.mf)
			}
			before := e.origin.total.Load()
			resp, body := e.do(tc.method, "/t", hdr, nil)
			forwarded := e.origin.total.Load() > before
			name := fmt.Sprintf("allow_trace %v, %s Max-Forwards %q", allow, tc.method, tc.mf)
			if resp.StatusCode != w.status || forwarded != w.origin {
				t.Fatalf("%s: status %d, forwarded %v; want %d, %v", name, resp.StatusCode, forwarded, w.status, w.origin)
			}
			if forwarded && resp.Header.Get("X-Got-Max-Forwards") != w.mf {
				t.Fatalf("%s: origin got Max-Forwards %q, want %q", name, resp.Header.Get("X-Got-Max-Forwards"), w.mf)
			}
			if !forwarded && w.status == 200 || w.status == 405 {
				if allowHdr := resp.Header.Get("Allow"); !strings.Contains(allowHdr, "GET") || strings.Contains(allowHdr, "TRACE") != allow {
					t.Fatalf("%s: Allow %q", name, allowHdr)
				}
			}
			if tc.method == "TRACE" && !forwarded && w.status == 200 {
				if !strings.HasPrefix(body, "TRACE /t HTTP/1.1\r\n") || strings.Contains(body, "secret") ||
					resp.Header.Get("Content-Type") != "message/http" {
					t.Fatalf("%s: reflection %q (%s)", name, body, resp.Header.Get("Content-Type"))
				}
			}
		}
	}
}

// Item 11 over raw bytes: a TRACE is refused on both fronts before any
// body is read, and the connection goes on.
func TestTraceRawBothFronts(t *testing.T) {
	e := newEnv(t, formOrigin)
	c := dialFrom(t, e.srv.Addr(), "")
	io.WriteString(c, "TRACE / HTTP/1.1\r\n"+hostHdr+"Cookie: a=b\r\n\r\nGET /obj HTTP/1.1\r\n"+hostHdr+"\r\n")
	br := bufio.NewReader(c)
	if resp, body, err := readResp(br, "TRACE"); err != nil || resp.StatusCode != 405 || strings.Contains(body, "a=b") {
		t.Fatalf("TRACE: %v %v %q", resp, err, body)
	}
	if resp, _, err := readResp(br, "GET"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after TRACE: %v %v", resp, err)
	}
	if n := e.origin.total.Load(); n != 1 {
		t.Fatalf("origin requests %d, want 1 (the GET)", n)
	}
}

// Item 13: with a read token, /status (which names the most requested
// URLs) and /metrics need it (or the purge token); health probes do not.
func TestAdminReadToken(t *testing.T) {
	e := newEnv(t, formOrigin)
	e.get("/secret/path")
	for _, readToken := range []string{"", "r3ad"} {
		a := &edge.Admin{Handler: e.edge, Token: "purg3", ReadToken: readToken, Gatherer: e.reg}
		for _, tc := range []struct {
			path, bearer string
			want         int
		}{
			{"/status", "", 401},
			{"/status", "wrong", 401},
			{"/status", "r3ad", 200},
			{"/status", "purg3", 200},
			{"/metrics", "", 401},
			{"/metrics", "r3ad", 200},
			{"/healthz", "", 200},
			{"/readyz", "", 200},
			{"/", "", 200}, // the page asks for the token itself
		} {
			want := tc.want
			if readToken == "" {
				want = 200
			}
			req := httptestRequest(tc.path, tc.bearer)
			rec := &recorder{header: http.Header{}}
			a.ServeHTTP(rec, req)
			if rec.code != want {
				t.Errorf("read token %q: GET %s with %q: %d, want %d", readToken, tc.path, tc.bearer, rec.code, want)
			}
			if rec.code == 401 && strings.Contains(rec.body.String(), "/secret/path") {
				t.Errorf("GET %s: refused but leaks the top URLs", tc.path)
			}
			if tc.path == "/status" && rec.code == 200 && !strings.Contains(rec.body.String(), "/secret/path") {
				t.Errorf("GET /status: no top URLs in %s", rec.body.String())
			}
		}
	}
}

func httptestRequest(path, bearer string) *http.Request {
	req, _ := http.NewRequest("GET", "http://admin"+path, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return req
}

// recorder is a minimal http.ResponseWriter.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(200)
	return r.body.Write(p)
}

// slowOrigin blocks /slow until release is closed or the request ends.
func slowOrigin(release chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "body")
	}
}

// Issue 13: HTTP/2 rapid reset. A client sends HEADERS then RST_STREAM
// in a loop on one connection; the edge closes that connection once 100
// of its last 200 requests were reset, counts it, and keeps serving a
// legitimate client on another connection.
func TestHTTP2RapidResetClosesConnection(t *testing.T) {
	// Both fronts: with "fast" the TLS listener's HTTP/2 is the lean front.
	release := make(chan struct{})
	defer close(release)
	withTLS, pool := tlsFor(t)
	// The site's timeouts are long. With the harness's 2 s, a machine
	// slow enough not to count 100 resets by then may see the shared fill
	// of /slow time out and be remembered; the requests after it are then
	// answered at once from the failure memory, which the guard rightly
	// does not count as resets. The pool's try_timeout too: a site
	// timeout of 10 s or more leaves it at the pool's default, 10 s.
	// (CI failed here twice, the connection still open after 300
	// resets. The cause found, with -race under load, about 1 run in 20:
	// a fill abandoned by the first resets was remembered as the
	// origin's failure, see TestFlightContextIsCanceledBeforeItsAfterFuncsRun,
	// and its 504 answered the rest at once.)
	e := newEnv(t, slowOrigin(release), withTLS, func(c *edge.Config) {
		c.Sites[0].Timeout = time.Minute
		c.Sites[0].Pool.TryTimeout = time.Minute
	})
	legit := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: testHost}, ForceAttemptHTTP2: true}
	defer legit.CloseIdleConnections()
	if r, _ := fetch(t, legit, "https://"+e.srv.TLSAddr()+"/obj"); r.ProtoMajor != 2 || r.StatusCode != 200 {
		t.Fatalf("legitimate client: %s %d", r.Proto, r.StatusCode)
	}

	sent, closed := h2Attack(t, e.srv.TLSAddr(), &tls.Config{RootCAs: pool, ServerName: testHost, NextProtos: []string{"h2"}},
		func(int) string { return "/slow" }, 300)
	if !closed {
		t.Fatalf("the connection is still open after %d rapid resets", sent)
	}
	if sent < resetLimitForTest {
		t.Fatalf("closed after %d requests, before %d resets", sent, resetLimitForTest)
	}
	eventually(t, "the abusive connection counted", func() bool {
		return e.metric("meridian_edge_abusive_connections_closed_total", "protocol", "h2") == 1
	})
	legit2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: testHost}, ForceAttemptHTTP2: true}
	defer legit2.CloseIdleConnections()
	for _, rt := range []http.RoundTripper{legit, legit2} {
		if r, body := fetch(t, rt, "https://"+e.srv.TLSAddr()+"/obj"); r.StatusCode != 200 || body != "body" {
			t.Fatalf("legitimate client after the attack: %d %q", r.StatusCode, body)
		}
	}
}

// resetLimitForTest is the guard's threshold (listen's resetLimit).
const resetLimitForTest = 100

// Issue 13: HTTP/3 request-then-cancel. A client opens request streams
// and cancels them at once on one QUIC connection; the edge closes it
// with H3_EXCESSIVE_LOAD and keeps serving other connections.
func TestHTTP3CancelledRequestsCloseConnection(t *testing.T) {
	if testFront != edge.FrontNetHTTP {
		t.Skip("the QUIC listener does not depend on the HTTP/1.1 front")
	}
	release := make(chan struct{})
	defer close(release)
	withTLS, pool := tlsFor(t)
	e := newEnv(t, slowOrigin(release), withTLS)
	h3 := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: testHost}}
	defer h3.Close()
	if r, _ := fetch(t, h3, "https://"+e.srv.TLSAddr()+"/obj"); r.ProtoMajor != 3 || r.StatusCode != 200 {
		t.Fatalf("legitimate client: %s %d", r.Proto, r.StatusCode)
	}

	qc, err := dialQUIC(t, e.srv.TLSAddr(), "127.0.0.1", pool)
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	cc := (&http3.Transport{}).NewClientConn(qc)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sent := 0
	for i := 0; i < 300 && qc.Context().Err() == nil; i++ {
		str, err := cc.OpenRequestStream(ctx)
		if err != nil {
			break
		}
		req, _ := http.NewRequest("GET", "https://"+e.srv.TLSAddr()+"/slow", nil)
		req.Host = testHost
		if err := str.SendRequestHeader(req); err != nil {
			break
		}
		str.CancelRead(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
		sent++
	}
	select {
	case <-qc.Context().Done():
	case <-ctx.Done():
		t.Fatalf("the connection is still open after %d cancelled requests", sent)
	}
	var appErr *quic.ApplicationError
	if err := context.Cause(qc.Context()); !errors.As(err, &appErr) || appErr.ErrorCode != quic.ApplicationErrorCode(http3.ErrCodeExcessiveLoad) {
		t.Fatalf("closed with %v, want H3_EXCESSIVE_LOAD", err)
	}
	if sent < resetLimitForTest {
		t.Fatalf("closed after %d requests, before %d resets", sent, resetLimitForTest)
	}
	if got := e.metric("meridian_edge_abusive_connections_closed_total", "protocol", "h3"); got != 1 {
		t.Fatalf("abusive h3 connections counted: %v", got)
	}
	if r, body := fetch(t, h3, "https://"+e.srv.TLSAddr()+"/obj"); r.StatusCode != 200 || body != "body" {
		t.Fatalf("legitimate client after the attack: %d %q", r.StatusCode, body)
	}
}

// A client that cancels some requests but lets most finish (a browser
// navigating away) keeps its connection.
func TestHTTP2OccasionalResetsTolerated(t *testing.T) {
	// Both fronts: with "fast" the TLS listener's HTTP/2 is the lean front.
	release := make(chan struct{})
	defer close(release)
	withTLS, pool := tlsFor(t)
	e := newEnv(t, slowOrigin(release), withTLS)
	var dials int
	var mu sync.Mutex
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: testHost}, ForceAttemptHTTP2: true,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dials++
			mu.Unlock()
			d := tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: testHost, NextProtos: []string{"h2"}}}
			return d.DialContext(ctx, network, addr)
		}}
	defer tr.CloseIdleConnections()
	fetch(t, tr, "https://"+e.srv.TLSAddr()+"/obj") // one connection, before requests in parallel
	for round := 0; round < 4; round++ {
		// 40 cancelled before an answer, then 80 served: 80 resets in
		// any 200 requests at most.
		var wg sync.WaitGroup
		for i := 0; i < 40; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+e.srv.TLSAddr()+"/slow", nil)
				req.Host = testHost
				if resp, err := tr.RoundTrip(req); err == nil {
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
		for i := 0; i < 80; i++ {
			req, _ := http.NewRequest("GET", "https://"+e.srv.TLSAddr()+"/obj", nil)
			req.Host = testHost
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatalf("round %d, request %d: %v (abusive: %v)", round, i, err, e.metric("meridian_edge_abusive_connections_closed_total"))
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || string(b) != "body" {
				t.Fatalf("round %d, request %d: %d %q %v (abusive: %v)", round, i, resp.StatusCode, b, err, e.metric("meridian_edge_abusive_connections_closed_total"))
			}
		}
	}
	if got := e.metric("meridian_edge_abusive_connections_closed_total"); got != 0 {
		t.Fatalf("%v connections closed as abusive", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if dials != 1 {
		t.Fatalf("%d connections dialled, want 1", dials)
	}
}

// Differential (issue 12 acceptance, issue 16): the same raw requests,
// sent to an edge on each HTTP/1.1 front, get the same answers (status,
// headers but Date, body) and make the origin receive the same requests.
func TestFrontsAnswerAlike(t *testing.T) {
	if testFront != edge.FrontFast {
		t.Skip("runs both fronts itself")
	}
	const h = hostHdr
	reqs := []struct {
		method, raw string
		unlogged    bool // refused by net/http before any handler
	}{
		{"GET", "GET /a HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\n" + h + "\r\n", false},
		{"HEAD", "HEAD /a HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\n" + h + "If-None-Match: \"v1\"\r\n\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\n" + h + "If-None-Match: \"other\"\r\n\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\n" + h + "If-Modified-Since: Fri, 27 Nov 2026 12:00:00 GMT\r\n\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\n" + h + "Range: bytes=0-3\r\n\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\n" + h + "Range: bytes=0-1,4-5\r\n\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\n" + h + "Range: bytes=900-\r\n\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\n" + h + "Cache-Control: no-cache\r\n\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\n" + h + "Connection: close\r\n\r\n", false},
		{"GET", "GET /a HTTP/1.0\r\n" + h + "\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\nhost: SITE.test\r\n\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\nHost: site.test:80\r\n\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\nHost: site.test.\r\n\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\n" + h + "X-Odd:\t tabbed \t\r\nAccept: a\r\nAccept: b\r\n\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\n" + h + "X-Fold: a\r\n b\r\n\r\n", false},
		{"GET", "GET /a HTTP/1.1\n" + "Host: site.test\n\n", false},
		{"GET", "GET http://site.test/a HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /a?x=1&y=%20 HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /a?x=1&y=%20 HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /%61 HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /v HTTP/1.1\r\n" + h + "Accept-Encoding: gzip\r\n\r\n", false},
		{"GET", "GET /v HTTP/1.1\r\n" + h + "Accept-Encoding: br\r\n\r\n", false},
		{"GET", "GET /v HTTP/1.1\r\n" + h + "Accept-Encoding: gzip\r\n\r\n", false},
		{"GET", "GET /v HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /204 HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /204 HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /private HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /private HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /missing HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /missing HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\n" + h + "Authorization: Basic eDp5\r\n\r\n", false},
		{"GET", "GET /notype HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /notype HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\nHost: nope.test\r\n\r\n", false},
		{"POST", "POST /form HTTP/1.1\r\n" + h + "Content-Length: 3\r\n\r\nabc", false},
		{"GET", "GET /a HTTP/1.1\r\n" + h + "\r\n", false},
		{"OPTIONS", "OPTIONS /a HTTP/1.1\r\n" + h + "Max-Forwards: 0\r\n\r\n", false},
		{"TRACE", "TRACE /a HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\n" + h + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", true},

		{"HEAD", "HEAD /204 HTTP/1.1\r\n" + h + "\r\n", false},
		{"HEAD", "HEAD /headfirst HTTP/1.1\r\n" + h + "\r\n", false},
		{"HEAD", "HEAD /headfirst HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /headfirst HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\n" + h + "Cache-Control: max-age=0\r\n\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\n" + h + "Pragma: no-cache\r\n\r\n", false},
		{"GET", "GET /cold HTTP/1.1\r\n" + h + "Cache-Control: only-if-cached\r\n\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\n" + h + "Cache-Control: only-if-cached\r\n\r\n", false},
		{"GET", "GET /missing HTTP/1.1\r\n" + h + "If-None-Match: \"v1\"\r\n\r\n", false},
		{"GET", "GET /v HTTP/1.1\r\n" + h + "Accept-Encoding: gzip\r\nIf-None-Match: \"x\"\r\n\r\n", false},
		{"GET", "GET /notype HTTP/1.1\r\n" + h + "Range: bytes=2-5\r\n\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\n" + h + "If-Modified-Since: Fri, 27 Nov 2026 12:00:00 GMT\r\nConnection: close\r\n\r\n", false},

		// Issue 12's hostile items: both fronts answer, forward and book
		// them alike. (A malformed chunked body is not here: whether its
		// head reached the origin before the body broke off is up to the
		// transport; TestMalformedChunkedBodyIs400 runs it on each front.)
		{"GET", "GET /h1 HTTP/1.1\r\nHost: site.test:'onerror='alert(1)\r\n\r\n", false},
		{"GET", "GET /h1 HTTP/1.1\r\nHost: site.test:99999\r\n\r\n", false},
		{"GET", "GET /h1 HTTP/1.1\r\nHost: site.test\r\nHost: evil.test\r\n\r\n", true},
		{"GET", "GET http://SITE.test./h2 HTTP/1.1\r\nHost: evil.test\r\n\r\n", false},
		{"GET", "GET /h3 HTTP/1.1\r\n" + h + hostileForwardingRaw + "\r\n", false},
		{"GET", "GET /h3 HTTP/1.1\r\n" + h + "X-Forwarded-Proto: https\r\n\r\n", false},
		{"POST", "POST /form HTTP/1.1\r\n" + h + hostileForwardingRaw + "Content-Length: 3\r\n\r\nabc", false},
		{"GET", "GET /h4 HTTP/1.1\r\n" + h + "Via: 1.1 r1-1\r\n\r\n", false},
		{"GET", "GET /h5?id=1&utm_source=x;id=EVIL HTTP/1.1\r\n" + h + "\r\n", false},
		{"POST", "POST /form HTTP/1.0\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", true},
		{"GET", "GET /h6 HTTP/1.1\r\n" + h + "Content-Length: 3\r\n\r\nabc", false},
		{"PURGE", "PURGE /a HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /a HTTP/1.1\r\n" + h + "\r\n", false},
		{"OPTIONS", "OPTIONS /a HTTP/1.1\r\n" + h + "Max-Forwards: 5\r\n\r\n", false},
		{"GET", "GET /h7 HTTP/1.1\r\n" + h + "CDN-Loop: edge1\r\n\r\n", false},
		{"GET", "GET /h7 HTTP/1.1\r\n" + h + "CDN-Loop: other\r\n\r\n", false},
		{"GET", "GET /h8 HTTP/1.1\r\n" + h + "Connection: close, X-Secret, X-Forwarded-For\r\nX-Secret: 1\r\n" +
			"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nProxy-Authorization: Basic eDp5\r\n\r\n", false},
		{"GET", "GET /h9 HTTP/1.1\r\n" + h + overrideRaw + "\r\n", false},
		{"POST", "POST /form HTTP/1.1\r\n" + h + overrideRaw + "Content-Length: 0\r\n\r\n", false},

		// Misses that the fast front answers through the handler on a
		// writer of its own (issue 21): a 304 on a miss, a HEAD miss,
		// a miss with Connection: close, early hints relayed, a body of
		// unknown length (chunked to the client), one larger than what
		// is held before the header goes, and an origin that cuts its
		// body short (the client sees the connection end without a
		// clean end of body).
		{"GET", "GET /cold304 HTTP/1.1\r\n" + h + "If-None-Match: \"v1\"\r\n\r\n", false},
		{"HEAD", "HEAD /headmiss HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /closemiss HTTP/1.1\r\n" + h + "Connection: close\r\n\r\n", false},
		{"GET", "GET /hints HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /hints HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /chunked HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /chunked HTTP/1.1\r\n" + h + "\r\n", false},
		{"HEAD", "HEAD /chunkedhead HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /big HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /big HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /bignotype HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /bigchunked HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /bigchunked HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /cut HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /cutchunked HTTP/1.1\r\n" + h + "\r\n", false},
		{"GET", "GET /missing2 HTTP/1.1\r\n" + h + "\r\n", false}}
	// Besides the answer and what the origin received, each exchange
	// records what the edge booked for it: the deltas of its request and
	// byte counters, its access log line (all but remote and duration;
	// the duration must be non-zero), and the hits it added to stored
	// entries as the status page lists them.
	type exchange struct{ answer, received, metrics, access, top []string }
	// The origin holds the rest of these bodies until the client has
	// the first bytes of the answer, so that the edge answers them as
	// they arrive (chunked, or cut short) on either front, never whole.
	gated := map[string]bool{"/chunked": true, "/cut": true, "/cutchunked": true, "/bigchunked": true}
	run := func(front string) []exchange {
		release := make(chan struct{})
		var logBuf syncBuffer
		e := newEnvWith(t, func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/204":
				w.Header().Set("Cache-Control", "max-age=600")
				w.WriteHeader(204)
				return
			case "/private":
				w.Header().Set("Cache-Control", "private")
			case "/missing":
				w.Header().Set("Cache-Control", "max-age=60")
				w.WriteHeader(404)
				io.WriteString(w, "not here")
				return
			case "/v":
				w.Header().Set("Vary", "Accept-Encoding")
				w.Header().Set("Cache-Control", "max-age=600")
				w.Header().Set("Content-Type", "text/plain")
				io.WriteString(w, "enc:"+r.Header.Get("Accept-Encoding"))
				return
			case "/notype":
				w.Header().Set("Cache-Control", "max-age=600")
				w.Header()["Content-Type"] = nil
				io.WriteString(w, "<html>sniff me</html>")
				return
			case "/hints":
				w.Header().Set("Link", "</s.css>; rel=preload")
				w.WriteHeader(http.StatusEarlyHints)
				w.Header().Del("Link")
				w.Header().Set("Cache-Control", "max-age=600")
				w.Header().Set("Content-Type", "text/plain")
				io.WriteString(w, "hinted")
				return
			case "/chunked", "/chunkedhead", "/cutchunked":
				w.Header().Set("Cache-Control", "max-age=600")
				w.Header().Set("Content-Type", "text/plain")
				io.WriteString(w, "part one,")
				w.(http.Flusher).Flush()
				if r.URL.Path == "/chunkedhead" {
					// Held until the edge calls the fill off, once its
					// HEAD client has the header.
					<-r.Context().Done()
					return
				}
				if gated[r.URL.Path] {
					// The client has the first part: the body is still
					// arriving for the edge.
					select {
					case <-release:
					case <-r.Context().Done():
						return
					}
				}
				if r.URL.Path == "/cutchunked" {
					panic(http.ErrAbortHandler)
				}
				io.WriteString(w, " part two")
				return
			case "/big", "/bignotype", "/bigchunked":
				w.Header().Set("Cache-Control", "max-age=600")
				w.Header().Set("Content-Type", "application/octet-stream")
				body := bytes.Repeat([]byte("0123456789abcdef"), 6400) // 100 KiB
				switch r.URL.Path {
				case "/bignotype":
					w.Header()["Content-Type"] = nil
					fallthrough
				case "/big":
					w.Header().Set("Content-Length", strconv.Itoa(len(body)))
					w.Write(body)
				case "/bigchunked":
					w.Write(body[:50<<10])
					w.(http.Flusher).Flush()
					select {
					case <-release:
					case <-r.Context().Done():
						return
					}
					w.Write(body[50<<10:])
				}
				return
			case "/cut":
				w.Header().Set("Cache-Control", "max-age=600")
				w.Header().Set("Content-Length", "100")
				io.WriteString(w, "only ten b")
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
				}
				panic(http.ErrAbortHandler)
			case "/missing2":
				w.Header().Set("Cache-Control", "no-store")
				w.WriteHeader(404)
				io.WriteString(w, "<html>gone</html>")
				return
			default:
				w.Header().Set("Cache-Control", "max-age=600")
			}
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Last-Modified", "Thu, 26 Nov 2026 12:00:00 GMT")
			w.Header().Set("Content-Type", "text/plain")
			body, _ := io.ReadAll(r.Body)
			io.WriteString(w, "0123456789"+string(body))
		}, func(o *edge.Options) {
			o.AccessLog, _ = edge.NewAccessLog(&logBuf, edge.AccessLogJSON)
		}, withFront(front))
		// Every reading of the clock moves it on a little, so that a
		// duration measured with it is not zero, and Age stays 0.
		e.clock.SetTick(time.Microsecond)
		admin := &edge.Admin{Handler: e.edge}
		hits := map[string]int64{} // by key, as the status page lists them
		var out []exchange
		for i, rq := range reqs {
			before := e.origin.total.Load()
			mBefore := e.series("meridian_edge_requests_total", "meridian_edge_response_body_bytes_total")
			lBefore := len(logBuf.lines())
			p := strings.Fields(rq.raw)[1]
			gate := gated[p] && e.origin.count(p) == 0 // (before the edge can ask the origin)
			c := dialFrom(t, e.srv.Addr(), "")
			io.WriteString(c, rq.raw)
			br := bufio.NewReader(c)
			if gate {
				if _, err := br.Peek(1); err != nil {
					t.Fatalf("%s: request %d: no answer while the body arrives: %v", front, i, err)
				}
				select {
				case release <- struct{}{}:
				case <-time.After(10 * time.Second):
					t.Fatalf("%s: request %d: the origin never held its body", front, i)
				}
			}
			// 1xx answers (early hints) come first, each its own.
			var informational []string
			resp, body, err := readResp(br, rq.method)
			for err == nil && resp.StatusCode >= 100 && resp.StatusCode <= 199 {
				informational = append(informational, resp.Status, fmt.Sprint(resp.Header))
				resp, body, err = readResp(br, rq.method)
			}
			c.Close()
			var ex exchange
			if err != nil {
				ex.answer = []string{"error " + err.Error()}
				if resp != nil { // the header came, the body broke off
					ex.answer = append(ex.answer, resp.Status, "body "+body)
				}
			} else {
				if len(body) > 100 {
					body = fmt.Sprintf("%d bytes, sha256 %x", len(body), sha256.Sum256([]byte(body)))
				}
				ex.answer = []string{resp.Proto, resp.Status, fmt.Sprint(resp.Close), "body " + body,
					fmt.Sprint("length ", resp.ContentLength, " transfer-encoding ", resp.TransferEncoding, " informational ", informational)}
				for k, vs := range resp.Header {
					if k != "Date" {
						ex.answer = append(ex.answer, k+": "+strings.Join(vs, " | "))
					}
				}
				slices.Sort(ex.answer[5:])
				// A multipart boundary is made per entry: the same name
				// stands for it on both.
				if _, bd, ok := strings.Cut(resp.Header.Get("Content-Type"), "boundary="); ok {
					for j := range ex.answer {
						ex.answer[j] = strings.ReplaceAll(ex.answer[j], bd, "BOUNDARY")
					}
				}
			}
			if e.origin.total.Load() > before {
				o := e.origin.lastRequest()
				ex.received = []string{o.Method, o.RequestURI, o.Host}
				for k, vs := range o.Header {
					if k == "Traceparent" && len(vs) == 1 && len(vs[0]) == 55 && strings.HasSuffix(vs[0], "-00") {
						// A trace the edge started: its ids are random.
						vs = []string{"00-NEW-TRACE-00"}
					}
					ex.received = append(ex.received, k+": "+strings.Join(vs, " | "))
				}
				slices.Sort(ex.received[3:])
			}
			// The line is written as the handler returns, which can be
			// just after the client has the answer; a request that
			// net/http refuses before any handler leaves none.
			if !rq.unlogged {
				eventually(t, fmt.Sprintf("%s: access log line of request %d", front, i), func() bool { return len(logBuf.lines()) > lBefore })
			}
			// A fill can outlive the exchange (a HEAD miss's goes on to
			// store the body): the next request must find the entry
			// stored, not join the fill, on either front.
			eventually(t, fmt.Sprintf("%s: no fill in progress after request %d", front, i), func() bool {
				return e.metric("meridian_edge_inflight_bytes") == 0
			})
			lines := logBuf.lines()
			for _, l := range lines[lBefore:] {
				if d, _ := l["duration_ms"].(float64); d <= 0 {
					t.Errorf("%s: request %d %q: access log duration %v", front, i, rq.raw, l["duration_ms"])
				}
				delete(l, "duration_ms")
				delete(l, "remote")
				delete(l, "time")
				ex.access = append(ex.access, fmt.Sprint(l))
			}
			for k, v := range e.series("meridian_edge_requests_total", "meridian_edge_response_body_bytes_total") {
				if d := v - mBefore[k]; d != 0 {
					ex.metrics = append(ex.metrics, fmt.Sprintf("%s %+g", k, d))
				}
			}
			slices.Sort(ex.metrics)
			rec := httptest.NewRecorder()
			admin.ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
			var status struct {
				Top []store.TopObject `json:"top"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &status); err != nil {
				t.Fatalf("status: %v", err)
			}
			for _, o := range status.Top {
				if d := o.Hits - hits[o.Key]; d != 0 {
					ex.top = append(ex.top, fmt.Sprintf("%q %+d", o.Key, d))
				}
				hits[o.Key] = o.Hits
			}
			slices.Sort(ex.top)
			out = append(out, ex)
		}
		return out
	}
	a, b := run(edge.FrontNetHTTP), run(edge.FrontFast)
	for i := range reqs {
		if !slices.Equal(a[i].answer, b[i].answer) {
			t.Errorf("request %d %q: answers differ\nnet/http: %q\nfast:     %q", i, reqs[i].raw, a[i].answer, b[i].answer)
		}
		if !slices.Equal(a[i].received, b[i].received) {
			t.Errorf("request %d %q: the origin received\nnet/http: %q\nfast:     %q", i, reqs[i].raw, a[i].received, b[i].received)
		}
		if !slices.Equal(a[i].metrics, b[i].metrics) {
			t.Errorf("request %d %q: counters moved\nnet/http: %q\nfast:     %q", i, reqs[i].raw, a[i].metrics, b[i].metrics)
		}
		if !slices.Equal(a[i].access, b[i].access) {
			t.Errorf("request %d %q: access log\nnet/http: %q\nfast:     %q", i, reqs[i].raw, a[i].access, b[i].access)
		}
		if !slices.Equal(a[i].top, b[i].top) {
			t.Errorf("request %d %q: hits counted on entries\nnet/http: %q\nfast:     %q", i, reqs[i].raw, a[i].top, b[i].top)
		}
	}
}
