package bench

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
)

// Floor is the all-miss row's calibration: the least a Go server does
// for a miss, so that the row shows how much of a miss's CPU is the I/O
// and the Go runtime (what any Go server pays here) and how much is
// Meridian's own work. For each request on a client connection it reads
// the request's head, sends a GET for the same target to the origin on a
// keep-alive connection of that client connection's own, reads the
// answer (its head only for Content-Length), copies the body into a
// buffer of its own kept in a map by target (as a cache keeps it), and
// writes a 200 with the body to the client.
//
// It is not a cache nor a proxy to use: it parses nothing beyond what
// framing needs, sets no timeouts, keeps every body, and closes any
// connection whose traffic is not that simple (a body on the request, no
// Content-Length on the answer, a head over 8 KiB). Only the benchmark
// runs it (`meridian bench floor`).
type Floor struct {
	// Origin is the origin's host:port.
	Origin string

	mu     sync.Mutex
	bodies map[string][]byte
}

// floorMaxHead bounds a request's or an answer's head.
const floorMaxHead = 8 << 10

// errFloorTraffic ends a connection whose traffic the floor does not do.
var errFloorTraffic = errors.New("floor: not a simple GET and Content-Length answer")

// Serve accepts connections on ln until it fails (a closed listener).
func (f *Floor) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go f.serveConn(c)
	}
}

// Stored returns how many bodies the floor holds.
func (f *Floor) Stored() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.bodies)
}

func (f *Floor) serveConn(c net.Conn) {
	defer c.Close()
	var o net.Conn
	defer func() {
		if o != nil {
			o.Close()
		}
	}()
	cr := bufio.NewReaderSize(c, 4096)
	var or *bufio.Reader
	req := make([]byte, 0, 256)
	out := make([]byte, 0, 4096)
	for {
		target, host, err := readFloorRequest(cr)
		if err != nil {
			return
		}
		if o == nil {
			if o, err = net.Dial("tcp", f.Origin); err != nil {
				return
			}
			or = bufio.NewReaderSize(o, 4096)
		}
		req = append(req[:0], "GET "...)
		req = append(req, target...)
		req = append(req, " HTTP/1.1\r\nHost: "...)
		req = append(req, host...)
		req = append(req, "\r\nVia: 1.1 floor\r\n\r\n"...)
		if _, err := o.Write(req); err != nil {
			return
		}
		n, err := readFloorAnswerHead(or)
		if err != nil {
			return
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(or, body); err != nil {
			return
		}
		f.mu.Lock()
		if f.bodies == nil {
			f.bodies = map[string][]byte{}
		}
		f.bodies[target] = body
		f.mu.Unlock()
		out = append(out[:0], "HTTP/1.1 200 OK\r\nContent-Length: "...)
		out = strconv.AppendInt(out, int64(n), 10)
		out = append(out, "\r\n\r\n"...)
		out = append(out, body...)
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// readFloorRequest reads a GET's head and returns its target and Host.
func readFloorRequest(r *bufio.Reader) (target, host string, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return "", "", err
	}
	method, rest, _ := bytes.Cut(line, []byte(" "))
	t, _, ok := bytes.Cut(rest, []byte(" "))
	if !ok || string(method) != "GET" || len(t) == 0 {
		return "", "", errFloorTraffic
	}
	target = string(t)
	size := len(line)
	for {
		l, err := r.ReadSlice('\n')
		if err != nil {
			return "", "", err
		}
		if size += len(l); size > floorMaxHead {
			return "", "", errFloorTraffic
		}
		l = bytes.TrimRight(l, "\r\n")
		if len(l) == 0 {
			return target, host, nil
		}
		name, value, _ := bytes.Cut(l, []byte(":"))
		switch {
		case bytes.EqualFold(name, []byte("Host")):
			host = string(bytes.TrimSpace(value))
		case bytes.EqualFold(name, []byte("Content-Length")), bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return "", "", errFloorTraffic // a body: not the floor's
		}
	}
}

// readFloorAnswerHead reads a 200's head and returns its
// Content-Length.
func readFloorAnswerHead(r *bufio.Reader) (int, error) {
	status, err := r.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200 ")) {
		return 0, errFloorTraffic
	}
	n, size := -1, len(status)
	for {
		l, err := r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if size += len(l); size > floorMaxHead {
			return 0, errFloorTraffic
		}
		l = bytes.TrimRight(l, "\r\n")
		if len(l) == 0 {
			if n < 0 {
				return 0, errFloorTraffic
			}
			return n, nil
		}
		name, value, _ := bytes.Cut(l, []byte(":"))
		if bytes.EqualFold(name, []byte("Content-Length")) {
			v, err := strconv.Atoi(string(bytes.TrimSpace(value)))
			if err != nil || v < 0 || v > 64<<20 {
				return 0, errFloorTraffic
			}
			n = v
		}
	}
}
