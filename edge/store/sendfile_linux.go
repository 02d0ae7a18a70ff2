package store

import (
	"errors"
	"io"
	"os"
	"syscall"
)

// maxSendfileChunk bounds one sendfile call. A call that moves a whole
// 1 MiB body runs for some 170 µs in the kernel, long enough for the
// runtime to hand the goroutine's P to another thread meanwhile and take
// it back after (futex and scheduler work on every hit: strace showed
// 0.7 futex calls and a sysmon wakeup per 1 MiB disk hit); 256 KiB calls
// stay short. disk.sh, 2 rounds of 2 repetitions, 1 MiB disk hits: 87-96
// µs of CPU per hit against 199-224 µs with 4 MiB calls (nginx with
// sendfile: 156-213), req/s up 20-57 %, and the load generator's CPU per
// request down too, so the work was not moved to the receiver; 64 KiB
// hits unchanged (one call either way). 64 KiB calls measured between
// the two (112-123 µs).
const maxSendfileChunk = 256 << 10

// sendFile writes n bytes of f from offset off to the socket dst with
// sendfile(2), waiting in the runtime's poller while the socket's buffer
// is full (dst's write deadline applies). It passes the offset
// explicitly, so f's own position is never used: the readers of a
// segment share one *os.File. handled is false when nothing could be
// sent that way (dst is not a socket the kernel can sendfile to), and
// the caller copies instead.
func sendFile(dst syscall.Conn, f *os.File, off, n int64) (written int64, err error, handled bool) {
	rc, err := dst.SyscallConn()
	if err != nil {
		return 0, nil, false
	}
	src, err := f.SyscallConn()
	if err != nil {
		return 0, nil, false
	}
	var serr error
	cerr := src.Read(func(in uintptr) bool {
		werr := rc.Write(func(out uintptr) bool {
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
	if written == 0 && (errors.Is(serr, syscall.EINVAL) || errors.Is(serr, syscall.ENOSYS) || errors.Is(serr, syscall.EOPNOTSUPP)) {
		return 0, nil, false // not a destination sendfile serves
	}
	return written, serr, true
}
