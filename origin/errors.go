package origin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
)

// Kind says how a request to the origin failed, so that the edge can answer
// 504 for timeouts, 503 when the pool refuses to try (KindUnavailable,
// KindOverloaded), and 502 otherwise.
type Kind int

// The kinds of origin failure.
const (
	// KindTimeout: no answer in time (connect, try or overall timeout, or
	// the caller's deadline).
	KindTimeout Kind = iota + 1
	// KindRefused: no connection could be made (refused, unreachable).
	KindRefused
	// KindReset: the connection broke before the response headers.
	KindReset
	// KindTruncated: the connection broke during the response body.
	KindTruncated
	// KindProtocol: the answer was not valid HTTP (or TLS failed).
	KindProtocol
	// KindUnavailable: the pool did not try, its circuit being open.
	KindUnavailable
	// KindCanceled: the caller gave up (its context was canceled).
	KindCanceled
	// KindOverloaded: the pool did not send the request because every
	// server it tried was at its max_inflight cap, with its queue full or
	// no slot free within queue_timeout (see IsOverloaded). Nothing
	// reached the origin; the edge answers 503 with Retry-After.
	KindOverloaded
)

var kindNames = [...]string{
	KindTimeout:     "timeout",
	KindRefused:     "refused",
	KindReset:       "reset",
	KindTruncated:   "truncated",
	KindProtocol:    "protocol",
	KindUnavailable: "unavailable",
	KindCanceled:    "canceled",
	KindOverloaded:  "overloaded",
}

// String returns the kind's lower-case name, as used in metrics.
func (k Kind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is the error of a failed origin request or response body.
type Error struct {
	// Kind classifies the failure.
	Kind Kind
	// Pool is the pool's name.
	Pool string
	// Server is the URL of the last server tried; empty if none was.
	Server string
	// Tries is how many servers were tried.
	Tries int
	// Err is the underlying error.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "origin pool %s", e.Pool)
	if e.Server != "" {
		fmt.Fprintf(&b, ": %s", e.Server)
	}
	fmt.Fprintf(&b, ": %s", e.Kind)
	if e.Tries > 1 {
		fmt.Fprintf(&b, " after %d tries", e.Tries)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// IsTimeout reports whether err is an origin [Error] of [KindTimeout]:
// the origin did not answer in time (504 rather than 502).
func IsTimeout(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == KindTimeout
}

// IsOverloaded reports whether err is an origin [Error] of
// [KindOverloaded]: the pool's caps on the origin's servers refused the
// request, which never reached them. The edge answers 503 with a
// Retry-After of a second or two (queue_timeout is a fair value): the
// origin is busy, not broken, and a retry soon may find a slot.
func IsOverloaded(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == KindOverloaded
}

// Sentinel causes, so that a timeout the pool set is told from the caller's.
var (
	errTryTimeout  = errors.New("no response headers within try_timeout")
	errPoolTimeout = errors.New("no response headers within timeout")
	errReadTimeout = errors.New("no more of the body within read_timeout")
	errCircuitOpen = errors.New("circuit breaker open")
)

// classify names the kind of a transport error. ctx is the pool's context
// for the request, try the context of this try, and parent the caller's.
func classify(err error, parent, ctx, try context.Context) Kind {
	switch {
	case context.Cause(try) == errTryTimeout, context.Cause(ctx) == errPoolTimeout:
		return KindTimeout
	case errors.Is(parent.Err(), context.DeadlineExceeded):
		return KindTimeout
	case parent.Err() != nil:
		return KindCanceled
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		if op.Timeout() {
			return KindTimeout
		}
		return KindRefused
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return KindRefused
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return KindTimeout
	}
	var (
		recErr  tls.RecordHeaderError
		certErr *tls.CertificateVerificationError
		unkAuth x509.UnknownAuthorityError
	)
	if errors.As(err, &recErr) || errors.As(err, &certErr) || errors.As(err, &unkAuth) {
		return KindProtocol
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "server closed idle connection") {
		return KindReset
	}
	return KindProtocol
}
