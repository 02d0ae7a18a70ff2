package listen

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/internal/poll"
)

// Tests of the lean HTTP/2 front's connection-level duties, through the
// real HTTPS listener with a bare HTTP/2 client. Its answers against
// x/net's for the same frames are h2diff_test.go's.

const leanHost = "lean.test"

// leanEnv is an edge with the lean front on its HTTPS listener, and its
// origin: /obj?size=N is N bytes cacheable for an hour, /slow/... waits
// for release, /echo answers the request's body and X-Forwarded-Proto.
type leanEnv struct {
	srv     *Server
	h       *edge.Handler
	release chan struct{}
	arrived chan string
	once    sync.Once
}

func newLeanEnv(t *testing.T, tweak func(*edge.Config)) *leanEnv {
	t.Helper()
	e := &leanEnv{release: make(chan struct{}), arrived: make(chan string, 1024)}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/slow/"):
			e.arrived <- r.URL.Path
			select {
			case <-e.release:
			case <-r.Context().Done():
				return
			}
			w.Header().Set("Cache-Control", "no-store")
			io.WriteString(w, "slow")
		case r.URL.Path == "/echo":
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("X-Proto", r.Header.Get("X-Forwarded-Proto"))
			w.Write(b)
		default:
			n, _ := strconv.Atoi(r.URL.Query().Get("size"))
			w.Header().Set("Cache-Control", "max-age=3600")
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(bytes.Repeat([]byte{'x'}, n))
		}
	}))
	t.Cleanup(origin.Close)
	certFile, keyFile := WriteCertFiles(t, leanHost)
	cfg := edge.Config{Listen: "127.0.0.1:0",
		TLS:    &edge.TLSConfig{Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, DisableHTTP3: true},
		Server: edge.ServerConfig{Front: edge.FrontFast},
		Sites:  []edge.SiteConfig{{Hosts: []string{leanHost}, Origin: origin.URL, Timeout: time.Minute}}}
	if tweak != nil {
		tweak(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := edge.New(cfg, edge.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	e.h = h
	e.srv = NewServer(cfg, h, Options{Logger: log})
	if err := e.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.releaseAll()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.srv.Shutdown(ctx)
	})
	if e.srv.lean == nil {
		t.Fatal("front fast with an *edge.Handler: no lean HTTP/2 front")
	}
	return e
}

func (e *leanEnv) releaseAll() { e.once.Do(func() { close(e.release) }) }

// relays reports how many of the lean front's connections have started
// a relay.
func (e *leanEnv) relays() (conns, relayed int) {
	l := e.srv.lean
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		conns++
		c.mu.Lock()
		if c.relay != nil {
			relayed++
		}
		c.mu.Unlock()
	}
	return conns, relayed
}

// leanClient is a bare HTTP/2 client: it writes what a test says and
// reads every frame, acknowledging the server's SETTINGS.
type leanClient struct {
	t    *testing.T
	conn *tls.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
	dec  *hpack.Decoder
	// answers are the streams read so far, by ID, until their read.
	answers map[uint32]*answer
}

// headerBlock is a whole header block read (HEADERS and CONTINUATIONs),
// decoded.
type headerBlock struct {
	StreamID uint32
	raw      []byte
	fields   []hpack.HeaderField
	end      bool
}

func dialLean(t *testing.T, e *leanEnv, settings ...http2.Setting) *leanClient {
	t.Helper()
	conn, err := tls.Dial("tcp", e.srv.TLSAddr(), &tls.Config{ServerName: leanHost, InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second)) // a hung server fails the test
	c := &leanClient{t: t, conn: conn, fr: http2.NewFramer(conn, conn), dec: hpack.NewDecoder(4096, nil)}
	c.fr.SetMaxReadFrameSize(1 << 24)
	c.enc = hpack.NewEncoder(&c.hbuf)
	io.WriteString(conn, http2.ClientPreface)
	c.fr.WriteSettings(settings...)
	return c
}

// request opens stream id with method and path (and extra field pairs).
func (c *leanClient) request(id uint32, method, path string, endStream bool, extra ...string) {
	c.t.Helper()
	c.hbuf.Reset()
	fields := append([]string{":method", method, ":scheme", "https", ":authority", leanHost, ":path", path}, extra...)
	for i := 0; i+1 < len(fields); i += 2 {
		c.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndStream: endStream, EndHeaders: true}); err != nil {
		c.t.Fatal(err)
	}
}

// next returns the server's next frame other than its SETTINGS (which
// it acknowledges) and WINDOW_UPDATEs; err is the connection's end.
func (c *leanClient) next() (any, error) {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.fr.WriteSettingsAck()
			}
			continue
		case *http2.WindowUpdateFrame:
			continue
		case *http2.DataFrame:
			// The framer reuses its buffer: keep a copy.
			return &dataFrame{StreamID: f.StreamID, data: bytes.Clone(f.Data()), end: f.StreamEnded()}, nil
		case *http2.HeadersFrame:
			h := &headerBlock{StreamID: f.StreamID, raw: bytes.Clone(f.HeaderBlockFragment()), end: f.StreamEnded()}
			for ended := f.HeadersEnded(); !ended; {
				g, err := c.fr.ReadFrame()
				if err != nil {
					return nil, err
				}
				cf, ok := g.(*http2.ContinuationFrame)
				if !ok {
					return nil, errors.New("no CONTINUATION after HEADERS")
				}
				h.raw = append(h.raw, cf.HeaderBlockFragment()...)
				ended = cf.HeadersEnded()
			}
			var err error
			if h.fields, err = c.dec.DecodeFull(h.raw); err != nil {
				return nil, err
			}
			return h, nil
		}
		return f, nil
	}
}

// dataFrame is a DATA frame read, its payload copied.
type dataFrame struct {
	StreamID uint32
	data     []byte
	end      bool
}

// answer is what a stream got.
type answer struct {
	fields map[string]string
	block  []byte // the first header block fragment as sent
	body   []byte
	frames []int // the DATA frames' sizes
	rst    http2.ErrCode
	reset  bool
	done   bool
}

// read reads until stream id ends or is reset, granting every DATA
// frame's size back when grant. Frames of other streams are kept for
// their own read.
func (c *leanClient) read(id uint32, grant bool) answer {
	c.t.Helper()
	if c.answers == nil {
		c.answers = map[uint32]*answer{}
	}
	get := func(id uint32) *answer {
		a := c.answers[id]
		if a == nil {
			a = &answer{fields: map[string]string{}}
			c.answers[id] = a
		}
		return a
	}
	for {
		if a := c.answers[id]; a != nil && a.done {
			delete(c.answers, id)
			return *a
		}
		f, err := c.next()
		if err != nil {
			c.t.Fatalf("stream %d: %v (so far %d body bytes)", id, err, len(get(id).body))
		}
		switch f := f.(type) {
		case *headerBlock:
			a := get(f.StreamID)
			if a.block == nil {
				a.block = f.raw
			}
			for _, hf := range f.fields {
				a.fields[hf.Name] = hf.Value
			}
			a.done = f.end
		case *dataFrame:
			a := get(f.StreamID)
			a.body = append(a.body, f.data...)
			a.frames = append(a.frames, len(f.data))
			if grant && len(f.data) > 0 {
				c.fr.WriteWindowUpdate(f.StreamID, uint32(len(f.data)))
				c.fr.WriteWindowUpdate(0, uint32(len(f.data)))
			}
			a.done = f.end
		case *http2.RSTStreamFrame:
			a := get(f.StreamID)
			a.rst, a.reset, a.done = f.ErrCode, true, true
		case *http2.GoAwayFrame:
			c.t.Fatalf("stream %d: GOAWAY %v", id, f.ErrCode)
		}
	}
}

// goAway reads until a GOAWAY and returns it; then the connection must
// end.
func (c *leanClient) goAway() *http2.GoAwayFrame {
	c.t.Helper()
	for {
		f, err := c.next()
		if err != nil {
			c.t.Fatalf("no GOAWAY before the end: %v", err)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			return g
		}
	}
}

// ends reads until the connection ends and fails if it does not.
func (c *leanClient) ends() {
	c.t.Helper()
	for {
		if _, err := c.next(); err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatalf("the connection is still open: %v", err)
			}
			return
		}
	}
}

// fill stores /obj?size=n through a first connection.
func (e *leanEnv) fill(t *testing.T, size int) string {
	t.Helper()
	path := "/obj?size=" + strconv.Itoa(size)
	c := dialLean(t, e, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
	c.fr.WriteWindowUpdate(0, 1<<30)
	c.request(1, "GET", path, true)
	if a := c.read(1, false); a.fields[":status"] != "200" || len(a.body) != size {
		t.Fatalf("fill: %v, %d bytes", a.fields, len(a.body))
	}
	c.conn.Close()
	// The server's side of the connection, which relayed the miss, is
	// gone only once its goroutine has read the close: until then the
	// tests' relays() would count it (TestLeanH2HonoursClientSettings
	// failed so under load, 1 run in 12).
	poll.Until(t, 10*time.Second, "the filling connection gone", func() bool {
		conns, _ := e.relays()
		return conns == 0
	})
	return path
}

// A plain fresh hit is answered by the lean connection itself (no relay
// is started), in one HEADERS and its DATA; the miss before it went
// through the relay, to x/net's server.
func TestLeanH2AnswersHitsItself(t *testing.T) {
	e := newLeanEnv(t, nil)
	path := e.fill(t, 1024)
	c := dialLean(t, e, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	for id := uint32(1); id <= 5; id += 2 {
		c.request(id, "GET", path, true)
		a := c.read(id, false)
		if a.fields[":status"] != "200" || len(a.body) != 1024 || !strings.Contains(a.fields["cache-status"], "hit") || a.fields["content-length"] != "1024" {
			t.Fatalf("stream %d: %v, %d bytes", id, a.fields, len(a.body))
		}
	}
	c.request(7, "HEAD", path, true)
	if a := c.read(7, false); a.fields[":status"] != "200" || len(a.body) != 0 || a.fields["content-length"] != "1024" {
		t.Fatalf("HEAD: %v, %d bytes", a.fields, len(a.body))
	}
	if conns, relayed := e.relays(); conns != 1 || relayed != 0 {
		t.Fatalf("%d connections, %d relaying; want the hits answered without a relay", conns, relayed)
	}
	// A request that is not plain (a Range) is relayed, on the same
	// connection.
	c.request(9, "GET", path, true, "range", "bytes=0-9")
	if a := c.read(9, false); a.fields[":status"] != "206" || string(a.body) != "xxxxxxxxxx" {
		t.Fatalf("range: %v, %q", a.fields, a.body)
	}
	if _, relayed := e.relays(); relayed != 1 {
		t.Fatal("the Range request was not relayed")
	}
}

// The relay keeps what net/http gives a request: its body, its TLS (the
// edge tells the origin the scheme was https) and its client address.
func TestLeanH2RelayKeepsTheRequest(t *testing.T) {
	e := newLeanEnv(t, nil)
	c := dialLean(t, e)
	c.request(1, "POST", "/echo", false, "content-type", "text/plain")
	c.fr.WriteData(1, false, []byte("hello, "))
	c.fr.WriteData(1, true, []byte("origin"))
	a := c.read(1, false)
	if a.fields[":status"] != "200" || string(a.body) != "hello, origin" || a.fields["x-proto"] != "https" {
		t.Fatalf("POST: %v %q", a.fields, a.body)
	}
	// A body that ends with trailers.
	c.request(3, "POST", "/echo", false, "te", "trailers")
	c.fr.WriteData(3, false, []byte("with trailers"))
	c.hbuf.Reset()
	c.enc.WriteField(hpack.HeaderField{Name: "x-checksum", Value: "1"})
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: c.hbuf.Bytes(), EndStream: true, EndHeaders: true})
	if a := c.read(3, false); a.fields[":status"] != "200" || string(a.body) != "with trailers" {
		t.Fatalf("POST with trailers: %v %q", a.fields, a.body)
	}
	poll.Until(t, 10*time.Second, "no stream left open", func() bool { return e.openStreams() == 0 })
}

// SETTINGS: the client's header table size, frame size and initial
// window shape what the lean front sends; SETTINGS and PING are
// acknowledged.
func TestLeanH2HonoursClientSettings(t *testing.T) {
	e := newLeanEnv(t, nil)
	path := e.fill(t, 40000)

	t.Run("table size and frame size", func(t *testing.T) {
		c := dialLean(t, e,
			http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0},
			http2.Setting{ID: http2.SettingMaxFrameSize, Val: 20000},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
		c.fr.WriteWindowUpdate(0, 1<<20)
		acked := false
		for !acked {
			f, err := c.fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			if s, ok := f.(*http2.SettingsFrame); ok {
				if s.IsAck() {
					acked = true
				} else {
					c.fr.WriteSettingsAck()
				}
			}
		}
		c.fr.WritePing(false, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
		for {
			f, err := c.next()
			if err != nil {
				t.Fatal(err)
			}
			if p, ok := f.(*http2.PingFrame); ok {
				if !p.IsAck() || p.Data != [8]byte{1, 2, 3, 4, 5, 6, 7, 8} {
					t.Fatalf("PING answered %v %v", p.IsAck(), p.Data)
				}
				break
			}
		}
		c.request(1, "GET", path, true)
		a := c.read(1, false)
		if len(a.body) != 40000 || len(a.frames) != 2 || a.frames[0] != 20000 {
			t.Fatalf("%d bytes in DATA frames of %v; want 2 of 20000", len(a.body), a.frames)
		}
		// The client's table is 0 bytes now: the first header block
		// after its SETTINGS says so (a dynamic table size update).
		if len(a.block) == 0 || a.block[0]&0xe0 != 0x20 {
			t.Fatalf("header block starts %x, want a table size update", a.block)
		}
		if _, relayed := e.relays(); relayed != 0 {
			t.Fatal("the hit was relayed")
		}
	})

	t.Run("initial window", func(t *testing.T) {
		c := dialLean(t, e, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100})
		c.fr.WriteWindowUpdate(0, 1<<20)
		c.request(1, "GET", path, true)
		got := 0
		for got < 100 {
			f, err := c.next()
			if err != nil {
				t.Fatal(err)
			}
			if d, ok := f.(*dataFrame); ok {
				got += len(d.data)
			}
		}
		// Nothing more may come until the stream gets credit: a PING's
		// answer comes first.
		c.fr.WritePing(false, [8]byte{9})
		for {
			f, err := c.next()
			if err != nil {
				t.Fatal(err)
			}
			if d, ok := f.(*dataFrame); ok {
				t.Fatalf("%d more bytes past the stream's window", len(d.data))
			}
			if p, ok := f.(*http2.PingFrame); ok && p.IsAck() {
				break
			}
		}
		c.fr.WriteWindowUpdate(1, 40000-100)
		a := c.read(1, false)
		if got+len(a.body) != 40000 {
			t.Fatalf("%d bytes in all, want 40000", got+len(a.body))
		}
	})
}

// Shutdown: GOAWAY with the last stream taken; open streams finish, later
// ones are ignored, then the connection closes.
func TestLeanH2ShutdownSaysGoAwayAndDrains(t *testing.T) {
	e := newLeanEnv(t, nil)
	c := dialLean(t, e)
	c.request(1, "GET", "/slow/1", true)
	<-e.arrived
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	g := c.goAway()
	if g.ErrCode != http2.ErrCodeNo || g.LastStreamID != 1 {
		t.Fatalf("GOAWAY %v, last stream %d; want NO_ERROR, 1", g.ErrCode, g.LastStreamID)
	}
	c.request(3, "GET", "/slow/3", true) // after the GOAWAY's last: ignored
	e.releaseAll()
	if a := c.read(1, false); a.fields[":status"] != "200" || string(a.body) != "slow" {
		t.Fatalf("the open stream: %v %q", a.fields, a.body)
	}
	c.ends()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-e.arrived:
		t.Fatalf("%s reached the origin after the GOAWAY", p)
	default:
	}
}

// An idle connection (no stream open) is closed after the idle timeout
// with GOAWAY; one with a stream open is not.
func TestLeanH2IdleTimeout(t *testing.T) {
	const idle = 150 * time.Millisecond
	e := newLeanEnv(t, func(c *edge.Config) { c.Server.IdleTimeout = idle })
	path := e.fill(t, 10)
	c := dialLean(t, e)
	c.request(1, "GET", "/slow/1", true)
	<-e.arrived
	// Time passes with the stream open: the connection stays.
	start := time.Now()
	for i := byte(0); time.Since(start) < 3*idle; i++ {
		c.fr.WritePing(false, [8]byte{i})
		for {
			f, err := c.next()
			if err != nil {
				t.Fatalf("closed with a stream open: %v", err)
			}
			if _, ok := f.(*http2.GoAwayFrame); ok {
				t.Fatal("GOAWAY with a stream open")
			}
			if p, ok := f.(*http2.PingFrame); ok && p.IsAck() {
				break
			}
		}
	}
	e.releaseAll()
	c.read(1, false)
	c.request(3, "GET", path, true)
	c.read(3, false)
	start = time.Now()
	if g := c.goAway(); g.ErrCode != http2.ErrCodeNo || g.LastStreamID != 3 {
		t.Fatalf("GOAWAY %v, last %d", g.ErrCode, g.LastStreamID)
	}
	if d := time.Since(start); d > 10*idle {
		t.Fatalf("closed %v after its last stream, idle timeout %v", d, idle)
	}
	c.ends()
}

// A connection that said GOAWAY without an error and has no stream open
// lingers before it closes, reading and answering what the client sent
// meanwhile, as x/net's server does: closed at once, the client's unread
// frames would make the kernel reset the connection, which can discard
// the GOAWAY and the last answers on their way (golang.org/issue/18701).
// After the client's own GOAWAY, and after the idle timeout's.
func TestLeanH2LingersAfterGoAway(t *testing.T) {
	const idle = 150 * time.Millisecond
	e := newLeanEnv(t, func(c *edge.Config) { c.Server.IdleTimeout = idle })
	path := e.fill(t, 10)
	pingAnswered := func(t *testing.T, c *leanClient, data [8]byte) {
		t.Helper()
		c.fr.WritePing(false, data)
		for {
			f, err := c.next()
			if err != nil {
				t.Fatalf("closed before answering the PING sent after GOAWAY: %v", err)
			}
			if p, ok := f.(*http2.PingFrame); ok && p.IsAck() && p.Data == data {
				return
			}
		}
	}

	t.Run("client GOAWAY", func(t *testing.T) {
		c := dialLean(t, e)
		c.request(1, "GET", path, true)
		c.read(1, false)
		c.fr.WriteGoAway(0, http2.ErrCodeNo, nil)
		if g := c.goAway(); g.ErrCode != http2.ErrCodeNo || g.LastStreamID != 1 {
			t.Fatalf("GOAWAY %v, last %d", g.ErrCode, g.LastStreamID)
		}
		pingAnswered(t, c, [8]byte{1})
		c.request(3, "GET", path, true) // after GOAWAY's last: ignored
		pingAnswered(t, c, [8]byte{2})
		for {
			f, err := c.next()
			if err != nil {
				var ne interface{ Timeout() bool }
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("still open: %v", err)
				}
				break
			}
			if h, ok := f.(*headerBlock); ok {
				t.Fatalf("stream %d answered after GOAWAY", h.StreamID)
			}
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		c := dialLean(t, e)
		c.request(1, "GET", path, true)
		c.read(1, false)
		if g := c.goAway(); g.ErrCode != http2.ErrCodeNo || g.LastStreamID != 1 {
			t.Fatalf("GOAWAY %v, last %d", g.ErrCode, g.LastStreamID)
		}
		pingAnswered(t, c, [8]byte{3})
		c.ends()
	})
}

// No more than leanMaxStreams relayed streams are open at once; a stream
// beyond is refused, and the connection goes on.
func TestLeanH2MaxConcurrentStreams(t *testing.T) {
	e := newLeanEnv(t, nil)
	c := dialLean(t, e)
	// Our SETTINGS acknowledged first, so that the refusal is
	// PROTOCOL_ERROR as x/net's.
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			c.fr.WriteSettingsAck()
			break
		}
	}
	for i := range leanMaxStreams {
		c.request(uint32(2*i+1), "GET", "/slow/"+strconv.Itoa(i), true)
	}
	over := uint32(2*leanMaxStreams + 1)
	c.request(over, "GET", "/slow/over", true)
	for {
		f, err := c.next()
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := f.(*http2.RSTStreamFrame); ok {
			if r.StreamID != over || r.ErrCode != http2.ErrCodeProtocol {
				t.Fatalf("RST_STREAM %d %v; want %d PROTOCOL_ERROR", r.StreamID, r.ErrCode, over)
			}
			break
		}
	}
	e.releaseAll()
	for i := range leanMaxStreams {
		if a := c.read(uint32(2*i+1), false); a.fields[":status"] != "200" {
			t.Fatalf("stream %d: %v, reset %v %v", 2*i+1, a.fields, a.reset, a.rst)
		}
	}
}

// Floods end the connection: CONTINUATION frames past the header list
// limit (x/net's framer), empty DATA frames.
func TestLeanH2FloodsEndTheConnection(t *testing.T) {
	e := newLeanEnv(t, nil)
	t.Run("continuation", func(t *testing.T) {
		c := dialLean(t, e)
		c.request(1, "GET", "/x", false) // its block, then:
		junk := bytes.Repeat([]byte{0x40, 0x7f, 0xff}, 6000)
		// A HEADERS without END_HEADERS, then CONTINUATIONs of literal
		// fields without end.
		c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: junk[:16000]})
		// Written before anything is read (the client's framer is not
		// safe for a reader acknowledging meanwhile); the server closes
		// long before the socket's buffers fill.
		for range 100 {
			if c.fr.WriteContinuation(3, false, junk[:16000]) != nil {
				break
			}
		}
		c.goAway()
		c.ends()
	})
	t.Run("empty data", func(t *testing.T) {
		c := dialLean(t, e)
		c.request(1, "POST", "/echo", false)
		for range 2 * maxEmptyFrames {
			if c.fr.WriteData(1, false, nil) != nil {
				break
			}
		}
		if g := c.goAway(); g.ErrCode != http2.ErrCodeEnhanceYourCalm {
			t.Fatalf("GOAWAY %v", g.ErrCode)
		}
		c.ends()
	})
}

// Flow-control errors: a connection window past 2^31-1 ends the
// connection; DATA on a stream the lean front answered is refused and its
// connection window given back.
func TestLeanH2FlowControlErrors(t *testing.T) {
	e := newLeanEnv(t, nil)
	path := e.fill(t, 10)
	t.Run("window overflow", func(t *testing.T) {
		c := dialLean(t, e)
		c.fr.WriteWindowUpdate(0, 1<<31-1)
		if g := c.goAway(); g.ErrCode != http2.ErrCodeFlowControl {
			t.Fatalf("GOAWAY %v", g.ErrCode)
		}
		c.ends()
	})
	t.Run("data on an answered stream", func(t *testing.T) {
		c := dialLean(t, e)
		c.request(1, "GET", path, true)
		c.read(1, false)
		c.fr.WriteData(1, false, []byte("late"))
		var refund uint32
		for {
			f, err := c.fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			if w, ok := f.(*http2.WindowUpdateFrame); ok && w.StreamID == 0 {
				refund = w.Increment
			}
			if r, ok := f.(*http2.RSTStreamFrame); ok {
				if r.StreamID != 1 || r.ErrCode != http2.ErrCodeStreamClosed || refund != 4 {
					t.Fatalf("RST_STREAM %d %v, window given back %d", r.StreamID, r.ErrCode, refund)
				}
				break
			}
		}
	})
	t.Run("frames on an even stream", func(t *testing.T) {
		// Even streams are the server's, which opens none: each is idle
		// however far the client's streams went.
		for _, write := range []func(c *leanClient){
			func(c *leanClient) { c.fr.WriteWindowUpdate(2, 1) },
			func(c *leanClient) { c.fr.WriteRSTStream(2, http2.ErrCodeCancel) },
			func(c *leanClient) { c.fr.WriteData(2, false, []byte("x")) },
		} {
			c := dialLean(t, e)
			c.request(3, "GET", path, true)
			c.read(3, false)
			write(c)
			if g := c.goAway(); g.ErrCode != http2.ErrCodeProtocol {
				t.Fatalf("GOAWAY %v", g.ErrCode)
			}
			c.ends()
		}
	})
	t.Run("data on an idle stream", func(t *testing.T) {
		c := dialLean(t, e)
		c.fr.WriteData(5, false, []byte("nobody"))
		// As x/net's server, the GOAWAY's last stream is at least the
		// offending frame's.
		if g := c.goAway(); g.ErrCode != http2.ErrCodeProtocol || g.LastStreamID != 5 {
			t.Fatalf("GOAWAY %v, last stream %d; want PROTOCOL_ERROR, 5", g.ErrCode, g.LastStreamID)
		}
		c.ends()
	})
}

// Hits use the connection window too, so a relayed answer may find it
// closed: its DATA waits for the client's credit, and past the send
// timeout its stream is reset (as x/net resets a stream whose writes
// stall) while the connection goes on.
func TestLeanH2RelayedAnswerWithoutCreditIsReset(t *testing.T) {
	e := newLeanEnv(t, func(c *edge.Config) { c.Server.SendTimeout = 300 * time.Millisecond })
	hit := e.fill(t, 40000)
	small := e.fill(t, 100)
	c := dialLean(t, e, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	c.request(1, "GET", hit, true) // 40000 of the connection's 65535
	if a := c.read(1, false); len(a.body) != 40000 {
		t.Fatalf("hit: %d bytes", len(a.body))
	}
	c.request(3, "GET", "/obj?size=40000&miss", true) // relayed: 25535 fit
	a := c.read(3, false)
	if !a.reset || a.rst != http2.ErrCodeInternal || len(a.body) >= 40000 {
		t.Fatalf("stalled relayed answer: %d bytes, reset %v %v", len(a.body), a.reset, a.rst)
	}
	c.fr.WriteWindowUpdate(0, 1<<20)
	c.request(7, "GET", small, true)
	if a := c.read(7, false); string(a.body) != strings.Repeat("x", 100) {
		t.Fatalf("after the reset: %v %q", a.fields, a.body)
	}
}

// The connection caps count lean connections as any other.
func TestLeanH2ConnectionCaps(t *testing.T) {
	e := newLeanEnv(t, func(c *edge.Config) { c.Server.MaxConnectionsPerIP = 1 })
	path := e.fill(t, 10)
	poll.Until(t, 10*time.Second, "the filling connection gone", func() bool {
		conns, _ := e.relays()
		return conns == 0
	})
	c := dialLean(t, e)
	c.request(1, "GET", path, true)
	c.read(1, false)
	conn, err := tls.Dial("tcp", e.srv.TLSAddr(), &tls.Config{ServerName: leanHost, InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err == nil {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(conn, http2.ClientPreface)
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("a second connection from the address was served")
	}
}

// A PRIORITY frame that makes a relayed stream depend on itself is a
// stream error (RFC 9113 §5.3.1): the stream is reset, on x/net's server
// behind too, so that nothing more is relayed on it and it no longer
// counts as open.
func TestLeanH2SelfDependentStreamIsReset(t *testing.T) {
	e := newLeanEnv(t, nil)
	c := dialLean(t, e)
	c.request(1, "GET", "/slow/1", true)
	<-e.arrived
	c.fr.WritePriority(1, http2.PriorityParam{StreamDep: 1, Weight: 15})
	if a := c.read(1, false); !a.reset || a.rst != http2.ErrCodeProtocol {
		t.Fatalf("stream 1: %v, reset %v %v; want PROTOCOL_ERROR", a.fields, a.reset, a.rst)
	}
	// Well within the edge's own wait for the origin (whose 504 would
	// then end the stream).
	poll.Until(t, 3*time.Second, "the reset stream no longer open", func() bool { return e.openStreams() == 0 })
}

// openStreams is the number of relayed streams open on the lean front.
func (e *leanEnv) openStreams() int {
	l := e.srv.lean
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for lc := range l.conns {
		lc.mu.Lock()
		n += len(lc.streams)
		lc.mu.Unlock()
	}
	return n
}

// A stream error the lean front's reader finds on a relayed stream (here
// a WINDOW_UPDATE of 0) resets the stream on x/net's server too.
func TestLeanH2StreamErrorOnARelayedStreamEndsIt(t *testing.T) {
	e := newLeanEnv(t, nil)
	c := dialLean(t, e)
	c.request(1, "GET", "/slow/1", true)
	<-e.arrived
	c.fr.AllowIllegalWrites = true
	c.fr.WriteWindowUpdate(1, 0)
	if a := c.read(1, false); !a.reset || a.rst != http2.ErrCodeProtocol {
		t.Fatalf("stream 1: %v, reset %v %v; want PROTOCOL_ERROR", a.fields, a.reset, a.rst)
	}
	poll.Until(t, 3*time.Second, "the reset stream no longer open", func() bool { return e.openStreams() == 0 })
}

// While a relayed answer waits for connection window that hits used,
// a hit does not take the window before it: it is relayed and queues
// behind, and both come once the client grants more.
func TestLeanH2HitsDoNotStarveAWaitingRelayedAnswer(t *testing.T) {
	e := newLeanEnv(t, nil)
	big := e.fill(t, 40000)
	small := e.fill(t, 1000)
	c := dialLean(t, e, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	c.request(1, "GET", big, true) // 40000 of the connection's 65535
	if a := c.read(1, false); len(a.body) != 40000 {
		t.Fatalf("hit: %d bytes", len(a.body))
	}
	c.request(3, "GET", "/obj?size=40000&miss", true) // relayed: its second frame waits
	poll.Until(t, 10*time.Second, "a relayed frame waiting for credit", func() bool {
		l := e.srv.lean
		l.mu.Lock()
		defer l.mu.Unlock()
		for lc := range l.conns {
			lc.mu.Lock()
			w := lc.relay != nil && lc.relay.waiting
			lc.mu.Unlock()
			if w {
				return true
			}
		}
		return false
	})
	c.request(5, "GET", small, true)
	c.fr.WritePing(false, [8]byte{5})
	got := 0 // of stream 3
	for {
		f, err := c.next()
		if err != nil {
			t.Fatal(err)
		}
		if h, ok := f.(*headerBlock); ok && h.StreamID == 5 {
			t.Fatal("the hit was answered while a relayed answer waited for the window it took")
		}
		if p, ok := f.(*http2.PingFrame); ok && p.IsAck() {
			break
		}
		if d, ok := f.(*dataFrame); ok && d.StreamID == 3 {
			got += len(d.data)
		}
	}
	c.fr.WriteWindowUpdate(0, 1<<20)
	if a := c.read(5, false); len(a.body) != 1000 {
		t.Fatalf("the hit after the grant: %d bytes", len(a.body))
	}
	if a := c.read(3, false); got+len(a.body) != 40000 {
		t.Fatalf("the relayed answer: %d bytes in all", got+len(a.body))
	}
}

// A setting out of its range ends the connection with the error x/net's
// server says.
func TestLeanH2BadSettingsEndTheConnection(t *testing.T) {
	e := newLeanEnv(t, nil)
	for _, tc := range []struct {
		s    http2.Setting
		want http2.ErrCode
	}{
		{http2.Setting{ID: http2.SettingNoRFC7540Priorities, Val: 2}, http2.ErrCodeProtocol},
		{http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31}, http2.ErrCodeFlowControl},
		{http2.Setting{ID: http2.SettingMaxFrameSize, Val: 100}, http2.ErrCodeProtocol},
		{http2.Setting{ID: http2.SettingEnablePush, Val: 2}, http2.ErrCodeProtocol},
	} {
		c := dialLean(t, e, tc.s)
		if g := c.goAway(); g.ErrCode != tc.want {
			t.Fatalf("%v: GOAWAY %v, want %v", tc.s, g.ErrCode, tc.want)
		}
		c.ends()
	}
}

// A hit whose body is in the disk tier is answered by the lean front when
// the body is small (read in behind the header), relayed when it is
// large; both whole.
func TestLeanH2DiskHits(t *testing.T) {
	e := newLeanEnv(t, func(c *edge.Config) {
		c.Cache.MaxBytes = 512 << 10
		c.Cache.MaxObjectBytes = 256 << 10
		c.Cache.MaxInflightBytes = 8 << 20
		c.Cache.Disk = edge.DiskConfig{Path: t.TempDir(), MaxBytes: 64 << 20}
	})
	// Filled over HTTPS: the scheme is in the key.
	tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: leanHost, InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	get := func(path string) {
		req, _ := http.NewRequest("GET", "https://"+e.srv.TLSAddr()+path, nil)
		req.Host = leanHost
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	small, large := "/obj?size=5000&n=small", "/obj?size=100000&n=large"
	get(small)
	get(large)
	for i := range 40 { // pushes the first ones out of memory, onto disk
		get("/obj?size=40000&n=fill" + strconv.Itoa(i))
	}
	poll.Until(t, 10*time.Second, "the first objects on disk", func() bool {
		st, _ := e.h.DiskStats()
		return st.Objects >= 20
	})
	for _, p := range []string{small, large} {
		var x edge.Hit
		if !e.h.LookupHit(edge.HitRequest{TLS: true, Host: []byte(leanHost), Target: []byte(p), Remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}, &x) || !x.BodyOnDisk() {
			t.Fatalf("%s: not a hit on disk", p)
		}
		x.Release()
	}
	tr.CloseIdleConnections()
	poll.Until(t, 10*time.Second, "the filling connection gone", func() bool {
		conns, _ := e.relays()
		return conns == 0
	})
	c := dialLean(t, e, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	c.fr.WriteWindowUpdate(0, 1<<20)
	c.request(1, "GET", small, true)
	if a := c.read(1, false); string(a.body) != strings.Repeat("x", 5000) || !strings.Contains(a.fields["cache-status"], "hit") {
		t.Fatalf("small disk hit: %v, %d bytes", a.fields, len(a.body))
	}
	if _, relayed := e.relays(); relayed != 0 {
		t.Fatal("the small disk hit was relayed")
	}
	c.request(3, "GET", large, true)
	if a := c.read(3, false); string(a.body) != strings.Repeat("x", 100000) || !strings.Contains(a.fields["cache-status"], "hit") {
		t.Fatalf("large disk hit: %v, %d bytes", a.fields, len(a.body))
	}
	if _, relayed := e.relays(); relayed != 1 {
		t.Fatal("the large disk hit was not relayed")
	}
}

// An empty DATA frame on a stream whose request ended is a stream error
// STREAM_CLOSED (RFC 9113 §5.1), as any DATA there, and x/net's server
// resets the stream: the lean front, which drops an empty frame on an
// open stream, relays it there. Before, it dropped it first, and the
// stream stayed open (h2diff's known difference 6).
func TestLeanH2EmptyDataAfterTheRequestResetsTheStream(t *testing.T) {
	e := newLeanEnv(t, nil)
	c := dialLean(t, e)
	c.request(1, "GET", "/slow/1", true)
	<-e.arrived
	c.fr.WriteData(1, false, nil)
	if a := c.read(1, false); !a.reset || a.rst != http2.ErrCodeStreamClosed {
		t.Fatalf("stream 1: %v, reset %v %v; want STREAM_CLOSED", a.fields, a.reset, a.rst)
	}
	poll.Until(t, 3*time.Second, "the reset stream no longer open", func() bool { return e.openStreams() == 0 })
}

// A request whose header list passes the limit (SETTINGS_MAX_HEADER_LIST_SIZE,
// from server.max_header_bytes) gets x/net's 431, whether one field or
// many small ones pass it. Before, the relay sent the server a field
// longer than its longest string: a connection error there, and the
// client's stream was never answered (h2diff's known difference 7).
func TestLeanH2HeaderListTooLongGets431(t *testing.T) {
	e := newLeanEnv(t, nil)
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"one field", []string{"x-big", strings.Repeat("a", 65800)}},
		{"2368 small fields", func() []string {
			var kv []string
			for i := range 2368 {
				kv = append(kv, "x-n", strconv.Itoa(i))
			}
			return kv
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialLean(t, e)
			c.request(1, "GET", "/x", true, tc.extra...)
			if a := c.read(1, false); a.reset || a.fields[":status"] != "431" {
				t.Fatalf("stream 1: %v, reset %v %v; want 431", a.fields, a.reset, a.rst)
			}
		})
	}
}

// A client that lowers its header table size, then raises it again before
// the next header block, gets that block led by two size updates: the
// smallest size, then the final one (RFC 7541 §4.2), a hit's block as
// much as a relayed one's. Before, a hit's block said the final size
// only, and the client's table kept entries the server's encoder had
// dropped (found by h2diff's fuzzer).
func TestLeanH2HitSignalsTheSmallestTableSize(t *testing.T) {
	e := newLeanEnv(t, nil)
	path := e.fill(t, 100)
	c := dialLean(t, e)
	acked := 0
	c.fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
	c.fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 4096})
	for acked < 3 { // the dial's SETTINGS and the two above
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := f.(*http2.SettingsFrame); ok {
			if s.IsAck() {
				acked++
			} else {
				c.fr.WriteSettingsAck()
			}
		}
	}
	c.request(1, "GET", path, true)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if h, ok := f.(*http2.HeadersFrame); ok {
			// 001xxxxx: a size update; 0, then 4096 (31 + 4065: 0x3f 0xe1 0x1f).
			want := []byte{0x20, 0x3f, 0xe1, 0x1f}
			if got := h.HeaderBlockFragment(); !bytes.HasPrefix(got, want) {
				t.Fatalf("header block starts % x, want % x", got[:min(len(got), 8)], want)
			}
			return
		}
	}
}
