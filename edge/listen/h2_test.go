package listen

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meridiancdn/meridian/internal/poll"
)

// recordingConn is the TLS connection under an h2Conn: it records each
// write that reaches it. With block set, a write waits until Close.
type recordingConn struct {
	net.Conn // nil: only what h2Conn calls is implemented
	block    bool
	fail     error // returned by every write when set

	mu     sync.Mutex
	writes [][]byte
	closed chan struct{}
}

func newRecordingConn() *recordingConn { return &recordingConn{closed: make(chan struct{})} }

func (c *recordingConn) Write(p []byte) (int, error) {
	if c.block {
		<-c.closed
		return 0, net.ErrClosed
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return 0, c.fail
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func (c *recordingConn) Close() error {
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	return nil
}

func (c *recordingConn) ConnectionState() tls.ConnectionState { return tls.ConnectionState{} }

func (c *recordingConn) written() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.writes...)
}

// frames returns the bytes of the frames fn writes with a framer.
func frames(t *testing.T, fn func(fr *http2.Framer) error) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := fn(http2.NewFramer(&b, nil)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// An h2Conn holds back exactly the writes that end with a response
// header whose stream goes on, and sends them with the next write, in
// order; everything else goes out as it comes.
func TestH2ConnHoldsOnlyAnOpenHeader(t *testing.T) {
	settings := frames(t, func(fr *http2.Framer) error { return fr.WriteSettings() })
	open := frames(t, func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x88}, EndHeaders: true})
	})
	data := frames(t, func(fr *http2.Framer) error { return fr.WriteData(1, true, []byte("body")) })
	closed := frames(t, func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: []byte{0x88}, EndHeaders: true, EndStream: true})
	})
	unended := frames(t, func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: []byte{0x88}})
	})
	continued := frames(t, func(fr *http2.Framer) error { return fr.WriteContinuation(5, true, []byte{0x0f, 0x10}) })
	big := frames(t, func(fr *http2.Framer) error { return fr.WriteData(1, true, make([]byte, 16<<10)) })
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

	for _, tc := range []struct {
		name   string
		writes [][]byte
		want   [][]byte // what reaches the connection, write by write
	}{
		{"settings", [][]byte{settings}, [][]byte{settings}},
		{"header then body", [][]byte{open, data}, [][]byte{cat(open, data)}},
		{"header with body in one write", [][]byte{cat(open, data)}, [][]byte{cat(open, data)}},
		{"header ending its stream", [][]byte{closed}, [][]byte{closed}},
		{"frames before the header go first", [][]byte{cat(settings, open), data}, [][]byte{cat(settings, open, data)}},
		{"a header block in a continuation", [][]byte{unended, continued}, [][]byte{unended, continued}},
		{"a header cut across writes", [][]byte{open[:4], open[4:], data}, [][]byte{open[:4], cat(open[4:], data)}},
		{"a body cut after its frame header", [][]byte{open, data[:9], data[9:]}, [][]byte{cat(open, data[:9]), data[9:]}},
		// Not copied into one buffer: the header goes first, alone.
		{"a large body", [][]byte{open, big}, [][]byte{open, big}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newRecordingConn()
			c := newH2Conn(rc, time.Hour)
			defer c.Close()
			for _, w := range tc.writes {
				if n, err := c.Write(w); n != len(w) || err != nil {
					t.Fatalf("Write(%d bytes) = %d, %v", len(w), n, err)
				}
			}
			if got := rc.written(); !equalWrites(got, tc.want) {
				t.Fatalf("reached the connection:\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func equalWrites(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// A header whose body does not follow leaves on its own after the hold.
func TestH2ConnReleasesAHeldHeader(t *testing.T) {
	open := frames(t, func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x88}, EndHeaders: true})
	})
	rc := newRecordingConn()
	c := newH2Conn(rc, time.Millisecond)
	defer c.Close()
	if _, err := c.Write(open); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "the held header is written", func() bool { return len(rc.written()) == 1 })
	if got := rc.written(); !bytes.Equal(got[0], open) {
		t.Fatalf("wrote %q, want the header %q", got[0], open)
	}
}

// A failed write of held bytes is the next Write's error: the server
// learns that its connection is gone.
func TestH2ConnReportsAFailedRelease(t *testing.T) {
	open := frames(t, func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x88}, EndHeaders: true})
	})
	rc := newRecordingConn()
	broken := errors.New("broken pipe")
	rc.fail = broken
	c := newH2Conn(rc, time.Millisecond)
	defer c.Close()
	if _, err := c.Write(open); err != nil {
		t.Fatalf("held write: %v", err)
	}
	poll.Until(t, 10*time.Second, "the release fails", func() bool {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		return c.err != nil
	})
	if _, err := c.Write([]byte{0}); !errors.Is(err, broken) {
		t.Fatalf("next Write: %v, want %v", err, broken)
	}
}

// Close does not wait for a write that a client which does not read
// keeps blocked: it ends it.
func TestH2ConnCloseEndsABlockedWrite(t *testing.T) {
	rc := newRecordingConn()
	rc.block = true
	c := newH2Conn(rc, time.Hour)
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(frames(t, func(fr *http2.Framer) error { return fr.WriteSettings() }))
		done <- err
	}()
	// Close may come before the write starts or while it blocks: either
	// way both return.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("blocked write: %v, want net.ErrClosed", err)
	}
}

// pipeTLS is the server's end of a net.Pipe, presented as a TLS 1.3
// connection, as the HTTP/2 server requires.
type pipeTLS struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *pipeTLS) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *pipeTLS) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

func (c *pipeTLS) ConnectionState() tls.ConnectionState {
	return tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, HandshakeComplete: true, NegotiatedProtocol: "h2"}
}

// Through the HTTP/2 server, a small answer's HEADERS and DATA reach the
// connection in one write (without the h2Conn: two, the header flushed
// before the handler's body is queued).
func TestHTTP2AnswerInOneWrite(t *testing.T) {
	for _, tc := range []struct {
		name  string
		body  string
		flush bool // the handler flushes its header before the body
	}{
		{"1 KiB", strings.Repeat("x", 1<<10), false},
		{"flushed header", "late body", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli, srvSide := net.Pipe()
			sc := &pipeTLS{Conn: srvSide}
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Cache-Control", "max-age=60")
				if tc.flush {
					w.WriteHeader(http.StatusOK)
					w.(http.Flusher).Flush()
				}
				io.WriteString(w, tc.body)
			})
			served := make(chan struct{})
			go func() {
				defer close(served)
				(&http2.Server{}).ServeConn(newH2Conn(sc, time.Hour), &http2.ServeConnOpts{Handler: h})
			}()
			defer func() { cli.Close(); <-served }()

			bw := bufio.NewWriter(cli)
			fr := http2.NewFramer(bw, bufio.NewReader(cli))
			bw.WriteString(http2.ClientPreface)
			fr.WriteSettings()
			if err := bw.Flush(); err != nil {
				t.Fatal(err)
			}
			// The server's SETTINGS, then its ACK of ours: the
			// connection is set up.
			for acked := false; !acked; {
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatal(err)
				}
				if s, ok := f.(*http2.SettingsFrame); ok {
					if s.IsAck() {
						acked = true
					} else {
						fr.WriteSettingsAck()
						bw.Flush()
					}
				}
			}
			before := sc.count()
			var hb bytes.Buffer
			enc := hpack.NewEncoder(&hb)
			for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "site.test"}, {":path", "/"}} {
				enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
			}
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
			if err := bw.Flush(); err != nil {
				t.Fatal(err)
			}
			var body []byte
			var status string
			dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) {
				if f.Name == ":status" {
					status = f.Value
				}
			})
			for ended := false; !ended; {
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatal(err)
				}
				switch f := f.(type) {
				case *http2.HeadersFrame:
					if _, err := dec.Write(f.HeaderBlockFragment()); err != nil {
						t.Fatal(err)
					}
					ended = f.StreamEnded()
				case *http2.DataFrame:
					body = append(body, f.Data()...)
					ended = f.StreamEnded()
				}
			}
			if status != "200" || string(body) != tc.body {
				t.Fatalf("answer %s with %d body bytes, want 200 with %d", status, len(body), len(tc.body))
			}
			if n := sc.count() - before; n != 1 {
				t.Fatalf("the answer took %d writes, want 1", n)
			}
		})
	}
}
