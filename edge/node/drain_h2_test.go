package node_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/listen"
	"github.com/meridiancdn/meridian/edge/node"
)

// A draining node closes its HTTP/2 connections gracefully (issue 14,
// item 9): as the drain begins, long before its deadline, the client gets
// GOAWAY with no error naming every stream it opened, and each of those
// streams then gets a whole answer: the one the origin answers during the
// drain its 200 and body, the one still waiting on the origin at the
// deadline a 503. No stream is reset, no GOAWAY carries an error, and the
// connection ends with an orderly close after the last answer. The frames
// are read raw, so that the test sees exactly what the server sent and in
// which order.
func TestDrainClosesHTTP2ConnectionsWithGoAway(t *testing.T) {
	release, hang := make(chan struct{}), make(chan struct{})
	arrived := make(chan string, 4)
	osrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- r.URL.Path
		wait := hang
		if r.URL.Path == "/finishes" {
			wait = release
		}
		select {
		case <-wait:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "answered during the drain")
	}))
	defer osrv.Close()
	defer close(hang)

	certPEM, keyPEM, err := listen.SelfSignedCert([]string{"site.test"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)

	cfg := nodeConfig("drain-h2", osrv.URL)
	cfg.Cluster = nil
	cfg.Sites[0].Timeout = time.Minute
	cfg.TLS = &edge.TLSConfig{Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile}
	n, err := node.Start(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			n.Shutdown(context.Background())
		}
	}()

	conn, err := tls.Dial("tcp", n.TLSAddr(), &tls.Config{ServerName: "site.test", RootCAs: pool, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN chose %q, want h2", p)
	}
	conn.SetDeadline(time.Now().Add(time.Minute)) // a hung server fails the test, not the run
	fr := http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var wmu sync.Mutex // the reader acknowledges while the test writes
	write := func(fn func() error) {
		wmu.Lock()
		defer wmu.Unlock()
		if err := fn(); err != nil {
			t.Errorf("write: %v", err)
		}
	}
	write(func() error {
		if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
			return err
		}
		return fr.WriteSettings()
	})

	// Everything the server sends, in order; the channel closes when the
	// connection ends (io.EOF: an orderly close; anything else is kept).
	type frame struct {
		f   any // an http2.Frame, or a dataCopy
		err error
	}
	frames := make(chan frame, 64)
	go func() {
		defer close(frames)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				frames <- frame{err: err}
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					write(fr.WriteSettingsAck)
				}
				continue
			case *http2.PingFrame:
				if !f.IsAck() {
					write(func() error { return fr.WritePing(true, f.Data) })
				}
				continue
			case *http2.WindowUpdateFrame:
				continue
			case *http2.DataFrame:
				// The framer reuses its buffer: keep a copy.
				frames <- frame{f: dataCopy{f.FrameHeader, append([]byte(nil), f.Data()...)}}
				continue
			}
			frames <- frame{f: f}
		}
	}()

	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	get := func(stream uint32, path string) {
		hbuf.Reset()
		for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "site.test"}, {":path", path}} {
			enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
		}
		write(func() error {
			return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true})
		})
	}
	const finishes, waits = 1, 3
	get(finishes, "/finishes")
	get(waits, "/waits")
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(20 * time.Second):
			t.Fatal("the requests did not reach the origin")
		}
	}

	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		shutdown <- n.Shutdown(ctx)
	}()
	stopped = true

	// What each stream got, and what came before it.
	status := map[uint32]string{}
	body := map[uint32]*bytes.Buffer{finishes: {}, waits: {}}
	ended := map[uint32]bool{}
	var goAway *http2.GoAwayFrame
	var end error
	for fm := range frames {
		if fm.err != nil {
			end = fm.err
			break
		}
		switch f := fm.f.(type) {
		case *http2.GoAwayFrame:
			if goAway != nil {
				t.Errorf("a second GOAWAY: %v (last stream %d)", f.ErrCode, f.LastStreamID)
				continue
			}
			goAway = f
			if len(status) > 0 {
				t.Errorf("GOAWAY came after answers %v: want it as the drain begins", status)
			}
			// Now that the client knows, the origin answers one of the two.
			close(release)
		case *http2.MetaHeadersFrame:
			if goAway == nil {
				t.Errorf("stream %d answered %s before any GOAWAY", f.StreamID, f.PseudoValue("status"))
			}
			status[f.StreamID] = f.PseudoValue("status")
			if f.StreamEnded() {
				ended[f.StreamID] = true
			}
		case dataCopy:
			if b := body[f.StreamID]; b != nil {
				b.Write(f.data)
			}
			if f.Flags.Has(http2.FlagDataEndStream) {
				ended[f.StreamID] = true
			}
		case *http2.RSTStreamFrame:
			t.Errorf("stream %d reset: %v", f.StreamID, f.ErrCode)
		default:
			t.Logf("frame %T", f)
		}
	}
	if err := <-shutdown; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if !errors.Is(end, io.EOF) {
		t.Errorf("the connection ended with %v, want an orderly close (EOF)", end)
	}
	switch {
	case goAway == nil:
		t.Fatal("no GOAWAY before the connection closed")
	case goAway.ErrCode != http2.ErrCodeNo:
		t.Errorf("GOAWAY with %v, want NO_ERROR", goAway.ErrCode)
	case goAway.LastStreamID < waits:
		t.Errorf("GOAWAY's last stream %d: the open streams %d and %d would count as not processed", goAway.LastStreamID, finishes, waits)
	}
	if status[finishes] != "200" || !ended[finishes] || body[finishes].String() != "answered during the drain" {
		t.Errorf("stream answered during the drain: status %q, ended %v, body %q; want 200 and the whole body",
			status[finishes], ended[finishes], body[finishes])
	}
	if status[waits] != fmt.Sprint(http.StatusServiceUnavailable) || !ended[waits] {
		t.Errorf("stream waiting on the origin at the deadline: status %q, ended %v; want a whole 503", status[waits], ended[waits])
	}
}

// dataCopy is a DATA frame whose bytes outlive the framer's next read.
type dataCopy struct {
	http2.FrameHeader
	data []byte
}
