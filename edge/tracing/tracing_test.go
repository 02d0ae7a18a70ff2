package tracing_test

import (
	"context"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/meridiancdn/meridian/edge/tracing"
)

var traceparentRE = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)

// Whatever a client sends as traceparent and tracestate, what goes
// upstream is one well-formed traceparent (the client's when valid) and
// at most one bounded tracestate, only alongside the client's own
// traceparent.
func FuzzPropagate(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "congo=t61rcWkgMzE")
	f.Add("00-00000000000000000000000000000000-00f067aa0ba902b7-01", "a=b")
	f.Add("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "")
	f.Add("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "a=b")
	f.Add("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "x")
	f.Add("", "a=b,c=d")
	f.Add("garbage\r\nX-Injected: 1", "=,=")
	f.Fuzz(func(t *testing.T, tp, ts string) {
		in := http.Header{"Traceparent": {tp}, "Tracestate": {ts}}
		out := in.Clone()
		tracing.Propagate(context.Background(), in, out)
		got := out["Traceparent"]
		if len(got) != 1 || len(got[0]) < 55 || !validForm(got[0]) {
			t.Fatalf("traceparent %q -> %q", tp, got)
		}
		if len(out["Tracestate"]) > 1 || len(out.Get("Tracestate")) > 512 {
			t.Fatalf("tracestate %q", out["Tracestate"])
		}
		if out.Get("Tracestate") != "" && got[0] != tp {
			t.Fatalf("a tracestate %q went with a new traceparent", out.Get("Tracestate"))
		}
		if tracing.TraceID(context.Background(), tp) != "" && got[0] != tp {
			t.Fatalf("valid %q replaced by %q", tp, got[0])
		}
		// PropagateInto sets the same fields, a new traceparent aside.
		into := in.Clone()
		tracing.PropagateInto(context.Background(), in, into, new(tracing.Fields))
		if got[0] != tp {
			if v := into["Traceparent"]; len(v) != 1 || !traceparentRE.MatchString(v[0]) || v[0] == got[0] {
				t.Fatalf("PropagateInto: new traceparent %q (Propagate's %q)", v, got[0])
			}
			into["Traceparent"] = got
		}
		if !reflect.DeepEqual(into, out) {
			t.Fatalf("PropagateInto set %q, Propagate %q", into, out)
		}
	})
}

// validForm: version 00 exactly, or a later version that otel accepts
// (passed on as the client sent it, which TraceID then reads).
func validForm(v string) bool {
	return traceparentRE.MatchString(v) || tracing.TraceID(context.Background(), v) != ""
}

// A nil Tracer records nothing; a Tracer's span is the parent of what
// goes upstream, in the client's trace.
func TestTracerStartPropagate(t *testing.T) {
	var off *tracing.Tracer
	if off.Recording() || off.Shutdown(context.Background()) != nil {
		t.Fatal("nil tracer")
	}
	exp := tracetest.NewInMemoryExporter()
	tr := tracing.New(tracing.Options{Exporter: exp, SampleRatio: 1, Service: "meridian", Node: "n1", Sync: true})
	defer tr.Shutdown(context.Background())
	r, _ := http.NewRequest("GET", "http://a.test/x", nil)
	r.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	r, span := tr.Start(r, "n1")
	out := http.Header{}
	tracing.Propagate(r.Context(), r.Header, out)
	tracing.End(span, 503, "n1; fwd=uri-miss", 10)
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + spans[0].SpanContext.SpanID().String() + "-01"
	if out.Get("Traceparent") != want {
		t.Fatalf("upstream traceparent %q, want %q", out.Get("Traceparent"), want)
	}
	if spans[0].Status.Code.String() != "Error" {
		t.Fatalf("a 503's span status %v", spans[0].Status)
	}
}

// Propagate's work on every fill allocates no more than what it puts in
// the upstream header: a new traceparent's value (one allocation) for a
// client that sent none, and nothing to read the client's fields by the
// propagator's lower-case names.
func TestPropagateAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	in, out := http.Header{"Accept": {"*/*"}}, http.Header{}
	if n := testing.AllocsPerRun(100, func() { tracing.Propagate(context.Background(), in, out) }); n > 1 {
		t.Errorf("no client traceparent: %v allocations, want 1 (the new value)", n)
	}
	if out := out["Traceparent"]; len(out) != 1 || !traceparentRE.MatchString(out[0]) {
		t.Fatalf("new traceparent %q", out)
	}
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	in = http.Header{"Traceparent": {tp}}
	if n := testing.AllocsPerRun(100, func() { tracing.Propagate(context.Background(), in, out) }); n > 3 {
		t.Errorf("a client's traceparent: %v allocations, want at most 3 (the propagator's context and the value)", n)
	}
	if got := out["Traceparent"]; len(got) != 1 || got[0] != tp {
		t.Fatalf("client traceparent passed as %q", got)
	}
}

// PropagateInto writes the values it sets into the caller's Fields: a
// new traceparent costs no allocation of its own, and a client's
// traceparent only the propagator's context; each value is a slice of
// its own (an append to one cannot write into the other).
func TestPropagateIntoAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	in, out := http.Header{"Accept": {"*/*"}}, http.Header{}
	var f tracing.Fields
	if n := testing.AllocsPerRun(100, func() { tracing.PropagateInto(context.Background(), in, out, &f) }); n != 0 {
		t.Errorf("no client traceparent: %v allocations, want 0", n)
	}
	if v := out["Traceparent"]; len(v) != 1 || !traceparentRE.MatchString(v[0]) || cap(v) != 1 {
		t.Fatalf("new traceparent %q (cap %d)", v, cap(v))
	}
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	in = http.Header{"Traceparent": {tp}, "Tracestate": {"congo=t61rcWkgMzE"}}
	if n := testing.AllocsPerRun(100, func() { tracing.PropagateInto(context.Background(), in, out, &f) }); n > 4 {
		t.Errorf("a client's traceparent: %v allocations, want at most 4 (the propagator's context and tracestate)", n)
	}
	if got, st := out["Traceparent"], out["Tracestate"]; len(got) != 1 || got[0] != tp || cap(got) != 1 || len(st) != 1 || st[0] != "congo=t61rcWkgMzE" || cap(st) != 1 {
		t.Fatalf("client traceparent passed as %q, tracestate %q", got, st)
	}
}

// A request that brings no trace context gets a new one each time: ids
// that differ from one fill to the next (and are never all zero, which
// W3C Trace Context makes invalid).
func TestPropagateNewTraceContextsDiffer(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		out := http.Header{}
		tracing.Propagate(context.Background(), http.Header{}, out)
		tp := out.Get("Traceparent")
		if !traceparentRE.MatchString(tp) || strings.Contains(tp, "-"+strings.Repeat("0", 32)+"-") || strings.Contains(tp, "-"+strings.Repeat("0", 16)+"-") {
			t.Fatalf("new traceparent %q", tp)
		}
		id := tp[3:35]
		if seen[id] {
			t.Fatalf("trace id %s came twice in 1,000 new trace contexts", id)
		}
		seen[id] = true
	}
}
