//go:build !unix

package origin

// peekIdle reports whether an idle connection is still fit for a request;
// without a non-blocking peek, the stale connection rule of h1RoundTrip
// is the only check.
func (c *h1Conn) peekIdle() bool { return true }
