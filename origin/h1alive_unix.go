//go:build unix

package origin

import (
	"syscall"
)

// peekIdle reports whether an idle connection is still fit for a request:
// its peer has not closed it and sent nothing unasked (stray bytes after a
// response, which would otherwise be read as the next one's start). One
// non-blocking MSG_PEEK; the Transport learns the same from the read its
// goroutine keeps pending on every idle connection.
func (c *h1Conn) peekIdle() bool {
	if c.raw == nil {
		return true
	}
	fit := false
	err := c.raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		_ = n // 1: a stray byte; 0: closed
		fit = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && fit
}
