package listen

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/meridiancdn/meridian/edge"
)

// The fast front's own answers to the plain requests it does not answer
// from a stored hit (misses, revalidations, conditionals, Range, errors):
// the handler runs on a ResponseWriter of the fast connection (fastWriter)
// with an *http.Request built from the header the fast reader parsed,
// instead of a net/http connection lent for one request. Lending cost a
// net/http connection, its goroutines and buffers, its contexts and a
// hand-off per request: about 36 % of the CPU of a miss.
//
// Everything observable is net/http's: the request (header map with
// canonical keys, Host taken out, Pragma: no-cache read as Cache-Control,
// URL as url.ParseRequestURI makes it, a context that ends when the
// client is gone, a write fails or the handler returns) and the response
// (1xx written at once; the header written at the first flush, with
// Content-Length computed when the handler ends before 2048 body bytes,
// else chunked; Content-Type sniffed as net/http sniffs it; Date; HEAD;
// a short body or a panic closes the connection). A request with
// anything else (a body, Expect, Upgrade) is still lent to net/http.

// bufferBeforeChunking is what net/http's response buffers before it
// writes a header: a handler that ends within it gets a Content-Length.
const bufferBeforeChunking = 2048

// sendAt is how many bytes of output the writer gathers before it sends
// them without a Flush.
const sendAt = 32 << 10

// aLongTimeAgo is a deadline in the past, to end a pending read.
var aLongTimeAgo = time.Unix(1, 0)

// Fields that appendFields leaves out (flags).
const (
	skipFraming = 1 << iota // Content-Length and Transfer-Encoding
	skipConnection
	skipContentType
	skipTrailers // those named with http.TrailerPrefix
)

// missContext is the base of the requests' contexts on a fast connection,
// with the values net/http's have.
func (c *fastConn) missContext() context.Context {
	if c.base == nil {
		ctx := context.WithValue(context.Background(), http.ServerContextKey, c.f.inner)
		c.base = context.WithValue(ctx, http.LocalAddrContextKey, c.nc.LocalAddr())
		c.remote = c.nc.RemoteAddr().String()
	}
	return c.base
}

// newRequest builds the *http.Request that net/http would make of p, a
// complete GET or HEAD header that parseHead accepted, with ctx as its
// context (made from missContext). It returns nil for
// what it cannot make exactly so (net/http then gets the request).
// The URL of a common target is built in ctx (parseOriginForm), else
// url.ParseRequestURI makes it.
func (c *fastConn) newRequest(p []byte, req *request, ctx *reqContext) *http.Request {
	s := string(p) // one copy: the values are substrings of it
	line, rest, _ := strings.Cut(s, "\r\n")
	method, line, _ := strings.Cut(line, " ")
	target, _, _ := strings.Cut(line, " ")
	u := &ctx.url
	if !parseOriginForm(target, u) {
		var err error
		if u, err = url.ParseRequestURI(target); err != nil {
			return nil
		}
	}
	n := strings.Count(rest, "\n")
	vals := make([]string, n)
	h := make(http.Header, n)
	host := ""
	i := 0
	for {
		line, rest, _ = strings.Cut(rest, "\r\n")
		if line == "" {
			break
		}
		name, value, _ := strings.Cut(line, ":")
		value = trimOWS(value)
		key := http.CanonicalHeaderKey(name)
		if key == "Host" {
			host = value // net/http takes it out of the map
			continue
		}
		if vs, ok := h[key]; ok {
			h[key] = append(vs, value)
			continue
		}
		vals[i] = value
		h[key] = vals[i : i+1 : i+1]
		i++
	}
	// As net/http: HTTP/1.0's Pragma: no-cache stands for
	// Cache-Control: no-cache when there is none.
	if pr := h["Pragma"]; len(pr) > 0 && pr[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
	r := &http.Request{
		Method:     method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       http.NoBody,
		Host:       host,
		Close:      req.close,
		RemoteAddr: c.remote,
		RequestURI: target,
	}
	return r.WithContext(ctx)
}

// watchAfter is how long the handler runs on a request before a read
// starts watching the connection (fastConn.startWatch; fastFront.watchAfter,
// which tests shorten). A miss from a
// near origin is answered before it: then no goroutine, read, netpoll
// registration or deadline change is spent on the watch, and the
// connection's goroutine reads the next request itself. A client that
// leaves is noticed at most this late, which only matters for a handler
// that waits (a slow origin): its fill is called off that much later.
const watchAfter = 50 * time.Millisecond

// serveMiss runs the handler on r with a fastWriter. If the handler
// takes longer than watchAfter (fastFront.watchAfter), another goroutine then reads the
// connection, as net/http's background read does: a client that leaves
// (or resets) ends the request's context; bytes that come are the next
// request's, kept in the buffer. The handler runs on the connection's
// goroutine, whose stack has grown already. It reports whether the
// connection goes on with the next request.
func (c *fastConn) serveMiss(r *http.Request, head bool, ctx *reqContext) bool {
	// The connection's writer, header map and buffers serve every
	// answer in turn (see keptAnswerFields).
	w := &c.mw
	*w = fastWriter{c: c, req: r, head: head, ctx: ctx, wantsClose: r.Close, contentLength: -1,
		handlerHeader: c.hdr, out: c.wbuf[:0], pend: c.pend[:0], fields: c.fields[:0]}
	pipelined := c.r < c.w
	c.armWatch(ctx)
	keep := c.runHandler(w, r) && !c.f.closing.Load()
	if cap(w.out) <= 64<<10 {
		c.wbuf = w.out[:0]
	}
	c.pend, c.fields = w.pend[:0], w.fields[:0]
	if keep {
		// The next request gets the writer and, emptied, its map;
		// nothing of this answer stays reachable from the connection
		// while it waits. A connection that ends (after a panic, say)
		// leaves its writer as it is, as a writer made per request was.
		c.hdr = nil
		if h := w.handlerHeader; h != nil && max(len(h), w.peakFields) <= keptAnswerFields {
			clear(h)
			c.hdr = h
		}
		*w = fastWriter{}
	}
	if c.watchTimer.Stop() {
		// The watch never started: the serve loop reads what comes next.
		if !keep {
			c.nc.Close()
		}
		return keep
	}
	// The watch has started (or is starting): it owns the read
	// deadline until endWatch.
	if !keep {
		c.nc.Close()
		<-c.watched
		return false
	}
	if pipelined {
		// The next request is in the buffer: end the watch now.
		c.endWatch(aLongTimeAgo)
		res := <-c.watched
		c.w += res.n
		c.nc.SetReadDeadline(time.Time{})
		return true
	}
	// The watch goes on as the wait for the next request.
	c.state.Store(connIdle)
	var idle time.Time
	if d := c.f.cfg.IdleTimeout; d > 0 {
		idle = time.Now().Add(d)
	}
	c.endWatch(idle)
	res := <-c.watched
	c.w += res.n
	if res.n == 0 {
		c.nc.Close()
		return false
	}
	return true
}

// armWatch sets the watch of the request whose context is ctx to start
// after the front's watchAfter, unless serveMiss stops it first.
func (c *fastConn) armWatch(ctx *reqContext) {
	if c.w == len(c.buf) {
		c.makeRoomForMore()
	}
	c.watchMu.Lock()
	c.watchCtx, c.watchEnded = ctx, false
	c.watchMu.Unlock()
	if c.watchTimer == nil {
		c.watched = make(chan watchResult, 1)
		c.watchTimer = time.AfterFunc(c.f.watchAfter, c.startWatch)
		return
	}
	c.watchTimer.Reset(c.f.watchAfter)
}

// startWatch is the watch, started by the connection's timer while the
// handler runs: it reads the connection once into the end of the buffer
// (the connection's goroutine does not touch it until the result is in
// watched); a failed read (the client gone) cancels the request.
func (c *fastConn) startWatch() {
	c.watchMu.Lock()
	ctx, buf := c.watchCtx, c.buf[c.w:]
	if !c.watchEnded {
		// No deadline while the handler runs (net/http's ReadTimeout
		// is 0); once serveMiss has ended the watch, its deadline holds.
		c.nc.SetReadDeadline(time.Time{})
	}
	c.watchMu.Unlock()
	n, err := c.nc.Read(buf)
	if n == 0 && err != nil {
		ctx.cancel()
	}
	c.watched <- watchResult{n, err}
}

// endWatch sets the read deadline that ends a started watch (or bounds
// it as the wait for the next request), whether or not the watch has
// cleared the deadline yet.
func (c *fastConn) endWatch(deadline time.Time) {
	c.watchMu.Lock()
	c.watchEnded = true
	c.nc.SetReadDeadline(deadline)
	c.watchMu.Unlock()
}

// watchResult is what the watching read got.
type watchResult struct {
	n   int
	err error
}

// makeRoomForMore makes room at the end of the buffer for one read.
func (c *fastConn) makeRoomForMore() {
	if c.r > 0 {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
		return
	}
	nb := make([]byte, len(c.buf)+4096)
	copy(nb, c.buf[:c.w])
	c.buf = nb
}

// runHandler serves r on w and reports whether the connection may carry
// another request. A panic is net/http's: logged unless it is
// http.ErrAbortHandler, and the connection closed after what was handed
// to it.
func (c *fastConn) runHandler(w *fastWriter, r *http.Request) (keep bool) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.f.log.Error("http: panic serving "+c.remote, "panic", fmt.Sprint(p), "stack", string(buf))
			}
			w.ctx.cancel()
			w.send()
			keep = false
		}
	}()
	c.f.inner.Handler.ServeHTTP(w, r)
	w.ctx.cancel() // the request's context ends with its handler
	return w.finish()
}

// fastWriter is the http.ResponseWriter of a request the fast front
// serves through the handler. It writes what net/http's response writes,
// in the same system calls or fewer (see the file's doc).
type fastWriter struct {
	c    *fastConn
	req  *http.Request
	head bool        // HEAD: the body is not sent
	ctx  *reqContext // req's context

	handlerHeader http.Header
	// base is the header beneath handlerHeader's fields
	// (SetBaseHeader), nil if none.
	base          http.Header
	wroteHeader   bool // a final (non-1xx) status is set
	status        int
	wantsClose    bool  // the request said Connection: close
	closeAfter    bool  // the connection ends after this answer
	contentLength int64 // declared or computed; -1 if none
	written       int64 // body bytes the handler wrote
	handlerDone   bool
	// peakFields is the most fields handlerHeader was seen to hold (at
	// WriteHeader, 1xx included), past which serveMiss does not keep
	// it: a map never shrinks, and one emptied after a 1xx (writeHint)
	// ends with few.
	peakFields int

	// The final header as WriteHeader saw it (net/http copies the map
	// there): its fields but those decided when it is written, and what
	// the decision needs.
	fields         []byte
	clVals, teVals []string
	connVals       []string
	hasCL          bool // a Content-Length field, even empty
	hasType        bool
	hasDate        bool
	encoded        bool     // a non-empty Content-Encoding
	protocolSwitch bool     // Upgrade and Connection: upgrade (a 101 keeps its Connection)
	trailerField   bool     // a Trailer field
	trailerKeys    []string // the trailers it declares
	prefixTrailers bool     // fields named with http.TrailerPrefix

	headerOut bool   // the header is in out or sent
	chunking  bool   // the body goes chunked
	pend      []byte // body bytes before the header is out
	out       []byte // bytes to send
	werr      error  // the connection failed: every write fails
}

var _ edge.BaseHeaderWriter = (*fastWriter)(nil)

// answerFields is the number of fields the header map of an answer
// without a base header is made for: an answer from a stored entry (a
// conditional or Range request, a stale copy), or a miss's through a
// wrapper that does not pass the base on, has 9 or more (the stored
// fields, Age, Cache-Status, Via, Date, Content-Length), past the 8 of an
// unsized map, which then grew (a new table and a copy) each time. 12 holds
// up to 14 without growing and costs less than the growth from 9 on
// (936 against 1288 bytes, one allocation fewer); an answer of 8 fields
// or fewer (an error) pays about 400 bytes more.
const answerFields = 12

// answerFieldsOverBase is the number of fields the header map is made
// for when the answer has a base header (SetBaseHeader): a miss's map
// holds only what the cache sets over the origin's fields (Via, Age,
// Cache-Status, Accept-Ranges, Content-Length and a removed
// Surrogate-Key), which fit the one group of a map of 8 (two allocations
// against four).
const answerFieldsOverBase = 8

// keptAnswerFields is the most fields a header map may have held for
// serveMiss to keep it, emptied, for the connection's next request.
// Made per answer, the map was 2 of a miss's ~27 allocations (its
// header and its first 8-slot group: ~400 of its ~4.8 KB) and the
// fastWriter holding it another (~300 B). A map never shrinks: one that
// grew past this (an origin's many fields on a pass answer, a large
// 1xx) is dropped rather than kept at that size for the life of the
// connection; at 32 a kept map is under 3 KB (8 groups of 8 slots),
// less than the connection's read buffer. Most answers keep it: a miss
// sets 5 fields over the origin's, an answer from a stored entry its
// stored fields and those 5, a pass answer the origin's fields.
//
// Neither the writer nor the map is used once the handler has returned
// and its answer is written, as net/http's ResponseWriter may not be:
// the edge's handler writes hints (flight.relayHint) only until the
// leader's fill has its head or is left (stopHints), both before the
// handler returns, and it keeps no map it got from Header().
const keptAnswerFields = 32

// Header returns the header map of the answer: the connection's, emptied
// since its last request (see keptAnswerFields), or a new one sized for the
// answer.
func (w *fastWriter) Header() http.Header {
	if w.handlerHeader == nil {
		if w.base != nil {
			w.handlerHeader = make(http.Header, answerFieldsOverBase)
		} else {
			w.handlerHeader = make(http.Header, answerFields)
		}
	}
	return w.handlerHeader
}

// SetBaseHeader makes base the fields of the answer beneath those of
// Header() (see edge.BaseHeaderWriter): they are written from base at
// WriteHeader, as if copied into the map before the handler's own were
// set, without the copy.
func (w *fastWriter) SetBaseHeader(base http.Header) bool {
	if w.wroteHeader || w.base != nil {
		return false
	}
	for k := range w.handlerHeader {
		if _, ok := base[k]; ok {
			delete(w.handlerHeader, k) // replaced, as by a copy
		}
	}
	w.base = base
	return true
}

// WriteStored writes a, an answer from a stored entry in wire form (see
// edge.StoredAnswerWriter), as the whole answer: its head, Connection:
// close when the request asked for it (as writeHeader adds it), and its
// body, in out until finish sends them, as serveHit writes a hit. It
// reports false, writing nothing, once the header is written or fields
// are set in the map (or over a base), which a would leave out.
func (w *fastWriter) WriteStored(a *edge.StoredAnswer) bool {
	if w.wroteHeader || len(w.handlerHeader) > 0 || w.base != nil {
		return false
	}
	w.wroteHeader, w.headerOut, w.status = true, true, a.Status()
	w.contentLength = a.ContentLength()
	b := a.AppendHead(w.out, w.c.f.dateLine)
	if w.wantsClose {
		w.closeAfter = true
		b = append(b, "Connection: close\r\n"...)
	}
	w.out = append(b, "\r\n"...)
	body := a.Body()
	w.written = int64(len(body))
	if len(body) > 0 {
		w.body(body)
	}
	return true
}

// hides reports whether the handler's field k with values vs (a name
// in its map) is only the removal of base's field k: no values.
func (w *fastWriter) hides(k string, vs []string) bool {
	if len(vs) != 0 || w.base == nil {
		return false
	}
	_, ok := w.base[k]
	return ok
}

// answerHeader is the header the answer has: the handler's map, or, over
// a base, a new map of both as SetBaseHeader says (for what is rare: a 1xx
// answer, trailers).
func (w *fastWriter) answerHeader() http.Header {
	h := w.Header()
	if w.base == nil {
		return h
	}
	m := make(http.Header, len(w.base)+len(h))
	for k, vs := range w.base {
		if _, ok := h[k]; !ok {
			m[k] = vs
		}
	}
	for k, vs := range h {
		if !w.hides(k, vs) {
			m[k] = vs
		}
	}
	return m
}

// WriteHeader sends a 1xx at once, or sets the final status.
func (w *fastWriter) WriteHeader(code int) {
	if w.wroteHeader {
		w.c.f.log.Debug("http: superfluous response.WriteHeader call", "status", code)
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	h := w.Header()
	w.peakFields = max(w.peakFields, len(h))
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// Sent now, with the fields set so far (RFC 8297), the map kept.
		b := appendStatusLine(w.out, code)
		b = appendFields(b, w.answerHeader(), skipFraming)
		b = append(b, "\r\n"...)
		w.out = b
		w.send()
		return
	}
	w.wroteHeader = true
	w.status = code
	w.snapshot(h)
	if cl := first(w.clVals); cl != "" {
		if v, err := strconv.ParseInt(cl, 10, 64); err == nil && v >= 0 {
			w.contentLength = v
		} else {
			w.c.f.log.Debug("http: invalid Content-Length", "value", cl)
			delete(h, "Content-Length") // the copy keeps it, as net/http's does
		}
	}
}

// snapshot keeps what the header says at WriteHeader: later changes to
// the map are not sent, as with net/http. One pass over the map finds the
// fields the framing decides (Content-Length, Transfer-Encoding,
// Connection), those the decision reads, and the rest, to be written as
// WriteSubset writes them: a field is found by its exact key, as
// Header.Get finds a canonical one. Over a base header (SetBaseHeader)
// the pass covers base's fields but those the map holds, then the map's
// but the removals of base's.
func (w *fastWriter) snapshot(h http.Header) {
	var arr [32]headerField
	fields := arr[:0]
	var s fieldScan
	for k, vs := range w.base {
		if _, ok := h[k]; !ok {
			fields = w.scanField(fields, &s, k, vs)
		}
	}
	for k, vs := range h {
		if !w.hides(k, vs) {
			fields = w.scanField(fields, &s, k, vs)
		}
	}
	w.protocolSwitch = s.upgrade && httpguts.HeaderValuesContainsToken(w.connVals, "Upgrade")
	for _, v := range s.trailer {
		w.trailerField = true
		for _, k := range strings.Split(v, ",") {
			if k = strings.Trim(k, " \t\r\n"); k != "" {
				if k = http.CanonicalHeaderKey(k); httpguts.ValidTrailerHeader(k) {
					w.trailerKeys = append(w.trailerKeys, k)
				}
			}
		}
	}
	w.fields = appendSortedFields(w.fields[:0], fields)
}

// fieldScan is what snapshot gathers besides the writer's own state and
// the fields written as they are.
type fieldScan struct {
	upgrade bool     // a non-empty Upgrade
	trailer []string // the Trailer field's values
}

// scanField takes one field of the final header into w and s, and
// returns fields with it appended when it is written as it is
// (snapshot). (fields is passed and returned, not kept in s, so that
// snapshot's array stays on its stack.)
func (w *fastWriter) scanField(fields []headerField, s *fieldScan, k string, vs []string) []headerField {
	switch k {
	case "Content-Length":
		w.clVals, w.hasCL = vs, true
		return fields
	case "Transfer-Encoding":
		w.teVals = vs
		return fields
	case "Connection":
		w.connVals = vs
		return fields
	case "Content-Type":
		w.hasType = true
		if w.status == http.StatusNotModified {
			return fields
		}
	case "Date":
		w.hasDate = true
	case "Upgrade":
		s.upgrade = first(vs) != ""
	case "Content-Encoding":
		w.encoded = first(vs) != ""
	case "Trailer":
		s.trailer = vs
	}
	if strings.HasPrefix(k, http.TrailerPrefix) {
		w.prefixTrailers = true
		return fields
	}
	return append(fields, headerField{k, vs})
}

// Write buffers p as net/http's response does: the header waits for
// 2048 body bytes, a Flush or the handler's end.
func (w *fastWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !bodyAllowedForStatus(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.contentLength != -1 && w.written > w.contentLength {
		return 0, http.ErrContentLength
	}
	if w.werr != nil {
		return 0, w.werr
	}
	if !w.headerOut {
		if len(w.pend)+len(p) <= bufferBeforeChunking {
			w.pend = append(w.pend, p...)
			return len(p), nil
		}
		if len(w.pend) == 0 {
			w.writeHeader(p)
		} else {
			k := bufferBeforeChunking - len(w.pend)
			w.pend = append(w.pend, p[:k]...)
			w.writeHeader(w.pend)
			w.body(w.pend)
			w.pend = w.pend[:0]
			p = p[k:]
		}
	}
	w.body(p)
	if w.werr != nil {
		return 0, w.werr
	}
	return len(p), nil
}

// Flush sends the header and what the body has so far.
func (w *fastWriter) Flush() { w.FlushError() }

// FlushError is Flush, reporting a failed connection.
func (w *fastWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.flushPending()
	w.send()
	return w.werr
}

// flushPending puts the header, and the body bytes held for it, in out.
func (w *fastWriter) flushPending() {
	if !w.headerOut {
		w.writeHeader(w.pend)
		if len(w.pend) > 0 {
			w.body(w.pend)
		}
		w.pend = w.pend[:0]
	}
}

// finish ends the answer once the handler has returned, and reports
// whether the connection may carry another request.
func (w *fastWriter) finish() bool {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.handlerDone = true
	w.flushPending()
	if w.chunking {
		w.out = append(w.out, "0\r\n"...)
		w.out = appendFields(w.out, w.finalTrailers(), 0)
		w.out = append(w.out, "\r\n"...)
	}
	w.send()
	if w.closeAfter || w.werr != nil {
		return false
	}
	// A body shorter than its Content-Length: the client must not read
	// the next answer as the rest of it.
	return w.head || w.contentLength == -1 || !bodyAllowedForStatus(w.status) || w.contentLength == w.written
}

// finalTrailers are the trailer fields the handler set, as net/http
// finds them.
func (w *fastWriter) finalTrailers() http.Header {
	var t http.Header
	hh := w.handlerHeader
	if w.base != nil && (w.prefixTrailers || len(w.trailerKeys) > 0) {
		// (Else base has no field named with the prefix, and the map's
		// are the answer's.)
		hh = w.answerHeader()
	}
	for k, vv := range hh {
		if kk, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			if t == nil {
				t = make(http.Header)
			}
			t[kk] = vv
		}
	}
	for _, k := range w.trailerKeys {
		if t == nil {
			t = make(http.Header)
		}
		for _, v := range hh[k] {
			t.Add(k, v)
		}
	}
	return t
}

// writeHeader puts the status line and header in out, deciding the
// framing as net/http's chunkWriter does; p is the body's first bytes.
func (w *fastWriter) writeHeader(p []byte) {
	w.headerOut = true
	code := w.status
	te := first(w.teVals)
	hasTE := te != ""
	trailers := w.prefixTrailers || w.trailerField
	dropCL, dropTE, dropConn := false, false, false
	var autoCL []byte
	if w.handlerDone && !trailers && !hasTE && bodyAllowedForStatus(code) && !w.hasCL && (!w.head || len(p) > 0) {
		w.contentLength = int64(len(p))
		autoCL = strconv.AppendInt(make([]byte, 0, 20), int64(len(p)), 10)
	}
	hasCL := w.contentLength != -1
	if w.wantsClose {
		w.closeAfter = true
	}
	if first(w.connVals) == "close" {
		w.closeAfter = true
	}
	contentType := ""
	if bodyAllowedForStatus(code) {
		if !w.encoded && !w.hasType && !hasTE && len(p) > 0 {
			contentType = http.DetectContentType(p)
		}
	} else {
		dropCL, dropTE = true, true // and Content-Type for a 304: not in fields
	}
	if hasCL && hasTE && te != "identity" {
		w.c.f.log.Debug("http: WriteHeader called with both Transfer-Encoding and a Content-Length", "te", te, "length", w.contentLength)
		dropCL, hasCL = true, false
	}
	transferEncoding := ""
	switch {
	case w.head || !bodyAllowedForStatus(code) || code == http.StatusNoContent:
		dropTE = true
	case hasCL:
		dropTE = true
	case hasTE && te == "identity":
		w.chunking, w.closeAfter, dropTE = false, true, true
	default:
		w.chunking, transferEncoding = true, "chunked"
		if hasTE && te == "chunked" {
			dropTE = true
		}
	}
	if w.chunking {
		dropCL = true
	}
	if w.closeAfter && !hasToken(first(w.connVals), "close") && !(code == http.StatusSwitchingProtocols && w.protocolSwitch) {
		dropConn = true
	}

	b := appendStatusLine(w.out, code)
	b = append(b, w.fields...)
	if !dropCL {
		b = appendValues(b, "Content-Length", w.clVals)
	}
	if !dropTE {
		b = appendValues(b, "Transfer-Encoding", w.teVals)
	}
	if !dropConn {
		b = appendValues(b, "Connection", w.connVals)
	}
	if !w.hasDate {
		b = append(b, w.c.f.dateLine()...)
	}
	if autoCL != nil {
		b = append(b, "Content-Length: "...)
		b = append(b, autoCL...)
		b = append(b, "\r\n"...)
	}
	if contentType != "" {
		b = append(b, "Content-Type: "...)
		b = append(b, contentType...)
		b = append(b, "\r\n"...)
	}
	if dropConn {
		b = append(b, "Connection: close\r\n"...)
	}
	if transferEncoding != "" {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	w.out = append(b, "\r\n"...)
}

// body puts p in out as the framing says, sending out when it is large.
func (w *fastWriter) body(p []byte) {
	if w.head || w.werr != nil {
		return
	}
	if w.chunking {
		w.out = strconv.AppendInt(w.out, int64(len(p)), 16)
		w.out = append(w.out, "\r\n"...)
	}
	if len(w.out)+len(p) > sendAt {
		w.send()
		if w.werr == nil {
			w.write(p)
		}
	} else {
		w.out = append(w.out, p...)
	}
	if w.chunking {
		w.out = append(w.out, "\r\n"...)
	}
}

// send writes out to the connection.
func (w *fastWriter) send() {
	if len(w.out) == 0 || w.werr != nil {
		w.out = w.out[:0]
		return
	}
	w.write(w.out)
	w.out = w.out[:0]
}

// write writes p within the send timeout. A failed write ends the
// request's context and closes the connection, as net/http does.
func (w *fastWriter) write(p []byte) {
	c := w.c
	c.send.renew(c.nc)
	if _, err := c.send.write(c.nc, p); err != nil {
		w.werr = err
		w.ctx.cancel()
		c.nc.Close()
	}
}

func bodyAllowedForStatus(status int) bool {
	switch {
	case status >= 100 && status <= 199:
		return false
	case status == http.StatusNoContent, status == http.StatusNotModified:
		return false
	}
	return true
}

// appendStatusLine appends an HTTP/1.1 status line, as net/http writes it.
func appendStatusLine(b []byte, code int) []byte {
	b = append(b, "HTTP/1.1 "...)
	if text := http.StatusText(code); text != "" {
		b = strconv.AppendInt(b, int64(code), 10)
		b = append(b, ' ')
		b = append(b, text...)
		return append(b, "\r\n"...)
	}
	return fmt.Appendf(b, "%03d status code %d\r\n", code, code)
}

// appendFields appends h's fields but those skip leaves out, as
// net/http's Header.WriteSubset writes them: sorted by name, invalid
// names dropped, line breaks in values made spaces, values trimmed.
func appendFields(b []byte, h http.Header, skip int) []byte {
	var arr [32]headerField
	fields := arr[:0]
	for k, vs := range h {
		switch {
		case skip&skipFraming != 0 && (k == "Content-Length" || k == "Transfer-Encoding"),
			skip&skipConnection != 0 && k == "Connection",
			skip&skipContentType != 0 && k == "Content-Type",
			skip&skipTrailers != 0 && strings.HasPrefix(k, http.TrailerPrefix):
			continue
		}
		fields = append(fields, headerField{k, vs})
	}
	return appendSortedFields(b, fields)
}

// headerField is a field of a header map: its key and values.
type headerField struct {
	name   string
	values []string
}

// appendSortedFields appends fields, taken from one map (their names
// differ), as WriteSubset writes them: sorted by name, invalid names
// dropped. The values came with their names, so that no map is read
// again; up to 32 fields are put in order by index (insertion), which
// moves a byte where a sort of the fields moves 40.
func appendSortedFields(b []byte, fields []headerField) []byte {
	var order [32]uint8
	if len(fields) > len(order) {
		slices.SortFunc(fields, func(x, y headerField) int { return strings.Compare(x.name, y.name) })
		for _, f := range fields {
			b = appendField(b, f)
		}
		return b
	}
	for i := range fields {
		j := i
		for ; j > 0 && fields[order[j-1]].name > fields[i].name; j-- {
			order[j] = order[j-1]
		}
		order[j] = uint8(i)
	}
	for _, i := range order[:len(fields)] {
		b = appendField(b, fields[i])
	}
	return b
}

// appendField appends f's lines, none if its name is invalid.
func appendField(b []byte, f headerField) []byte {
	if !httpguts.ValidHeaderFieldName(f.name) {
		return b
	}
	return appendValues(b, f.name, f.values)
}

// appendValues appends the lines of one field, as WriteSubset would.
func appendValues(b []byte, key string, vs []string) []byte {
	for _, v := range vs {
		b = append(b, key...)
		b = append(b, ": "...)
		b = appendValue(b, v)
		b = append(b, "\r\n"...)
	}
	return b
}

// appendValue appends a field value as net/http writes it: CR and LF
// made spaces, then trimmed of spaces, tabs, CRs and LFs.
func appendValue(b []byte, v string) []byte {
	clean := len(v) == 0 || !isTrimmed(v[0]) && !isTrimmed(v[len(v)-1])
	for i := 0; clean && i < len(v); i++ {
		clean = v[i] != '\r' && v[i] != '\n'
	}
	if clean {
		return append(b, v...)
	}
	v = strings.NewReplacer("\n", " ", "\r", " ").Replace(v)
	return append(b, strings.Trim(v, " \t\r\n")...)
}

func isTrimmed(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// hasToken reports whether token is in v, a comma-separated list, as
// net/http's hasToken finds it (case-insensitively, at a boundary of
// space, tab or comma).
func hasToken(v, token string) bool {
	if len(token) > len(v) || token == "" {
		return false
	}
	if v == token {
		return true
	}
	boundary := func(b byte) bool { return b == ' ' || b == ',' || b == '\t' }
	for sp := 0; sp <= len(v)-len(token); sp++ {
		if b := v[sp]; b != token[0] && b|0x20 != token[0] {
			continue
		}
		if sp > 0 && !boundary(v[sp-1]) {
			continue
		}
		if end := sp + len(token); end != len(v) && !boundary(v[end]) {
			continue
		}
		if strings.EqualFold(v[sp:sp+len(token)], token) {
			return true
		}
	}
	return false
}
