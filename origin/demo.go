package origin

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limits of the demo origin's query parameters.
const (
	// DemoMaxSize is the largest body the demo origin generates (size=).
	DemoMaxSize = 64 << 20
	// DemoMaxDelay is the longest wait it accepts for delay= and bodydelay=.
	DemoMaxDelay = 10 * time.Minute
	// demoDefaultSize is the body size when size= is absent.
	demoDefaultSize = 1024
	// demoMaxKeys bounds the per path+query counters so that a stream of
	// cache-busting URLs cannot grow memory without limit; past it only the
	// total is counted.
	demoMaxKeys = 100_000
	// demoEpoch is Last-Modified for version "" (and v=0); v=N adds N hours.
	demoEpochUnix = 1704067200 // 2024-01-01T00:00:00Z
	// demoEarlyLink is the Link header sent in 103 Early Hints (early=1).
	demoEarlyLink = "</demo.css>; rel=preload; as=style"
)

// Demo is a demo origin: an [http.Handler] that serves a generated object for
// any path, shaped by optional query parameters so that a test (or a person
// with curl) gets exactly the behaviour it asks for:
//
//	size=N          body size in bytes (default 1024, at most DemoMaxSize);
//	                the bytes are [DemoBody](path, size)
//	cc=V            Cache-Control: V
//	cdncc=V         CDN-Cache-Control: V
//	expires=S       Expires: now + S seconds (S may be negative)
//	vary=H          Vary: H (and X-Demo-Varied echoes the request's H)
//	sk=K            Surrogate-Key: K
//	etag=1          strong ETag from path, size and v; honours If-None-Match
//	lm=1            Last-Modified fixed per v; honours If-Modified-Since
//	v=S             object version (changes ETag and Last-Modified)
//	delay=D         wait D (a Go duration) before the headers
//	bodydelay=D     wait D between the first and second half of the body
//	status=N        response status, 200-599 (location=U sets Location)
//	fail=hang       never answer until the client goes away or Close
//	fail=reset      reset the TCP connection (RST) without answering
//	fail=truncate   promise the full Content-Length, send half, close
//	fail=badstatus  send an invalid status line and close
//	early=1         send 103 Early Hints with a Link header first
//	echo=1          answer with a JSON [Echo] of the request instead
//
// Methods other than GET and HEAD are answered with an [Echo] and status=
// (default 200). Every request is counted, 304s and failures included,
// except the admin paths: GET /_stats returns the counts as JSON,
// POST /_stats/reset clears them, and /healthz answers 200 (it obeys
// [Demo.SetFailing], so health checks see the failure). Responses carry
// X-Demo-Count, how many times this path and query has been served.
//
// A Demo is safe for concurrent use. Create it with [NewDemo].
type Demo struct {
	now    func() time.Time
	closed chan struct{}
	once   sync.Once

	total   atomic.Int64
	failing atomic.Pointer[string]

	mu     sync.Mutex
	counts map[string]int64 // path?query -> requests served
}

// Echo is the JSON body of an echo=1 answer (and of methods other than GET
// and HEAD): what the demo origin received.
type Echo struct {
	Method     string      `json:"method"`
	Host       string      `json:"host"`
	Path       string      `json:"path"`
	RawPath    string      `json:"raw_path,omitempty"`
	RawQuery   string      `json:"raw_query"`
	Proto      string      `json:"proto"`
	Header     http.Header `json:"header"`
	BodyLength int64       `json:"body_length"`
	BodySHA256 string      `json:"body_sha256"`
}

// DemoStats is the JSON body of GET /_stats.
type DemoStats struct {
	// Total counts every request served since the last reset.
	Total int64 `json:"total"`
	// Requests counts them per path?query (the query as sent, if any).
	Requests map[string]int64 `json:"requests"`
}

// NewDemo returns a demo origin. now is the clock for Date, Expires and the
// Last-Modified cap; nil means time.Now.
func NewDemo(now func() time.Time) *Demo {
	if now == nil {
		now = time.Now
	}
	return &Demo{now: now, closed: make(chan struct{}), counts: map[string]int64{}}
}

// Close releases every handler that is waiting (fail=hang, delay=,
// bodydelay=, SetFailing("hang")) so that a server can shut down; later
// waits return at once. Close is safe to call more than once.
func (d *Demo) Close() { d.once.Do(func() { close(d.closed) }) }

// SetFailing makes the whole origin fail, /healthz included: "" serves
// normally, "500" answers every request with 500, "hang" never answers, and
// "reset" resets every connection. To refuse connections, close the
// listener.
func (d *Demo) SetFailing(mode string) error {
	switch mode {
	case "", "500", "hang", "reset":
	default:
		return fmt.Errorf("demo origin: failing mode %q: want \"\", \"500\", \"hang\" or \"reset\"", mode)
	}
	d.failing.Store(&mode)
	return nil
}

// Requests returns how many requests the demo origin has served since the
// last reset, admin paths excluded.
func (d *Demo) Requests() int64 { return d.total.Load() }

// RequestsFor returns how many requests it has served for pathAndQuery, for
// example "/a/b?size=10" (the query exactly as sent; no "?" without one).
func (d *Demo) RequestsFor(pathAndQuery string) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.counts[pathAndQuery]
}

// Reset clears the counts.
func (d *Demo) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.total.Store(0)
	clear(d.counts)
}

// Stats returns a copy of the counts.
func (d *Demo) Stats() DemoStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := DemoStats{Total: d.total.Load(), Requests: make(map[string]int64, len(d.counts))}
	for k, v := range d.counts {
		s.Requests[k] = v
	}
	return s
}

// count records one request for key and returns its count so far.
func (d *Demo) count(key string) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.total.Add(1)
	n, ok := d.counts[key]
	if !ok && len(d.counts) >= demoMaxKeys {
		return 0
	}
	d.counts[key] = n + 1
	return n + 1
}

// ServeHTTP implements [http.Handler].
func (d *Demo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/_stats":
		d.serveStats(w, r)
		return
	case "/_stats/reset":
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		d.Reset()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	health := r.URL.Path == "/healthz"
	var n int64
	if !health {
		key := r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			key += "?" + r.URL.RawQuery
		}
		n = d.count(key)
	}
	if !d.serveFailing(w, r) {
		return
	}
	if health {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
		return
	}

	q, _ := url.ParseQuery(r.URL.RawQuery) // keep what parses; odd queries are legitimate test input
	p, err := parseDemoParams(q)
	if err != nil {
		http.Error(w, "demo origin: "+err.Error(), http.StatusBadRequest)
		return
	}
	if p.delay > 0 && !d.wait(r, p.delay) {
		abort(w)
		return
	}
	switch p.fail {
	case "hang":
		d.wait(r, -1)
		abort(w)
		return
	case "reset":
		resetConn(w)
		return
	case "badstatus":
		writeRaw(w, []byte("HTTP/1.1 abc Broken\r\nContent-Length: 0\r\n\r\n"))
		return
	}

	h := w.Header()
	now := d.now()
	h.Set("Date", now.UTC().Format(http.TimeFormat))
	h.Set("X-Demo-Count", strconv.FormatInt(n, 10))
	if p.cc != "" {
		h.Set("Cache-Control", p.cc)
	}
	if p.cdncc != "" {
		h.Set("CDN-Cache-Control", p.cdncc)
	}
	if p.hasExpires {
		h.Set("Expires", now.Add(time.Duration(p.expires)*time.Second).UTC().Format(http.TimeFormat))
	}
	if p.vary != "" {
		h.Set("Vary", p.vary)
		var vals []string
		for _, name := range strings.Split(p.vary, ",") {
			vals = append(vals, r.Header.Get(strings.TrimSpace(name)))
		}
		h.Set("X-Demo-Varied", strings.Join(vals, ", "))
	}
	if p.sk != "" {
		h.Set("Surrogate-Key", p.sk)
	}
	if p.location != "" {
		h.Set("Location", p.location)
	}
	etag := ""
	if p.etag {
		etag = demoETag(r.URL.Path, p.size, p.version)
		h.Set("ETag", etag)
	}
	var lastMod time.Time
	if p.lm {
		lastMod = demoLastModified(p.version)
		if now.Before(lastMod) { // never claim a change in the future
			lastMod = now.Truncate(time.Second)
		}
		h.Set("Last-Modified", lastMod.UTC().Format(http.TimeFormat))
	}

	getLike := r.Method == http.MethodGet || r.Method == http.MethodHead
	if getLike && p.status == http.StatusOK && notModified(r, etag, lastMod) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if p.early {
		h.Add("Link", demoEarlyLink)
		w.WriteHeader(http.StatusEarlyHints)
	}

	if p.echo || !getLike {
		d.serveEcho(w, r, p)
		return
	}
	h.Set("Content-Type", "application/octet-stream")
	if !bodyAllowed(p.status) {
		w.WriteHeader(p.status)
		return
	}
	h.Set("Content-Length", strconv.FormatInt(p.size, 10))
	if p.fail == "truncate" && r.Method == http.MethodGet {
		truncate(w, p.status, DemoBody(r.URL.Path, p.size))
		return
	}
	w.WriteHeader(p.status)
	if r.Method == http.MethodHead {
		return
	}
	half := p.size / 2
	if err := writeDemoBody(w, r.URL.Path, p.size, 0, half); err != nil {
		return
	}
	if p.bodyDelay > 0 {
		http.NewResponseController(w).Flush()
		if !d.wait(r, p.bodyDelay) {
			return
		}
	}
	writeDemoBody(w, r.URL.Path, p.size, half, p.size)
}

// serveFailing applies SetFailing's mode and reports whether the request
// should be served normally.
func (d *Demo) serveFailing(w http.ResponseWriter, r *http.Request) bool {
	mode := d.failing.Load()
	if mode == nil || *mode == "" {
		return true
	}
	switch *mode {
	case "500":
		http.Error(w, "demo origin: failing", http.StatusInternalServerError)
	case "hang":
		d.wait(r, -1)
		abort(w)
	case "reset":
		resetConn(w)
	}
	return false
}

func (d *Demo) serveStats(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(d.Stats())
}

func (d *Demo) serveEcho(w http.ResponseWriter, r *http.Request, p demoParams) {
	sum := sha256.New()
	n, err := io.Copy(sum, r.Body)
	if err != nil {
		http.Error(w, "demo origin: reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	e := Echo{
		Method:     r.Method,
		Host:       r.Host,
		Path:       r.URL.Path,
		RawPath:    r.URL.RawPath,
		RawQuery:   r.URL.RawQuery,
		Proto:      r.Proto,
		Header:     r.Header,
		BodyLength: n,
		BodySHA256: hex.EncodeToString(sum.Sum(nil)),
	}
	b, err := json.Marshal(e)
	if err != nil {
		http.Error(w, "demo origin: "+err.Error(), http.StatusInternalServerError)
		return
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	if !bodyAllowed(p.status) {
		w.WriteHeader(p.status)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(p.status)
	if r.Method != http.MethodHead {
		w.Write(b)
	}
}

// wait blocks for d (forever when d < 0) and reports whether it ran out;
// false means the client went away or the Demo was closed.
func (d *Demo) wait(r *http.Request, dur time.Duration) bool {
	var timeout <-chan time.Time
	if dur >= 0 {
		t := time.NewTimer(dur)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
		return true
	case <-r.Context().Done():
	case <-d.closed:
	}
	return false
}

// demoParams is a parsed demo query.
type demoParams struct {
	size       int64
	cc, cdncc  string
	expires    int64
	hasExpires bool
	vary, sk   string
	etag, lm   bool
	version    string
	delay      time.Duration
	bodyDelay  time.Duration
	status     int
	location   string
	fail       string
	early      bool
	echo       bool
}

// parseDemoParams reads the demo query parameters; unknown ones are ignored
// (so cache-busting parameters work) and a bad value is an error naming it.
func parseDemoParams(q url.Values) (demoParams, error) {
	p := demoParams{size: demoDefaultSize, status: http.StatusOK}
	var err error
	if s := q.Get("size"); s != "" {
		p.size, err = strconv.ParseInt(s, 10, 64)
		if err != nil || p.size < 0 || p.size > DemoMaxSize {
			return p, fmt.Errorf("size=%q: want 0 to %d bytes", s, DemoMaxSize)
		}
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"cc", &p.cc}, {"cdncc", &p.cdncc}, {"vary", &p.vary}, {"sk", &p.sk},
		{"location", &p.location}, {"v", &p.version},
	} {
		v := q.Get(f.name)
		if !validHeaderValue(v) {
			return p, fmt.Errorf("%s=%q: control character", f.name, v)
		}
		*f.dst = v
	}
	if s := q.Get("expires"); s != "" {
		p.expires, err = strconv.ParseInt(s, 10, 64)
		const tenYears = 10 * 366 * 24 * 3600
		if err != nil || p.expires < -tenYears || p.expires > tenYears {
			return p, fmt.Errorf("expires=%q: want seconds from now, at most ten years either way", s)
		}
		p.hasExpires = true
	}
	if p.etag, err = parseFlag(q, "etag"); err != nil {
		return p, err
	}
	if p.lm, err = parseFlag(q, "lm"); err != nil {
		return p, err
	}
	if p.early, err = parseFlag(q, "early"); err != nil {
		return p, err
	}
	if p.echo, err = parseFlag(q, "echo"); err != nil {
		return p, err
	}
	if p.delay, err = parseDelay(q, "delay"); err != nil {
		return p, err
	}
	if p.bodyDelay, err = parseDelay(q, "bodydelay"); err != nil {
		return p, err
	}
	if s := q.Get("status"); s != "" {
		p.status, err = strconv.Atoi(s)
		if err != nil || p.status < 200 || p.status > 599 {
			return p, fmt.Errorf("status=%q: want 200 to 599", s)
		}
	}
	switch p.fail = q.Get("fail"); p.fail {
	case "", "hang", "reset", "truncate", "badstatus":
	default:
		return p, fmt.Errorf("fail=%q: want hang, reset, truncate or badstatus", p.fail)
	}
	return p, nil
}

func parseFlag(q url.Values, name string) (bool, error) {
	switch s := q.Get(name); s {
	case "", "0", "false":
		return false, nil
	case "1", "true":
		return true, nil
	default:
		return false, fmt.Errorf("%s=%q: want 1 or 0", name, s)
	}
}

func parseDelay(q url.Values, name string) (time.Duration, error) {
	s := q.Get(name)
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > DemoMaxDelay {
		return 0, fmt.Errorf("%s=%q: want a duration such as 250ms, at most %v", name, s, DemoMaxDelay)
	}
	return d, nil
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// DemoBody returns the body the demo origin serves for path and size: the
// line "<path> <size>\n" repeated and cut to size bytes.
func DemoBody(path string, size int64) []byte {
	var b strings.Builder
	b.Grow(int(size))
	writeDemoBody(&b, path, size, 0, size)
	return []byte(b.String())
}

// writeDemoBody writes bytes [from, to) of DemoBody(path, size) to w, in
// writes of at most about 32 KiB.
func writeDemoBody(w io.Writer, path string, size, from, to int64) error {
	if from >= to {
		return nil
	}
	pattern := path + " " + strconv.FormatInt(size, 10) + "\n"
	plen := int64(len(pattern))
	// Whole patterns, one more than a write needs, so that every write can
	// start at any offset within the first.
	reps := min(to-from, 32<<10)/plen + 2
	chunk := strings.Repeat(pattern, int(reps))
	per := (reps - 1) * plen
	for from < to {
		off := from % plen
		n := min(to-from, per)
		if _, err := io.WriteString(w, chunk[off:off+n]); err != nil {
			return err
		}
		from += n
	}
	return nil
}

// demoETag is the strong validator of path at size and version v.
func demoETag(path string, size int64, v string) string {
	h := fnv.New64a()
	io.WriteString(h, path)
	h.Write([]byte{0})
	io.WriteString(h, strconv.FormatInt(size, 10))
	h.Write([]byte{0})
	io.WriteString(h, v)
	return `"` + strconv.FormatUint(h.Sum64(), 16) + `"`
}

// demoLastModified is the modification time of version v: the epoch for no
// version, plus v hours for a number, else a time within a year of the epoch
// picked by hashing v.
func demoLastModified(v string) time.Time {
	t := time.Unix(demoEpochUnix, 0).UTC()
	if v == "" {
		return t
	}
	if n, err := strconv.ParseUint(v, 10, 16); err == nil {
		return t.Add(time.Duration(n) * time.Hour)
	}
	h := fnv.New32a()
	io.WriteString(h, v)
	return t.Add(time.Duration(h.Sum32()%(365*24*3600)) * time.Second)
}

// notModified evaluates If-None-Match (which, when present, overrides
// If-Modified-Since) as RFC 9110 section 13.2.2 orders them.
func notModified(r *http.Request, etag string, lastMod time.Time) bool {
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		return etag != "" && etagMatch(inm, etag)
	}
	ims := r.Header.Get("If-Modified-Since")
	if ims == "" || lastMod.IsZero() {
		return false
	}
	t, err := http.ParseTime(ims)
	return err == nil && !lastMod.Truncate(time.Second).After(t)
}

// etagMatch reports whether the If-None-Match list matches etag under the
// weak comparison: "*", or any listed tag with the same opaque value.
func etagMatch(list, etag string) bool {
	want := strings.TrimPrefix(etag, "W/")
	for {
		list = strings.TrimLeft(list, " \t,")
		if list == "" {
			return false
		}
		if list[0] == '*' {
			return true
		}
		list = strings.TrimPrefix(list, "W/")
		if list == "" || list[0] != '"' {
			return false // malformed: stop rather than guess
		}
		end := strings.IndexByte(list[1:], '"')
		if end < 0 {
			return false
		}
		if list[:end+2] == want {
			return true
		}
		list = list[end+2:]
	}
}

func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified && (status < 100 || status > 199)
}

// hijack takes over an HTTP/1.x connection; it fails on HTTP/2 and later,
// where the caller answers with a 500 naming the limitation instead.
func hijack(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, bool) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "demo origin: this failure needs HTTP/1.x: "+err.Error(), http.StatusInternalServerError)
		return nil, nil, false
	}
	return conn, brw, true
}

// resetConn closes the connection abruptly: SO_LINGER 0 makes the kernel
// send RST instead of FIN.
func resetConn(w http.ResponseWriter) {
	conn, _, ok := hijack(w)
	if !ok {
		return
	}
	c := conn
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok { // TLS
		c = tc.NetConn()
	}
	if tcp, ok := c.(*net.TCPConn); ok {
		tcp.SetLinger(0)
	}
	conn.Close()
}

// abort closes the connection without an answer, so that a handler released
// by Close does not send a response it never meant to. On HTTP/2 the handler
// just returns.
func abort(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		conn.Close()
	}
}

// writeRaw writes b on the hijacked connection and closes it.
func writeRaw(w http.ResponseWriter, b []byte) {
	conn, brw, ok := hijack(w)
	if !ok {
		return
	}
	defer conn.Close()
	brw.Write(b)
	brw.Flush()
}

// truncate sends status and the headers already set, promising the whole
// body, then only its first half, and closes the connection.
func truncate(w http.ResponseWriter, status int, body []byte) {
	h := w.Header().Clone()
	conn, brw, ok := hijack(w)
	if !ok {
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 %03d %s\r\n", status, http.StatusText(status))
	h.Set("Connection", "close")
	h.Write(brw)
	brw.WriteString("\r\n")
	brw.Write(body[:len(body)/2])
	brw.Flush()
}
