package edge

import (
	"context"
	"errors"
	"net/http"
	"strings"
)

// Alt-Svc per site (SiteConfig.AltSvc). The listeners say what "auto"
// means on a connection (WithAltSvc: the HTTPS listener's HTTP/3); the
// handler decides per routed request, and sets the field as the answer's
// header goes out (altSvcWriter), so that it replaces the origin's
// stored one and never enters the store. Requests from cluster peers
// get none: their answers are stored by the asking edge.

// Values of SiteConfig.AltSvc besides a field value of its own.
const (
	AltSvcAuto = "auto"
	AltSvcOff  = "off"
)

// checkAltSvc checks a site's alt_svc: auto, off, clear, or a list of
// alternatives (protocol-id=alt-authority with parameters), one field
// value with no control characters.
func checkAltSvc(v string) error {
	switch v {
	case "", AltSvcAuto, AltSvcOff, "clear":
		return nil
	}
	for _, c := range []byte(v) {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return errors.New("a control character in the value")
		}
	}
	for item := range strings.SplitSeq(v, ",") {
		alt, _, _ := strings.Cut(item, ";")
		proto, auth, ok := strings.Cut(strings.TrimSpace(alt), "=")
		if !ok || !isToken(proto) || len(auth) < 2 || auth[0] != '"' || auth[len(auth)-1] != '"' {
			return errors.New(`want auto, off, clear, or alternatives such as 'h3=":443"; ma=86400'`)
		}
	}
	return nil
}

type altSvcKey struct{}

// WithAltSvc returns ctx, the context of a connection, saying that
// "auto" sites advertise value on it (the HTTPS listener's HTTP/3:
// `h3=":443"; ma=86400`).
func WithAltSvc(ctx context.Context, value string) context.Context {
	return context.WithValue(ctx, altSvcKey{}, []string{value})
}

// autoAltSvc is what WithAltSvc put in ctx, nil if nothing.
func autoAltSvc(ctx context.Context) []string {
	v, _ := ctx.Value(altSvcKey{}).([]string)
	return v
}

// altSvc is the Alt-Svc that r's answer gets on st: set is false when
// the answer keeps what it has (auto where the connection advertises
// nothing); value nil removes the field.
func (st *site) altSvc(r *http.Request) (value []string, set bool) {
	switch {
	case isFromPeer(r.Context()) || isReplica(r.Context()):
		return nil, false
	case st.altSvcField != nil:
		return st.altSvcField, true
	case st.cfg.AltSvc == AltSvcOff:
		return nil, true
	}
	if v := autoAltSvc(r.Context()); v != nil {
		return v, true
	}
	return nil, false
}

// altSvcWriter sets Alt-Svc (or removes it, when value is nil) on the
// final answer's header, whoever writes it; 1xx answers pass as they
// are.
type altSvcWriter struct {
	http.ResponseWriter
	value []string
	wrote bool
}

func (w *altSvcWriter) WriteHeader(code int) {
	if code >= 200 && !w.wrote {
		w.wrote = true
		if w.value == nil {
			delete(w.ResponseWriter.Header(), "Alt-Svc")
		} else {
			w.ResponseWriter.Header()["Alt-Svc"] = w.value
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *altSvcWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

func (w *altSvcWriter) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *altSvcWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
