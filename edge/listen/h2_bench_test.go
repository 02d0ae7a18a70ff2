package listen_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/listen"
	"github.com/meridiancdn/meridian/internal/benchcpu"
)

// BenchmarkHitH2 measures 1 KiB and 64 KiB hits over HTTP/2 over TLS
// through the real HTTPS listener, one stream at a time on one loopback
// connection. The client is a bare HTTP/2 framer (a prepared HEADERS
// block, frames read and dropped, no HPACK decoding), so that the
// allocations reported are almost all the server's.
func BenchmarkHitH2(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(strconv.Itoa(size>>10)+"KiB", func(b *testing.B) {
			body := strings.Repeat("x", size)
			origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=3600")
				w.Header().Set("Content-Type", "application/octet-stream")
				io.WriteString(w, body)
			}))
			defer origin.Close()
			certFile, keyFile := listen.WriteCertFiles(b, "bench.test")
			cfg := edge.Config{Listen: "127.0.0.1:0", TLS: &edge.TLSConfig{Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile},
				Sites: []edge.SiteConfig{{Hosts: []string{"bench.test"}, Origin: origin.URL}}}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			h, err := edge.New(cfg, edge.Options{Logger: log})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			srv := listen.NewServer(cfg, h, listen.Options{Logger: log})
			if err := srv.Start(); err != nil {
				b.Fatal(err)
			}
			defer srv.Shutdown(context.Background())

			c := dialH2(b, srv.TLSAddr())
			defer c.close()
			c.get(b, 1) // the fill
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			cpu := benchcpu.Start()
			for i := 0; i < b.N; i++ {
				if n := c.get(b, uint32(2*i+3)); n != size {
					b.Fatalf("stream %d: %d body bytes, want %d", 2*i+3, n, size)
				}
			}
			cpu.Report(b)
		})
	}
}

// h2Client is a bare HTTP/2 client of one connection asking for /obj on
// bench.test, one stream at a time.
type h2Client struct {
	conn    *tls.Conn
	bw      *bufio.Writer
	fr      *http2.Framer
	block   []byte // the request's HPACK block, without dynamic table entries
	unacked uint32 // connection window consumed and not yet given back
}

func dialH2(b *testing.B, addr string) *h2Client {
	b.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "bench.test", InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		b.Fatal(err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		b.Fatalf("ALPN %q, want h2", p)
	}
	c := &h2Client{conn: conn, bw: bufio.NewWriterSize(conn, 16<<10)}
	c.fr = http2.NewFramer(c.bw, bufio.NewReaderSize(conn, 64<<10))
	c.fr.SetReuseFrames()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	enc.SetMaxDynamicTableSizeLimit(0) // nothing indexed: the block can be sent again as it is
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "bench.test"}, {":path", "/obj"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	c.block = hb.Bytes()
	c.bw.WriteString(http2.ClientPreface)
	c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
	c.fr.WriteWindowUpdate(0, 1<<30)
	if err := c.bw.Flush(); err != nil {
		b.Fatal(err)
	}
	return c
}

// get asks for /obj on stream id and reads the answer; it returns the
// body's length.
func (c *h2Client) get(b *testing.B, id uint32) int {
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.block, EndStream: true, EndHeaders: true}); err != nil {
		b.Fatal(err)
	}
	if err := c.bw.Flush(); err != nil {
		b.Fatal(err)
	}
	n := 0
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			b.Fatalf("stream %d: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.fr.WriteSettingsAck()
				c.bw.Flush()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.fr.WritePing(true, f.Data)
				c.bw.Flush()
			}
		case *http2.GoAwayFrame:
			b.Fatalf("stream %d: GOAWAY %v", id, f.ErrCode)
		case *http2.RSTStreamFrame:
			b.Fatalf("stream %d: RST_STREAM %v", f.StreamID, f.ErrCode)
		case *http2.HeadersFrame:
			if f.StreamID == id && f.StreamEnded() {
				return n
			}
		case *http2.DataFrame:
			if f.StreamID != id {
				continue
			}
			n += len(f.Data())
			c.unacked += f.Length
			if c.unacked > 1<<20 { // give the connection window back now and then
				c.fr.WriteWindowUpdate(0, c.unacked)
				c.bw.Flush()
				c.unacked = 0
			}
			if f.StreamEnded() {
				return n
			}
		}
	}
}

func (c *h2Client) close() { c.conn.Close() }
