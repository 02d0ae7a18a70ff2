package edge_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/internal/poll"
)

// A client can keep reading an HTTP/2 or HTTP/3 connection yet never give
// a stream flow-control credit: the stream's writes then wait for ever,
// and with them the handler's goroutine, unseen by the connection's send
// timeout, since the connection makes progress. server.send_timeout
// holds each stream too: one that makes no progress for that long is
// reset (its handler ends: its access log line is written), and one
// whose client grants credit slowly, taking longer than the timeout in
// all, gets every byte.
func TestStreamWithoutFlowControlCreditIsReset(t *testing.T) {
	const size = 1 << 20
	origin := newCountingOrigin(t, strings.Repeat("w", size), "max-age=600")
	var log syncBuffer
	al, err := edge.NewAccessLog(&log, edge.AccessLogJSON)
	if err != nil {
		t.Fatal(err)
	}
	f := newFronts(t, origin.URL, edge.Options{AccessLog: al}, func(c *edge.Config) {
		c.Server.SendTimeout = time.Second
	})
	defer f.shutdown()
	rts, closeAll := f.clients()
	defer closeAll()
	// Stored first, so that the stalled answers are hits.
	if resp := getAs(t, rts["h2"], f.url("h2", "/stall")); resp.StatusCode != 200 {
		t.Fatalf("filling: %d", resp.StatusCode)
	}
	lines := func() int { return strings.Count(log.String(), `"uri":"/stall"`) }
	poll.Until(t, 10*time.Second, "the fill's log line", func() bool { return lines() == 1 })

	tlsConf := &tls.Config{RootCAs: f.rootCAs, ServerName: testHost}
	t.Run("h2 stalled", func(t *testing.T) {
		c := dialStreams(t, f.tlsAddr, tlsConf, 1024)
		c.get(t, 1, "/stall")
		poll.Until(t, 15*time.Second, "the stalled stream's handler ends", func() bool { return lines() == 2 })
		got, rst, end := c.readStream(t, 1, 0)
		if rst != http2.ErrCodeInternal || end || got >= size {
			t.Fatalf("stalled stream: %d bytes, reset %v, end %v; want a reset before the end", got, rst, end)
		}
	})
	t.Run("h2 slow but steady", func(t *testing.T) {
		c := dialStreams(t, f.tlsAddr, tlsConf, 32<<10)
		c.get(t, 1, "/stall")
		// 32 KiB of credit every 75 ms: 1 MiB takes about 2.4 s.
		got, rst, end := c.readStream(t, 1, 75*time.Millisecond)
		if rst != 0 || !end || got != size {
			t.Fatalf("steady stream: %d bytes, reset %v, end %v; want all %d", got, rst, end, size)
		}
	})
	t.Run("h3 stalled", func(t *testing.T) {
		before := lines()
		tr := &http3.Transport{TLSClientConfig: tlsConf, QUICConfig: &quic.Config{
			InitialStreamReceiveWindow: 16 << 10, MaxStreamReceiveWindow: 16 << 10,
		}}
		defer tr.Close()
		resp, err := tr.RoundTrip(mustRequest(t, f.url("h3", "/stall")))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		// Nothing is read, so the client grants no more credit.
		poll.Until(t, 15*time.Second, "the stalled stream's handler ends", func() bool { return lines() == before+1 })
		var b bytes.Buffer
		n, err := io.Copy(&b, resp.Body)
		if err == nil || n >= size {
			t.Fatalf("stalled stream: status %d, %d bytes (%.60q), error %v; want it cut", resp.StatusCode, n, b.String(), err)
		}
	})
}

func mustRequest(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = testHost
	return req
}

// streamsClient is a bare HTTP/2 client whose streams start with a given
// flow-control window and get more only when readStream grants it.
type streamsClient struct {
	fr     *http2.Framer
	window uint32
}

func dialStreams(t *testing.T, addr string, conf *tls.Config, window uint32) *streamsClient {
	t.Helper()
	conf = conf.Clone()
	conf.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(conn, http2.ClientPreface)
	c := &streamsClient{fr: http2.NewFramer(conn, conn), window: window}
	c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: window})
	return c
}

func (c *streamsClient) get(t *testing.T, id uint32, path string) {
	t.Helper()
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", testHost}, {":path", path}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
}

// readStream reads frames until stream id ends or is reset, or the
// connection ends, answering SETTINGS and PINGs as a live client does.
// With every > 0, each window's worth of DATA is answered, that long
// after, with as much credit for the stream and the connection; with 0,
// none is ever given.
func (c *streamsClient) readStream(t *testing.T, id uint32, every time.Duration) (got int, rst http2.ErrCode, end bool) {
	t.Helper()
	pending := 0
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return got, rst, end
			}
			t.Fatalf("after %d bytes: %v", got, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.fr.WritePing(true, f.Data)
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return got, f.ErrCode, false
			}
		case *http2.GoAwayFrame:
			return got, f.ErrCode, false
		case *http2.DataFrame:
			if f.StreamID != id {
				continue
			}
			got += len(f.Data())
			pending += len(f.Data())
			if f.StreamEnded() {
				return got, 0, true
			}
			if every > 0 && pending >= int(c.window) {
				time.Sleep(every) // a slow client's pace, not synchronisation
				c.fr.WriteWindowUpdate(id, uint32(pending))
				c.fr.WriteWindowUpdate(0, uint32(pending))
				pending = 0
			}
		}
	}
}
