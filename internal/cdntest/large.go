package cdntest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// LargeObject is a synthetic object a LargeOrigin serves: Size bytes whose
// content is a function of Version and the offset (see LargeContent), so
// that no test holds a large body in memory and every byte can be checked
// where it lands.
type LargeObject struct {
	// Size is the length in bytes.
	Size int64
	// Version names the content and is the strong ETag ("\"" + Version +
	// "\""). Two versions differ in every 4 KiB page.
	Version string
	// ModTime is the Last-Modified time; zero sends none.
	ModTime time.Time
	// CacheControl is the Cache-Control field; "" sends none.
	CacheControl string
	// IgnoreRange answers every GET with a 200 and the whole body, as an
	// origin that does not support Range does.
	IgnoreRange bool
	// SurrogateKey is the Surrogate-Key field; "" sends none.
	SurrogateKey string
}

// LargeRequest is what a LargeOrigin recorded of one request.
type LargeRequest struct {
	Method, Path string
	// Range, IfNoneMatch, IfRange, CacheControl and AcceptEncoding are
	// the request's fields, "" when absent.
	Range, IfNoneMatch, IfRange, CacheControl, AcceptEncoding string
	// Via is the last Via entry: which edge asked.
	Via string
	// Status is the answer's status; Bytes the body bytes sent (0 while
	// the answer is being sent).
	Status int
	Bytes  int64
}

// LargeOrigin is an origin on 127.0.0.1 that serves LargeObjects with
// http.ServeContent (Range, If-Range, conditionals) over a synthetic
// io.ReadSeeker, and records every request that reaches it.
type LargeOrigin struct {
	// URL is the base URL, http://127.0.0.1:port.
	URL string

	srv   *httptest.Server
	bytes atomic.Int64

	mu      sync.Mutex
	objects map[string]LargeObject // by path
	reqs    []LargeRequest
}

// StartLargeOrigin starts a LargeOrigin with no objects; the test's
// Cleanup stops it.
func StartLargeOrigin(t testing.TB) *LargeOrigin {
	t.Helper()
	o := &LargeOrigin{objects: map[string]LargeObject{}}
	o.srv = httptest.NewServer(http.HandlerFunc(o.serve))
	o.URL = o.srv.URL
	t.Cleanup(func() {
		o.srv.CloseClientConnections()
		o.srv.Close()
	})
	return o
}

// Set makes path serve obj (replacing what it served).
func (o *LargeOrigin) Set(path string, obj LargeObject) {
	o.mu.Lock()
	o.objects[path] = obj
	o.mu.Unlock()
}

// Requests returns the requests recorded so far, in arrival order.
func (o *LargeOrigin) Requests() []LargeRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]LargeRequest(nil), o.reqs...)
}

// Pending counts the requests still being answered.
func (o *LargeOrigin) Pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, r := range o.reqs {
		if r.Status == 0 {
			n++
		}
	}
	return n
}

// BodyBytes is the body bytes the origin has sent.
func (o *LargeOrigin) BodyBytes() int64 { return o.bytes.Load() }

// Reset forgets the requests and bytes recorded so far.
func (o *LargeOrigin) Reset() {
	o.mu.Lock()
	o.reqs = nil
	o.mu.Unlock()
	o.bytes.Store(0)
}

func (o *LargeOrigin) serve(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	obj, ok := o.objects[r.URL.Path]
	o.mu.Unlock()
	rec := LargeRequest{Method: r.Method, Path: r.URL.Path, Range: r.Header.Get("Range"),
		IfNoneMatch: r.Header.Get("If-None-Match"), IfRange: r.Header.Get("If-Range"),
		CacheControl: r.Header.Get("Cache-Control"), AcceptEncoding: r.Header.Get("Accept-Encoding")}
	if vias := r.Header.Values("Via"); len(vias) > 0 {
		last := vias[len(vias)-1]
		if i := strings.LastIndex(last, ","); i >= 0 {
			last = last[i+1:]
		}
		rec.Via = strings.TrimSpace(last)
	}
	// Recorded as it arrives (a test that has its answer sees it), its
	// status and bytes once answered.
	o.mu.Lock()
	at := len(o.reqs)
	o.reqs = append(o.reqs, rec)
	o.mu.Unlock()
	cw := &countingWriter{ResponseWriter: w}
	defer func() {
		o.bytes.Add(cw.n)
		if cw.status == 0 {
			cw.status = http.StatusOK
		}
		o.mu.Lock()
		if at < len(o.reqs) { // not Reset since
			o.reqs[at].Status, o.reqs[at].Bytes = cw.status, cw.n
		}
		o.mu.Unlock()
	}()
	if !ok {
		http.NotFound(cw, r)
		return
	}
	h := cw.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Etag", `"`+obj.Version+`"`)
	if obj.CacheControl != "" {
		h.Set("Cache-Control", obj.CacheControl)
	}
	if obj.SurrogateKey != "" {
		h.Set("Surrogate-Key", obj.SurrogateKey)
	}
	body := LargeContent(obj.Version, obj.Size)
	if obj.IgnoreRange {
		if !obj.ModTime.IsZero() {
			h.Set("Last-Modified", obj.ModTime.UTC().Format(http.TimeFormat))
		}
		h.Set("Content-Length", fmt.Sprint(obj.Size))
		cw.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			io.Copy(cw, body)
		}
		return
	}
	http.ServeContent(cw, r, "", obj.ModTime, body)
}

type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// largePage is the unit of LargeContent: each page starts with its number
// (XOR the version's seed), then the version's filler.
const largePage = 4096

// filler is a version's page filler and the seed its page numbers are
// mixed with.
func filler(version string) ([]byte, uint64) {
	h := fnv.New64a()
	io.WriteString(h, version)
	seed := h.Sum64()
	rng := rand.New(rand.NewPCG(seed, seed>>1|1))
	f := make([]byte, largePage-8)
	for i := range f {
		f[i] = byte(rng.Uint32())
	}
	return f, seed
}

// LargeContent returns the content of a synthetic object of the given
// version and size, as an io.ReadSeeker that makes its bytes as they are
// read.
func LargeContent(version string, size int64) io.ReadSeeker {
	f, seed := filler(version)
	return &largeReader{fill: f, seed: seed, size: size}
}

type largeReader struct {
	fill []byte
	seed uint64
	size int64
	off  int64
	page [largePage]byte
	at   int64 // the page number in page
	have bool  // page holds page number at
}

func (l *largeReader) Read(p []byte) (int, error) {
	if l.off >= l.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && l.off < l.size {
		k := l.off / largePage
		if !l.have || l.at != k {
			binary.BigEndian.PutUint64(l.page[:8], uint64(k)^l.seed)
			copy(l.page[8:], l.fill)
			l.at, l.have = k, true
		}
		in := l.off % largePage
		m := copy(p[n:], l.page[in:min(int64(largePage), in+(l.size-l.off))])
		n += m
		l.off += int64(m)
	}
	return n, nil
}

func (l *largeReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += l.off
	case io.SeekEnd:
		offset += l.size
	default:
		return 0, errors.New("largeReader: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("largeReader: negative offset")
	}
	l.off = offset
	return offset, nil
}

// CheckLarge reads r to its end and reports whether it holds exactly the
// n bytes of the version's content from offset off, naming the first
// offset that differs.
func CheckLarge(r io.Reader, version string, off, n int64) error {
	want := LargeContent(version, off+n)
	if _, err := want.Seek(off, io.SeekStart); err != nil {
		return err
	}
	got, exp := make([]byte, 64<<10), make([]byte, 64<<10)
	var at int64
	for {
		k, err := io.ReadFull(r, got)
		if k > 0 {
			if at+int64(k) > n {
				return fmt.Errorf("body longer than %d bytes", n)
			}
			io.ReadFull(want, exp[:k])
			if !bytes.Equal(got[:k], exp[:k]) {
				for i := range k {
					if got[i] != exp[i] {
						return fmt.Errorf("byte %d (object offset %d) differs", at+int64(i), off+at+int64(i))
					}
				}
			}
			at += int64(k)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return fmt.Errorf("after %d bytes: %w", at, err)
		}
	}
	if at != n {
		return fmt.Errorf("body is %d bytes, want %d", at, n)
	}
	return nil
}
