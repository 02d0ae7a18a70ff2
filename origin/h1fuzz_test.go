package origin

import (
	"context"
	"io"
	"net/http"
	"reflect"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzResponse sends the bytes of an origin's answer (then its close)
// through a pool with the lean client and one with the Transport and
// wants the same outcome: the status, header, trailer and body, or the
// same kind of error. The only difference allowed is the lean client's
// refusal of a 101 answer, which it never asks for.
func FuzzResponse(f *testing.F) {
	for _, c := range hostileAnswers {
		f.Add(c.method == "HEAD", []byte(c.reply))
	}
	var reply atomic.Pointer[[]byte]
	o := startScript(f, func(conn, req int, head string) (string, bool) {
		return string(*reply.Load()), true
	})
	pools := [2]*Pool{}
	for i, std := range []bool{true, false} {
		p, err := NewPool(PoolConfig{Servers: []ServerConfig{{URL: o.url}}, Retries: -1, TryTimeout: 10 * time.Second,
			Outlier: OutlierConfig{ConsecutiveErrors: -1}, stdTransport: std})
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { p.Close() })
		pools[i] = p
	}
	f.Fuzz(func(t *testing.T, head bool, b []byte) {
		reply.Store(&b)
		method := "GET"
		if head {
			method = "HEAD"
		}
		var outs [2]outcome
		for i, p := range pools {
			outs[i] = roundTripOutcome(t, p, method)
			// No connection carries over to the next input: the
			// Transport would read one's stray bytes as the next
			// answer if it reused it before noticing them.
			p.transport.CloseIdleConnections()
			if h1 := p.servers[0].h1; h1 != nil {
				h1.closeIdle(false)
			}
		}
		if outs[0].StatusCode == http.StatusSwitchingProtocols && outs[1].Err == KindProtocol {
			return // the known difference
		}
		if !reflect.DeepEqual(outs[0], outs[1]) {
			t.Errorf("outcomes differ for %q\nstd:  %+v\nlean: %+v", b, outs[0], outs[1])
		}
	})
}

// roundTripOutcome sends one request through p and reports what came of it.
func roundTripOutcome(t *testing.T, p *Pool, method string) outcome {
	t.Helper()
	var out outcome
	req, _ := http.NewRequestWithContext(context.Background(), method, "http://site.example/f", nil)
	resp, err := p.RoundTrip(req)
	if err != nil {
		out.Err = kindOf(err)
		if out.Err == 0 {
			t.Fatalf("error %v is not an *Error", err)
		}
		return out
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	out.BodyErr = kindOf(err)
	if err != nil && out.BodyErr == 0 {
		t.Fatalf("body error %v is not an *Error", err)
	}
	out.Body = string(b)
	out.Status, out.StatusCode, out.Proto = resp.Status, resp.StatusCode, resp.Proto
	out.Header, out.Trailer = resp.Header, resp.Trailer
	out.ContentLength, out.Close, out.TE = resp.ContentLength, resp.Close, resp.TransferEncoding
	return out
}
