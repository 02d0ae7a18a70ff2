package edge_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The last RFC 9111 / 9213 / 9112 requirements of issue 15 (items 1, 2 and
// 5), each over real sockets on both HTTP/1.1 fronts (TestMain runs every
// test once per front).

// versioned is an origin handler that answers "v1", "v2"... so that a test
// can tell a stored response from a fresh one, with the fields kv.
func versioned(kv ...string) http.HandlerFunc {
	var n atomic.Int64
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(kv); i += 2 {
			w.Header().Set(kv[i], kv[i+1])
		}
		fmt.Fprintf(w, "v%d", n.Add(1))
	}
}

// TestLastMileDates (item 1): HTTP-dates are parsed strictly (RFC 9110
// §5.6.7). An invalid Expires is already expired (RFC 9111 §5.3) unless
// max-age or s-maxage decide; an invalid Date is replaced by the response
// time (RFC 9110 §6.6.1, RFC 9111 §4.2.3); an invalid Last-Modified is no
// validator and gives no heuristic freshness.
func TestLastMileDates(t *testing.T) {
	tests := []struct {
		name   string
		fields []string // from the origin
		hit    bool     // the second client gets the stored "v1"
		check  func(t *testing.T, e *env, second *http.Response)
	}{
		{name: "Expires with double spaces is expired", fields: []string{"Expires", "Thu, 18  Aug  2050 02:01:18 GMT"}},
		{name: "Expires with a one-digit hour is expired", fields: []string{"Expires", "Thu, 18 Aug 2050 2:01:18 GMT"}},
		{name: "Expires with an upper-case month is expired", fields: []string{"Expires", "Thu, 18 AUG 2050 02:01:18 GMT"}},
		{name: "Expires with the wrong weekday is expired", fields: []string{"Expires", "Mon, 18 Aug 2050 02:01:18 GMT"}},
		{name: "Expires 0 is expired", fields: []string{"Expires", "0"}},
		{name: "IMF-fixdate Expires", fields: []string{"Expires", "Thu, 18 Aug 2050 02:01:18 GMT"}, hit: true},
		{name: "rfc850-date Expires", fields: []string{"Expires", "Thursday, 18-Aug-50 02:01:18 GMT"}, hit: true},
		{name: "asctime-date Expires", fields: []string{"Expires", "Thu Aug 18 02:01:18 2050"}, hit: true},
		{name: "max-age beats an invalid Expires", fields: []string{"Cache-Control", "max-age=3600", "Expires", "Thu, 18  Aug  2050 02:01:18 GMT"}, hit: true},
		{name: "s-maxage beats an invalid Expires", fields: []string{"Cache-Control", "s-maxage=3600", "Expires", "0"}, hit: true},
		{
			// Read leniently, this Date made the response 11 hours old
			// and stale at once.
			name: "an invalid Date is the response time", fields: []string{"Cache-Control", "max-age=3600", "Date", "Fri, 27 Nov 2026 1:00:00 GMT"}, hit: true,
			check: func(t *testing.T, e *env, second *http.Response) {
				want := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).Format(http.TimeFormat) // the fill's response time
				if got := second.Header["Date"]; len(got) != 1 || got[0] != want {
					t.Errorf("stored Date = %q, want the response time %q", got, want)
				}
				if age := second.Header.Get("Age"); age != "1" {
					t.Errorf("Age = %q, want 1", age)
				}
			},
		},
		{name: "an invalid Last-Modified gives no heuristic freshness", fields: []string{"Last-Modified", "Thu, 01  Jan  2026 00:00:00 GMT"}},
		{name: "a valid Last-Modified gives heuristic freshness", fields: []string{"Last-Modified", "Thu, 01 Jan 2026 00:00:00 GMT"}, hit: true},
		{
			name: "an invalid Last-Modified is not sent as If-Modified-Since", fields: []string{"Expires", "0", "Etag", `"e1"`, "Last-Modified", "Thu, 26 Nov 2026 1:00:00 GMT"},
			check: func(t *testing.T, e *env, _ *http.Response) {
				got := e.origin.lastRequest().Header
				if got.Get("If-None-Match") != `"e1"` || got["If-Modified-Since"] != nil {
					t.Errorf("revalidation sent If-None-Match %q, If-Modified-Since %q; want \"e1\" and none", got.Get("If-None-Match"), got["If-Modified-Since"])
				}
			},
		},
		{
			name: "a valid Last-Modified is sent as If-Modified-Since", fields: []string{"Expires", "0", "Last-Modified", "Thursday, 26-Nov-26 01:00:00 GMT"},
			check: func(t *testing.T, e *env, _ *http.Response) {
				if got := e.origin.lastRequest().Header.Get("If-Modified-Since"); got != "Thu, 26 Nov 2026 01:00:00 GMT" {
					t.Errorf("revalidation sent If-Modified-Since %q", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, versioned(tt.fields...))
			r1, b1 := e.get("/d")
			wantStatus(t, r1, 200)
			if b1 != "v1" {
				t.Fatalf("first body %q", b1)
			}
			if got := e.origin.lastRequest().Header["If-Modified-Since"]; got != nil {
				t.Fatalf("the fill sent If-Modified-Since %q", got)
			}
			e.clock.Advance(time.Second)
			r2, b2 := e.get("/d")
			wantStatus(t, r2, 200)
			if tt.hit {
				if b2 != "v1" || e.origin.count("/d") != 1 {
					t.Fatalf("second client got %q after %d origin requests, want the stored v1 (Cache-Status %q)", b2, e.origin.count("/d"), r2.Header.Get("Cache-Status"))
				}
				wantCS(t, r2, "hit")
			} else {
				if b2 != "v2" || e.origin.count("/d") != 2 {
					t.Fatalf("second client got %q after %d origin requests, want a new v2 (Cache-Status %q)", b2, e.origin.count("/d"), r2.Header.Get("Cache-Status"))
				}
				wantCS(t, r2, "!hit")
			}
			if tt.check != nil {
				tt.check(t, e, r2)
			}
		})
	}
}

// TestLastMileDateConditionals (item 1): a client's If-Modified-Since or
// If-Unmodified-Since that is not a valid HTTP-date is ignored (RFC 9110
// §13.1.3, §13.1.4); an If-Range date that is not one never matches, so the
// whole representation is sent (§13.1.5). All answered from the cache.
func TestLastMileDateConditionals(t *testing.T) {
	const lastModified = "Wed, 25 Nov 2026 12:00:00 GMT"
	tests := []struct {
		name   string
		kv     []string // client fields
		status int
		body   string
	}{
		{"If-Modified-Since", []string{"If-Modified-Since", "Thu, 26 Nov 2026 12:00:00 GMT"}, 304, ""},
		{"If-Modified-Since rfc850-date", []string{"If-Modified-Since", "Thursday, 26-Nov-26 12:00:00 GMT"}, 304, ""},
		{"If-Modified-Since with a one-digit hour is ignored", []string{"If-Modified-Since", "Thu, 26 Nov 2026 1:00:00 GMT"}, 200, "hello world"},
		{"If-Modified-Since with double spaces is ignored", []string{"If-Modified-Since", "Thu, 26  Nov  2026 12:00:00 GMT"}, 200, "hello world"},
		{"If-Unmodified-Since", []string{"If-Unmodified-Since", "Tue, 24 Nov 2026 12:00:00 GMT"}, 412, ""},
		{"If-Unmodified-Since with double spaces is ignored", []string{"If-Unmodified-Since", "Tue, 24  Nov  2026 12:00:00 GMT"}, 200, "hello world"},
		{"If-Range date", []string{"Range", "bytes=0-4", "If-Range", lastModified}, 206, "hello"},
		{"If-Range with double spaces sends all", []string{"Range", "bytes=0-4", "If-Range", "Wed, 25  Nov  2026 12:00:00 GMT"}, 200, "hello world"},
		{"If-Range with the wrong weekday sends all", []string{"Range", "bytes=0-4", "If-Range", "Thu, 25 Nov 2026 12:00:00 GMT"}, 200, "hello world"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, respond(200, "hello world", "Cache-Control", "max-age=3600", "Last-Modified", lastModified))
			e.get("/c")
			r, b := e.get("/c", tt.kv...)
			wantStatus(t, r, tt.status)
			if b != tt.body {
				t.Fatalf("body %q, want %q", b, tt.body)
			}
			wantCS(t, r, "hit")
			if n := e.origin.count("/c"); n != 1 {
				t.Fatalf("origin saw %d requests, want 1", n)
			}
			for _, f := range []string{"If-Modified-Since", "If-Unmodified-Since", "If-Range", "Range"} {
				if v := e.origin.lastRequest().Header[f]; v != nil {
					t.Fatalf("origin received %s %q", f, v)
				}
			}
		})
	}
}

// TestLastMileCDNCacheControl (item 2): CDN-Cache-Control is an
// sf-dictionary (RFC 9213 §2.1). One that does not parse, or holds a
// directive of the wrong type, is ignored as a whole, so Cache-Control:
// no-store applies and nothing is stored.
func TestLastMileCDNCacheControl(t *testing.T) {
	tests := []struct {
		name  string
		cdn   string
		store bool
	}{
		{"not an sf-dictionary", "max-age=10000, &&&&&", false},
		{"max-age as a String", `max-age="10000"`, false},
		{"max-age as a Decimal", "max-age=10000.5", false},
		{"upper-case key", "MaX-aGe=10000", false},
		{"space before =", "max-age =10000", false},
		{"no-store with a value", "no-store=1, max-age=10000", false},
		{"valid max-age beats no-store", "max-age=10000", true},
		{"extension with parameters", `foobar="x";p=1, max-age=10000`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, versioned("Cache-Control", "no-store", "CDN-Cache-Control", tt.cdn))
			r1, b1 := e.get("/cdn")
			wantStatus(t, r1, 200)
			if b1 != "v1" || r1.Header.Get("Cdn-Cache-Control") != tt.cdn {
				t.Fatalf("first client got %q, CDN-Cache-Control %q", b1, r1.Header.Get("Cdn-Cache-Control"))
			}
			e.clock.Advance(time.Second)
			r2, b2 := e.get("/cdn")
			wantStatus(t, r2, 200)
			if tt.store {
				wantCS(t, r1, "stored")
				wantCS(t, r2, "hit")
				if b2 != "v1" || e.origin.count("/cdn") != 1 {
					t.Fatalf("second client got %q after %d origin requests, want the stored v1", b2, e.origin.count("/cdn"))
				}
				return
			}
			wantCS(t, r1, "!stored")
			wantCS(t, r2, "!hit")
			if b2 != "v2" || e.origin.count("/cdn") != 2 {
				t.Fatalf("second client got %q after %d origin requests: a no-store response was stored (Cache-Status %q)", b2, e.origin.count("/cdn"), r2.Header.Get("Cache-Status"))
			}
		})
	}
}

// TestLastMileTransferCoding (item 5): a response whose transfer coding is
// not exactly chunked is refused with 502 and a Cache-Status detail that
// says so (origin-protocol-error), never forwarded, never stored; see
// deploy/README.md, "RFC notes". The edge advertises no transfer coding to
// the origin (RFC 9112 §7.4: then only chunked is acceptable), whatever
// the client's TE said.
func TestLastMileTransferCoding(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("secret payload"))
	zw.Close()
	const secret = "secret payload"
	tests := []struct {
		name   string
		raw    string // the origin's response after the status line
		status int
	}{
		{"unknown coding, close-delimited", "Transfer-Encoding: arizqhypgxofwne\r\n\r\n" + secret, 502},
		{"unknown coding with Content-Length", "Transfer-Encoding: arizqhypgxofwne\r\nContent-Length: 14\r\n\r\n" + secret, 502},
		{"gzip then chunked", fmt.Sprintf("Transfer-Encoding: gzip, chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", gz.Len(), gz.String()), 502},
		{"identity", "Transfer-Encoding: identity\r\n\r\n" + secret, 502},
		{"chunked twice", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\ne\r\n" + secret + "\r\n0\r\n\r\n", 502},
		{"chunked", "Transfer-Encoding: chunked\r\n\r\ne\r\n" + secret + "\r\n0\r\n\r\n", 200},
		{"Chunked in any case", "Transfer-Encoding: Chunked\r\n\r\ne\r\n" + secret + "\r\n0\r\n\r\n", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				conn, bw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				defer conn.Close()
				bw.WriteString("HTTP/1.1 200 OK\r\nCache-Control: max-age=3600\r\n" + tt.raw)
				bw.Flush()
			})
			for i := 1; i <= 2; i++ {
				if i > 1 {
					e.clock.Advance(time.Second) // past the failure's backoff (cache.error_backoff)
				}
				r, b := e.get("/te", "TE", "arizqhypgxofwne, trailers")
				wantStatus(t, r, tt.status)
				if got := e.origin.lastRequest().Header["Te"]; got != nil {
					t.Fatalf("origin received TE %q", got)
				}
				if tt.status == 200 {
					if b != secret {
						t.Fatalf("body %q", b)
					}
					if i == 2 {
						wantCS(t, r, "hit")
					}
					continue
				}
				wantCS(t, r, "detail=origin-protocol-error")
				if strings.Contains(b, secret) || r.Header["Transfer-Encoding"] != nil || r.TransferEncoding != nil && r.TransferEncoding[0] != "chunked" {
					t.Fatalf("the refused response leaked: body %q, Transfer-Encoding %q", b, r.TransferEncoding)
				}
				if n := e.origin.count("/te"); n != i {
					t.Fatalf("client %d: origin saw %d requests, want %d (nothing stored)", i, n, i)
				}
				if n := protocolErrors(t, e); n != float64(i) {
					t.Fatalf("meridian_origin_errors_total{kind=\"protocol\"} = %v, want %d", n, i)
				}
			}
		})
	}
}

// TestLastMileTransferCodingStale (item 5): a refused transfer coding is an
// upstream failure like any other: a stale copy within stale-if-error
// stands in for it.
func TestLastMileTransferCodingStale(t *testing.T) {
	var bad atomic.Bool
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if !bad.Load() {
			respond(200, "good", "Cache-Control", "max-age=1, stale-if-error=600")(w, r)
			return
		}
		conn, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		bw.WriteString("HTTP/1.1 200 OK\r\nCache-Control: max-age=3600\r\nTransfer-Encoding: arizqhypgxofwne\r\n\r\nbad")
		bw.Flush()
	})
	e.get("/s")
	bad.Store(true)
	e.clock.Advance(5 * time.Second)
	r, b := e.get("/s")
	wantStatus(t, r, 200)
	wantCS(t, r, "fwd=stale", "detail=stale-if-error")
	if b != "good" || e.origin.count("/s") != 2 {
		t.Fatalf("got %q after %d origin requests, want the stale copy after 2", b, e.origin.count("/s"))
	}
}

// protocolErrors is the edge's meridian_origin_errors_total{kind="protocol"}.
func protocolErrors(t *testing.T, e *env) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "meridian_origin_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == "protocol" {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
