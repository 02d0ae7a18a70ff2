package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tcpPair is a connected pair of loopback TCP sockets.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// TestBodyReaderWriteTo checks the disk tier's body writer: bodies of
// several segments' objects go whole and byte for byte to sockets with
// small buffers (so sendfile waits for room many times), several of
// them at once from one segment file (each at its own offset: the file's
// position is shared), to a writer that is no socket, from a position
// the reader has read to; and a client that goes away or a write
// deadline ends it with an error, not a hang.
func TestBodyReaderWriteTo(t *testing.T) {
	d := openTestDisk(t, t.TempDir(), DiskOptions{SegmentBytes: 8 << 20}, nil)
	sizes := []int{0, 1, 5000, 64 << 10, 1 << 20, 3<<20 + 7}
	var entries []*Entry
	for i, n := range sizes {
		e := diskEntry(t, fmt.Sprintf("h/send/%d", i), n, nil)
		if !d.Admit(e) {
			t.Fatalf("%s not admitted", e.Key())
		}
		entries = append(entries, e)
	}
	d.drain()

	t.Run("sockets", func(t *testing.T) {
		var wg sync.WaitGroup
		for _, want := range entries {
			got := d.Get(want.Key())
			c, s := tcpPair(t)
			s.SetWriteBuffer(16 << 10)
			c.SetReadBuffer(16 << 10)
			rd, err := got.OpenBody()
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer rd.Close()
				n, err := io.Copy(s, rd) // io.Copy takes WriteTo
				if err != nil || n != want.BodySize() {
					t.Errorf("%s: wrote %d of %d: %v", want.Key(), n, want.BodySize(), err)
				}
				s.CloseWrite()
			}()
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			b, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(b, want.Body()) {
				t.Errorf("%s: read %d bytes (want %d) %v; equal %v", want.Key(), len(b), want.BodySize(), err, bytes.Equal(b, want.Body()))
			}
		}
		wg.Wait()
	})

	big := entries[len(entries)-1]
	t.Run("concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		for range 4 {
			c, s := tcpPair(t)
			s.SetWriteBuffer(16 << 10)
			rd, err := d.Get(big.Key()).OpenBody()
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(2)
			go func() {
				defer wg.Done()
				defer rd.Close()
				if n, err := rd.WriteTo(s); err != nil || n != big.BodySize() {
					t.Errorf("wrote %d: %v", n, err)
				}
				s.CloseWrite()
			}()
			go func() {
				defer wg.Done()
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				b, err := io.ReadAll(c)
				if err != nil || !bytes.Equal(b, big.Body()) {
					t.Errorf("read %d bytes: %v", len(b), err)
				}
			}()
		}
		wg.Wait()
	})

	t.Run("not a socket, after a read", func(t *testing.T) {
		rd, err := d.Get(big.Key()).OpenBody()
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		head := make([]byte, 1000)
		if _, err := io.ReadFull(rd, head); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		n, err := rd.WriteTo(&buf)
		if err != nil || n != big.BodySize()-1000 || !bytes.Equal(append(head, buf.Bytes()...), big.Body()) {
			t.Fatalf("wrote %d: %v", n, err)
		}
	})

	t.Run("after a read to a socket", func(t *testing.T) {
		c, s := tcpPair(t)
		rd, err := d.Get(big.Key()).OpenBody()
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		rd.Seek(12345, io.SeekStart)
		go func() {
			rd.WriteTo(s)
			s.CloseWrite()
		}()
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(b, big.Body()[12345:]) {
			t.Fatalf("read %d bytes: %v", len(b), err)
		}
	})

	t.Run("client gone", func(t *testing.T) {
		c, s := tcpPair(t)
		s.SetWriteBuffer(16 << 10)
		c.SetLinger(0)
		c.Close() // a reset
		rd, err := d.Get(big.Key()).OpenBody()
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		s.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if n, err := rd.WriteTo(s); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("wrote %d to a reset connection: %v", n, err)
		}
	})

	t.Run("renewed between chunks", func(t *testing.T) {
		c, s := tcpPair(t)
		rd, err := d.Get(big.Key()).OpenBody()
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		w := &renewingConn{TCPConn: s}
		go func() {
			rd.WriteTo(w)
			s.CloseWrite()
		}()
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(b, big.Body()) {
			t.Fatalf("read %d bytes: %v", len(b), err)
		}
		// One renewal before each chunk of sendfileChunk.
		if want := (big.BodySize() + sendfileChunk - 1) / sendfileChunk; w.renewals.Load() != want {
			t.Fatalf("%d renewals for %d bytes, want %d", w.renewals.Load(), big.BodySize(), want)
		}
	})

	t.Run("deadline", func(t *testing.T) {
		_, s := tcpPair(t) // nobody reads
		s.SetWriteBuffer(16 << 10)
		rd, err := d.Get(big.Key()).OpenBody()
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		s.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := rd.WriteTo(s); !errors.Is(err, os.ErrDeadlineExceeded) || n >= big.BodySize() {
			t.Fatalf("wrote %d to a client that reads nothing: %v", n, err)
		}
	})
}

// renewingConn is a socket that counts the renewals of its deadline.
type renewingConn struct {
	*net.TCPConn
	renewals atomic.Int64
}

func (c *renewingConn) RenewWriteDeadline() { c.renewals.Add(1) }
