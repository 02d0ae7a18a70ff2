package store

import (
	"errors"
	"io"
	"os"
	"syscall"
)

// maxSendfileChunk bounds one sendfile call, as the runtime's own
// sendfile loop does, so a large body does not hold the socket's
// poller for one long call.
const maxSendfileChunk = 4 << 20

// sendFile writes head, then n bytes of f from offset off, to the socket
// dst: head with send(2), the body with sendfile(2), waiting in the
// runtime's poller while the socket's buffer is full (dst's write
// deadline applies). When a body follows, head goes with MSG_MORE: the
// kernel holds it until the body's first bytes join it, so that a
// header and its body leave in the same segments instead of the header
// in a packet of its own (the socket has TCP_NODELAY), as TCP_CORK
// would, but released by sendfile's last chunk, which carries no
// MSG_MORE (so no wait for the delayed ACK, which tcp_nopush costs
// nginx). It passes the offset explicitly, so f's own position is never
// used: the readers of a segment share one *os.File. headN is how much
// of head was sent. handled is false when the body could not be sent
// that way (dst is not a socket the kernel can sendfile to), and the
// caller writes the rest of head and copies the body instead.
func sendFile(dst syscall.Conn, head []byte, f *os.File, off, n int64) (headN int, written int64, err error, handled bool) {
	rc, err := dst.SyscallConn()
	if err != nil {
		return 0, 0, nil, false
	}
	src, err := f.SyscallConn()
	if err != nil {
		return 0, 0, nil, false
	}
	flags := 0
	if n > 0 {
		flags = syscall.MSG_MORE
	}
	var serr error
	cerr := src.Read(func(in uintptr) bool {
		werr := rc.Write(func(out uintptr) bool {
			for headN < len(head) {
				m, e := syscall.SendmsgN(int(out), head[headN:], nil, nil, flags)
				if m > 0 {
					headN += m
				}
				switch {
				case e == syscall.EAGAIN:
					return false // wait until the socket can take more
				case e == syscall.EINTR:
					continue
				case e != nil:
					serr = e
					return true
				}
			}
			for written < n {
				o := off + written
				m, e := syscall.Sendfile(int(out), int(in), &o, int(min(n-written, maxSendfileChunk)))
				if m > 0 {
					written += int64(m)
				}
				switch {
				case e == syscall.EAGAIN:
					return false // wait until the socket can take more
				case e == syscall.EINTR:
					continue
				case e != nil:
					serr = e
					return true
				case m == 0:
					serr = io.ErrUnexpectedEOF // the file is shorter than the record said
					return true
				}
			}
			return true
		})
		if serr == nil {
			serr = werr
		}
		return true
	})
	if serr == nil {
		serr = cerr
	}
	if written == 0 && (errors.Is(serr, syscall.EINVAL) || errors.Is(serr, syscall.ENOSYS) || errors.Is(serr, syscall.EOPNOTSUPP) || errors.Is(serr, syscall.ENOTSOCK)) {
		return headN, 0, nil, false // not a destination sendfile serves
	}
	return headN, written, serr, true
}
