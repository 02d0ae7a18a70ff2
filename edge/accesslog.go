package edge

import (
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

// logAccess writes one access log line: the only log a hit produces.
func (h *Handler) logAccess(r *http.Request, status int, bytes int64, cacheStatus string, start time.Time) {
	h.accessLog.LogAttrs(r.Context(), slog.LevelInfo, "access",
		slog.String("remote", r.RemoteAddr),
		slog.String("proto", r.Proto),
		slog.String("method", r.Method),
		slog.String("host", r.Host),
		slog.String("uri", r.RequestURI),
		slog.Int("status", status),
		slog.Int64("bytes", bytes),
		slog.String("cache_status", cacheStatus),
		slog.Duration("duration", h.now().Sub(start)),
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
		h.logAccess(r, status, rec.bytes, rec.Header().Get("Cache-Status"), start)
	}()
	h.serve(rec, r)
}
