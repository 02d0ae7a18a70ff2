package edge

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

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

// accessLine is what one access log line says of a request.
type accessLine struct {
	remote, proto, method, host, uri string
	status                           int
	bytes                            int64
	cacheStatus                      string
	start                            time.Time // the duration runs from here to the writing of the line
}

// logLine writes one access log line, the only log a hit produces: the
// one place that formats it, for every front.
func (h *Handler) logLine(ctx context.Context, l *accessLine) {
	h.accessLog.LogAttrs(ctx, slog.LevelInfo, "access",
		slog.String("remote", l.remote),
		slog.String("proto", l.proto),
		slog.String("method", l.method),
		slog.String("host", l.host),
		slog.String("uri", l.uri),
		slog.Int("status", l.status),
		slog.Int64("bytes", l.bytes),
		slog.String("cache_status", l.cacheStatus),
		slog.Duration("duration", h.now().Sub(l.start)),
	)
}

// serveLogged serves r and logs it.
func (h *Handler) serveLogged(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	rec := &accessRecorder{ResponseWriter: w}
	defer func() {
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		h.logLine(r.Context(), &accessLine{remote: r.RemoteAddr, proto: r.Proto, method: r.Method, host: r.Host,
			uri: r.RequestURI, status: status, bytes: rec.bytes, cacheStatus: rec.Header().Get("Cache-Status"), start: start})
	}()
	h.serve(rec, r)
}
