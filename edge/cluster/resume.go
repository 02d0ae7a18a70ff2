package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/meridiancdn/meridian/edge/byterange"
)

// maxResumes bounds how many times one streaming peer answer is resumed:
// the owner, a replica, the shield and the origin are all the sources
// there are.
const maxResumes = 3

// errBodyClosed is what a resumable body reads after Close.
var errBodyClosed = errors.New("body closed")

// resumable makes a streaming 200 from peer resumable: if its body breaks
// before the end (the peer died, or its own upstream did), the peer is
// passed over for SuspectFor and the rest of the body is asked from next
// (the next source of the same chain: a replica, the shield, the origin)
// with "Range: bytes=N-" and "If-Range: <the strong ETag>", so that the
// edge reads one unbroken body. Answers read whole (peerBufferBytes),
// answers without a strong ETag, and answers to a Range request (a
// resumption itself) are left as they are: their break shows as a short
// body.
func (t *peerTransport) resumable(req *http.Request, resp *http.Response, peer string, next func(*http.Request) (*http.Response, error)) {
	etag := resp.Header.Get("Etag")
	if resp.StatusCode != http.StatusOK || !strongETag(etag) || req.Header.Get("Range") != "" {
		return
	}
	if _, whole := resp.Body.(wholeBody); whole {
		return
	}
	resp.Body = &resumeBody{
		ctx:  req.Context(),
		req:  req,
		etag: etag,
		size: resp.ContentLength,
		next: next,
		broke: func(err error) {
			t.n.markSuspect(peer)
			t.n.log.Warn("peer answer broke mid-body; resuming from the next source", "peer", peer, "uri", req.URL.RequestURI(), "err", err)
		},
		cur: resp.Body,
	}
}

// strongETag reports whether v is a strong entity tag (RFC 9110 8.8.3).
func strongETag(v string) bool {
	return len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' && !strings.ContainsAny(v[1:len(v)-1], "\"\r\n")
}

// resumeBody is a response body that resumes from the next source when
// the current one breaks. Read is called by one goroutine at a time (the
// fill); Close may come from another.
type resumeBody struct {
	ctx   context.Context // the fill's: bounds every resumption
	req   *http.Request   // the fill's request, cloned for a resumption
	etag  string
	size  int64 // the whole body's length; -1 if unknown
	next  func(*http.Request) (*http.Response, error)
	broke func(error) // the current source broke

	n       int64 // bytes read so far; only Read touches it
	resumes int
	pending error // a break seen with data, handled on the next Read

	mu     sync.Mutex
	cur    io.ReadCloser
	closed bool
}

func (b *resumeBody) Read(p []byte) (int, error) {
	for {
		if err := b.pending; err != nil {
			b.pending = nil
			if !b.resume(err) {
				return 0, err
			}
		}
		b.mu.Lock()
		cur, closed := b.cur, b.closed
		b.mu.Unlock()
		if closed {
			return 0, errBodyClosed
		}
		m, err := cur.Read(p)
		b.n += int64(m)
		if err == io.EOF && b.size >= 0 && b.n < b.size {
			err = io.ErrUnexpectedEOF // the source ended early
		}
		if err == nil || err == io.EOF {
			return m, err
		}
		if m > 0 {
			b.pending = err
			return m, nil
		}
		if !b.resume(err) {
			return 0, err
		}
	}
}

// resume replaces the broken source by the next one, answering from byte
// b.n of the same representation; false if there is none.
func (b *resumeBody) resume(cause error) bool {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed || b.ctx.Err() != nil || b.resumes >= maxResumes {
		return false
	}
	b.resumes++
	b.broke(cause)
	r := b.req.Clone(b.ctx)
	for _, f := range []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since"} {
		r.Header.Del(f) // a 304 is no use here
	}
	r.Header.Set("Range", "bytes="+strconv.FormatInt(b.n, 10)+"-")
	r.Header.Set("If-Range", b.etag)
	resp, err := b.next(r)
	if err != nil {
		return false
	}
	if err := b.check(resp); err != nil {
		resp.Body.Close()
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		resp.Body.Close()
		return false
	}
	b.cur.Close()
	b.cur = resp.Body
	return true
}

// check accepts a resumption's answer: a 206 of exactly the rest of the
// same representation, or a 200 of the same representation, whose first
// b.n bytes it skips.
func (b *resumeBody) check(resp *http.Response) error {
	if resp.Header.Get("Etag") != b.etag {
		return fmt.Errorf("resumed with ETag %q, want %q", resp.Header.Get("Etag"), b.etag)
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, end, total, ok := byterange.ParseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != b.n || b.size >= 0 && (total != b.size || end != b.size-1) {
			return fmt.Errorf("resumed with Content-Range %q from byte %d of %d", resp.Header.Get("Content-Range"), b.n, b.size)
		}
		return nil
	case http.StatusOK:
		if b.size >= 0 && resp.ContentLength >= 0 && resp.ContentLength != b.size {
			return fmt.Errorf("resumed with %d bytes, want %d", resp.ContentLength, b.size)
		}
		if _, err := io.CopyN(io.Discard, resp.Body, b.n); err != nil {
			return fmt.Errorf("skipping what was read: %w", err)
		}
		return nil
	}
	return fmt.Errorf("resumed with status %d", resp.StatusCode)
}

func (b *resumeBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	return b.cur.Close()
}
