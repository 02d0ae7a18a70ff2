package edge

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"

	"github.com/meridiancdn/meridian/edge/tracing"
)

// The access log: one line per answered request, on every front and
// protocol. Requests that ServeHTTP answers are recorded by serveLogged;
// plain hits that the fast front writes itself by Delivered (hit.go). Both
// fill one accessLine and hand it to AccessLog.write, the one place that
// formats a line.

// The access log formats (AccessLogConfig.Format).
const (
	// AccessLogJSON is one JSON object per line (see AccessLog).
	AccessLogJSON = "json"
	// AccessLogCombined is the Apache/nginx "combined" format, as
	// goaccess, awstats and other log tools read it.
	AccessLogCombined = "combined"
)

// AccessLog writes access log lines to a writer, in JSON or the combined
// format. A log opened on a file (OpenAccessLog) is reopened by Reopen,
// the logrotate convention: move the file, then send SIGUSR1. It is safe
// for concurrent use; each line is written whole with one Write.
//
// A JSON line has: time (when the request arrived, RFC 3339 UTC with
// milliseconds), node, client_ip (the client after trusted proxies, see
// Handler.ClientAddr), remote (the connection's peer), method, host, uri,
// proto, status, bytes (body bytes sent), cache_status, duration_ms (from
// arrival to the line, a float: 1.234), referer and user_agent (when sent),
// and trace_id when the request carries a W3C trace context.
type AccessLog struct {
	combined bool
	path     string // the file's path; "" for a writer

	// mu guards w and f, and is held across the Write of a line so that
	// lines never interleave or go to a closed file. No network I/O is
	// done under it (a file, a pipe or a terminal).
	mu     sync.Mutex
	w      io.Writer
	f      *os.File
	failed bool // the last write failed (reported once per failure run)

	bufs sync.Pool // *[]byte
}

// NewAccessLog returns an access log that writes lines in format
// (AccessLogJSON or AccessLogCombined; "" is JSON) to w. Reopen does
// nothing on it.
func NewAccessLog(w io.Writer, format string) (*AccessLog, error) {
	l := &AccessLog{w: w}
	switch format {
	case "", AccessLogJSON:
	case AccessLogCombined:
		l.combined = true
	default:
		return nil, fmt.Errorf("access log format %q (want json or combined)", format)
	}
	return l, nil
}

// OpenAccessLog opens the access log that cfg (defaulted and validated)
// describes: stdout and stderr are the writers of those destinations; a
// file path is opened for appending (created with mode 0640). It returns
// nil and no error for "off".
func OpenAccessLog(cfg AccessLogConfig, stdout, stderr io.Writer) (*AccessLog, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("access_log.%w", err)
	}
	var w io.Writer
	switch cfg.Destination {
	case "off":
		return nil, nil
	case "stdout":
		w = stdout
	case "stderr":
		w = stderr
	}
	l, err := NewAccessLog(w, cfg.Format)
	if err != nil {
		return nil, err
	}
	if w == nil {
		l.path = cfg.Destination
		if l.f, err = openLogFile(l.path); err != nil {
			return nil, err
		}
		l.w = l.f
	}
	return l, nil
}

func openLogFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	return f, nil
}

// Reopen opens the log's file again by its path and closes the one it
// wrote to, so that a rotated file (moved away by logrotate) is left
// alone and a new one begins; lines are never lost or split across the
// swap. It does nothing for a log that is not a file. On error the old
// file is kept.
func (l *AccessLog) Reopen() error {
	if l == nil || l.path == "" {
		return nil
	}
	f, err := openLogFile(l.path) // outside the lock: writers go on meanwhile
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f, l.w = f, f
	l.mu.Unlock()
	return old.Close()
}

// Close closes the log's file, if it has one. Lines written after Close
// are dropped.
func (l *AccessLog) Close() error {
	if l == nil || l.path == "" {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f, l.w = nil, io.Discard
	return err
}

// Path is the file the log writes to, "" when it is not a file.
func (l *AccessLog) Path() string { return l.path }

// accessLine is what one access log line says of a request.
type accessLine struct {
	start       time.Time // arrival: the duration runs from here to the writing of the line
	node        string
	remote      string     // the connection's peer, as Request.RemoteAddr
	client      netip.Addr // the client after trusted proxies
	proto       string
	method      string
	host        string
	uri         string
	status      int
	bytes       int64
	cacheStatus string
	referer     string
	userAgent   string
	traceID     string
}

// write formats l and writes it as one line; now ends its duration.
func (al *AccessLog) write(l *accessLine, now time.Time) {
	bp, _ := al.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	var b []byte
	if al.combined {
		b = appendCombined((*bp)[:0], l)
	} else {
		b = appendJSONLine((*bp)[:0], l, now)
	}
	al.mu.Lock()
	_, err := al.w.Write(b)
	report := err != nil && !al.failed
	al.failed = err != nil
	al.mu.Unlock()
	if report {
		// Once per run of failures, to the process log's stream of last
		// resort: the access log itself is what failed.
		fmt.Fprintf(os.Stderr, "meridian: access log: %v\n", err)
	}
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		al.bufs.Put(bp)
	}
}

// appendJSONLine appends l as one JSON object and a newline.
func appendJSONLine(b []byte, l *accessLine, now time.Time) []byte {
	b = append(b, `{"time":"`...)
	b = l.start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, '"')
	b = appendJSONField(b, "node", l.node)
	if l.client.IsValid() {
		b = append(b, `,"client_ip":"`...)
		b = l.client.AppendTo(b)
		b = append(b, '"')
	}
	b = appendJSONField(b, "remote", l.remote)
	b = appendJSONField(b, "method", l.method)
	b = appendJSONField(b, "host", l.host)
	b = appendJSONField(b, "uri", l.uri)
	b = appendJSONField(b, "proto", l.proto)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(l.status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, l.bytes, 10)
	b = appendJSONField(b, "cache_status", l.cacheStatus)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(max(now.Sub(l.start), 0))/float64(time.Millisecond), 'f', -1, 64)
	if l.referer != "" {
		b = appendJSONField(b, "referer", l.referer)
	}
	if l.userAgent != "" {
		b = appendJSONField(b, "user_agent", l.userAgent)
	}
	if l.traceID != "" {
		b = appendJSONField(b, "trace_id", l.traceID)
	}
	return append(b, "}\n"...)
}

// appendJSONField appends ,"name":"value" with value escaped as JSON
// requires; invalid UTF-8 becomes U+FFFD, as encoding/json writes it.
func appendJSONField(b []byte, name, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, `":"`...)
	const hex = "0123456789abcdef"
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(v[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		default:
			b = append(b, v[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// appendCombined appends l in the combined log format and a newline:
//
//	client - - [10/Oct/2026:13:55:36 +0000] "GET /a?b HTTP/1.1" 200 2326 "referer" "user agent"
//
// as nginx writes it (body bytes 0, not "-", when none were sent; "-"
// for a missing referer or user agent). Quoted values escape '"', '\\',
// control and non-ASCII bytes as \xHH, as nginx does, so that a hostile
// field can neither end a quoted value nor forge a line.
func appendCombined(b []byte, l *accessLine) []byte {
	if l.client.IsValid() {
		b = l.client.AppendTo(b)
	} else {
		b = append(b, '-')
	}
	b = append(b, " - - ["...)
	b = l.start.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, `] "`...)
	b = appendLogEscaped(b, l.method)
	b = append(b, ' ')
	b = appendLogEscaped(b, l.uri)
	b = append(b, ' ')
	b = appendLogEscaped(b, l.proto)
	b = append(b, `" `...)
	b = strconv.AppendInt(b, int64(l.status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, l.bytes, 10)
	b = append(b, ` "`...)
	b = appendLogEscapedOrDash(b, l.referer)
	b = append(b, `" "`...)
	b = appendLogEscapedOrDash(b, l.userAgent)
	return append(b, "\"\n"...)
}

func appendLogEscapedOrDash(b []byte, v string) []byte {
	if v == "" {
		return append(b, '-')
	}
	return appendLogEscaped(b, v)
}

// appendLogEscaped appends v with '"', '\\', spaces other than ' ',
// control characters and bytes above 0x7e written as \xHH (nginx's
// escape=default).
func appendLogEscaped(b []byte, v string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '"' || c == '\\' || c < 0x20 || c > 0x7e {
			b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}

// accessRecorder captures what a request was answered with, for the access
// log. It keeps http.Flusher working for streamed bodies.
type accessRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (a *accessRecorder) WriteHeader(code int) {
	if a.status == 0 || a.status < 200 {
		a.status = code
	}
	a.ResponseWriter.WriteHeader(code)
}

func (a *accessRecorder) Write(p []byte) (int, error) {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	n, err := a.ResponseWriter.Write(p)
	a.bytes += int64(n)
	return n, err
}

func (a *accessRecorder) Flush() {
	if f, ok := a.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the server's writer.
func (a *accessRecorder) Unwrap() http.ResponseWriter { return a.ResponseWriter }

// SetBaseHeader passes a base header on to the server's writer when it
// takes one (BaseHeaderWriter): of the header, the recorder reads only
// Cache-Status, which serveEntry sets in the map.
func (a *accessRecorder) SetBaseHeader(base http.Header) bool {
	bw, ok := a.ResponseWriter.(BaseHeaderWriter)
	return ok && bw.SetBaseHeader(base)
}

// logLine writes one access log line, the only log a hit produces, for
// every front.
func (h *Handler) logLine(l *accessLine) {
	l.node = h.cfg.Name
	h.accessLog.write(l, h.now())
}

// serveObserved serves r with what watches requests: the access log
// line and, when a tracer records, the request's server span.
func (h *Handler) serveObserved(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	var span trace.Span
	if h.tracer != nil {
		r, span = h.tracer.Start(r, h.cfg.Name)
	}
	rec := &accessRecorder{ResponseWriter: w}
	defer func() {
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		cs := rec.Header().Get("Cache-Status")
		if h.accessLog != nil {
			h.logLine(&accessLine{start: start, remote: r.RemoteAddr, client: h.ClientAddr(r), proto: r.Proto,
				method: r.Method, host: r.Host, uri: r.RequestURI, status: status, bytes: rec.bytes,
				cacheStatus: cs, referer: r.Header.Get("Referer"), userAgent: r.Header.Get("User-Agent"),
				traceID: tracing.TraceID(r.Context(), r.Header.Get("Traceparent"))})
		}
		if span != nil {
			tracing.End(span, status, cs, rec.bytes)
		}
	}()
	h.serve(rec, r)
}

// traceIDOfField is the trace id of a traceparent field value, "" when
// it is not a valid one.
func traceIDOfField(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	return tracing.TraceID(context.Background(), string(v))
}

// addrString is a peer address as net/http's Request.RemoteAddr has it.
func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
