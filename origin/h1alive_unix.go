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
	if c.peek == nil { // made once: a closure per call would be an allocation per request
		c.peek = func(fd uintptr) bool {
			_, _, err := syscall.Recvfrom(int(fd), c.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			// No error: a stray byte, or 0 bytes for the peer's close.
			c.peekFit = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
			return true
		}
	}
	c.peekFit = false
	err := c.raw.Read(c.peek)
	return err == nil && c.peekFit
}
