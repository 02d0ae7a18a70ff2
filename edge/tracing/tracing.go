// Package tracing carries W3C trace context (the traceparent and
// tracestate fields) across the hops of a request through the CDN
// (client, edge, the key's owner, the shield, the origin) and, when given
// an exporter, records one OpenTelemetry span per request at each edge.
//
// Propagation needs no Tracer: [Propagate] passes a valid client context
// upstream as it came, and starts a new one (not sampled, since nothing
// is recorded) for a request without one or with a malformed one, so
// that the origin's logs and the edge's access log share a trace id. A
// [Tracer] records: [Tracer.Start] opens the edge's server span as a
// child of the client's context, and [Propagate] then makes that span the
// parent of the upstream request. A nil *Tracer records nothing and costs
// nothing.
package tracing

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Options configure a Tracer.
type Options struct {
	// Exporter receives the finished spans. Required.
	Exporter sdktrace.SpanExporter
	// SampleRatio is the share of the traces this edge starts that are
	// recorded, 0 to 1; a request with a client context follows the
	// client's sampling decision (parent-based sampling).
	SampleRatio float64
	// Service is the spans' service.name; Node and Region, when set,
	// their service.instance.id and meridian.region.
	Service, Node, Region string
	// Sync exports each span as it ends, without batching: for tests.
	// Default false: spans are batched, as the SDK recommends.
	Sync bool
}

// Tracer records a span per request served and exports them. It is safe
// for concurrent use. Shutdown flushes and stops it.
type Tracer struct {
	tp *sdktrace.TracerProvider
	tr trace.Tracer
}

// New returns a Tracer exporting to opt.Exporter.
func New(opt Options) *Tracer {
	attrs := []attribute.KeyValue{attribute.String("service.name", opt.Service)}
	if opt.Node != "" {
		attrs = append(attrs, attribute.String("service.instance.id", opt.Node))
	}
	if opt.Region != "" {
		attrs = append(attrs, attribute.String("meridian.region", opt.Region))
	}
	var proc sdktrace.TracerProviderOption
	if opt.Sync {
		proc = sdktrace.WithSyncer(opt.Exporter)
	} else {
		proc = sdktrace.WithBatcher(opt.Exporter)
	}
	tp := sdktrace.NewTracerProvider(proc,
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(opt.SampleRatio))),
		sdktrace.WithResource(resource.NewSchemaless(attrs...)))
	return &Tracer{tp: tp, tr: tp.Tracer("github.com/meridiancdn/meridian/edge")}
}

// NewOTLP returns an exporter to an OTLP/HTTP collector at endpoint, a
// base URL such as "http://otel-collector:4318" (spans go to its
// /v1/traces). The OTEL_EXPORTER_OTLP_HEADERS environment variable adds
// headers. It does not connect until spans are exported.
func NewOTLP(ctx context.Context, endpoint string) (sdktrace.SpanExporter, error) {
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(strings.TrimSuffix(endpoint, "/")+"/v1/traces"))
	if err != nil {
		return nil, fmt.Errorf("tracing: otlp exporter: %w", err)
	}
	return exp, nil
}

// Recording reports whether t records spans (t is not nil).
func (t *Tracer) Recording() bool { return t != nil }

// Shutdown exports the spans still buffered and stops t, within ctx. It
// is safe to call twice and on nil.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

var w3c = propagation.TraceContext{}

// Start opens the server span of r, a child of the trace context r
// carries (a new trace when it has none), named after its method, and
// returns r with the span in its context. End it with End.
func (t *Tracer) Start(r *http.Request, node string) (*http.Request, trace.Span) {
	ctx := w3c.Extract(r.Context(), fieldCarrier(r.Header))
	ctx, span := t.tr.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(time.Now()),
		trace.WithAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("server.address", r.Host),
			attribute.String("url.path", r.URL.Path),
			attribute.String("network.protocol.version", r.Proto),
			attribute.String("meridian.node", node),
		))
	return r.WithContext(ctx), span
}

// End ends a server span with what the request was answered: its status
// (5xx marks the span as an error), its Cache-Status and the body bytes
// sent.
func End(span trace.Span, status int, cacheStatus string, bytes int64) {
	span.SetAttributes(
		attribute.Int("http.response.status_code", status),
		attribute.String("meridian.cache_status", cacheStatus),
		attribute.Int64("http.response.body.size", bytes),
	)
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}

// Propagate sets on out, the header of a request that the edge sends
// upstream for the client request whose context is ctx and header in,
// the trace context to carry (out may be a clone of in):
//
//   - with a recording span in ctx (Tracer.Start), that span's context:
//     the upstream request is its child;
//   - else in's traceparent when it is valid, with its tracestate when
//     that is valid too;
//   - else a new trace context, not sampled, and no tracestate.
//
// A malformed field from the client is never passed on.
func Propagate(ctx context.Context, in, out http.Header) {
	PropagateInto(ctx, in, out, nil)
}

// Fields is room for the trace context fields' values that Propagate
// sets, for a caller to embed in an allocation of its own: a fill's
// upstream request builds its forwarding fields in one, and a new
// traceparent written there rather than in its own is one allocation
// fewer per miss. Its zero value is ready; once passed to PropagateInto
// it belongs to the header it was given (the fields refer into it).
type Fields struct {
	vals [2]string // traceparent, tracestate
	text [traceparentLen]byte
}

// traceparentLen is the length of a version-00 traceparent.
const traceparentLen = 55

// PropagateInto is Propagate with the values it sets for a client's or a
// new trace context in f (a nil f: in allocations of their own).
func PropagateInto(ctx context.Context, in, out http.Header, f *Fields) {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() && !sc.IsRemote() {
		delete(out, "Tracestate")
		w3c.Inject(ctx, propagation.HeaderCarrier(out))
		return
	}
	if sc := w3c.Extract(context.Background(), fieldCarrier(in)); trace.SpanContextFromContext(sc).IsValid() {
		var vals []string
		if f != nil {
			vals = f.vals[:]
		} else {
			vals = make([]string, 2) // (the client's values need no text)
		}
		psc := trace.SpanContextFromContext(sc)
		vals[0] = in.Get("Traceparent")
		out["Traceparent"] = vals[0:1:1]
		if ts := psc.TraceState().String(); ts != "" && len(ts) <= maxTracestate {
			vals[1] = ts
			out["Tracestate"] = vals[1:2:2]
		} else {
			delete(out, "Tracestate")
		}
		return
	}
	if f == nil {
		f = new(Fields)
	}
	out["Traceparent"] = f.newTraceparent()
	delete(out, "Tracestate")
}

// fieldCarrier is a request's header as the carrier the W3C propagator
// extracts from. It looks the propagator's lower-case names up by their
// canonical forms (Traceparent, Tracestate), where propagation's
// HeaderCarrier canonicalizes them on every call, which allocates a
// string for every request that Propagate reads.
type fieldCarrier http.Header

var _ propagation.TextMapCarrier = fieldCarrier{}

// Get returns the first value of the field key.
func (c fieldCarrier) Get(key string) string {
	switch key {
	case "traceparent":
		key = "Traceparent"
	case "tracestate":
		key = "Tracestate"
	}
	return http.Header(c).Get(key)
}

// Set sets the field key to value.
func (c fieldCarrier) Set(key, value string) { http.Header(c).Set(key, value) }

// Keys lists the fields' names.
func (c fieldCarrier) Keys() []string { return propagation.HeaderCarrier(c).Keys() }

// maxTracestate bounds the tracestate passed on: the length W3C Trace
// Context asks every vendor to propagate; a longer one is dropped whole
// rather than cut (a client's, unrecorded, is worth no more).
const maxTracestate = 512

// newTraceparent writes a new, not sampled trace context into f: random
// trace and parent ids, as a field's values (one value, in f). The ids
// come from math/rand/v2's generator (ChaCha8, seeded by the runtime, a
// state per thread), as OpenTelemetry's own id generator draws from
// math/rand: ids need to be unique and unguessable enough to join
// traces, not secret, and crypto/rand's DRBG under its lock was about
// 1 % of an all-miss profile (every fill sends a traceparent).
func (f *Fields) newTraceparent() []string {
	var b [24]byte
	for {
		binary.LittleEndian.PutUint64(b[0:], rand.Uint64())
		binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
		binary.LittleEndian.PutUint64(b[16:], rand.Uint64())
		if !allZero(b[:16]) && !allZero(b[16:]) {
			break
		}
	}
	s := f.text[:]
	copy(s, "00-")
	hex.Encode(s[3:35], b[:16])
	s[35] = '-'
	hex.Encode(s[36:52], b[16:])
	copy(s[52:], "-00")
	f.vals[0] = unsafe.String(&f.text[0], len(f.text)) // text is not written again
	return f.vals[0:1:1]
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// TraceID returns the trace id of the trace context in ctx (a span that
// Start opened) or else of the traceparent field value, in lower-case hex;
// "" when there is neither a span nor a valid field.
func TraceID(ctx context.Context, traceparent string) string {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return sc.TraceID().String()
	}
	if traceparent == "" {
		return ""
	}
	sc := trace.SpanContextFromContext(w3c.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceparent}))
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}
