package edge_test

import (
	"io"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
)

// storedPathMark matches an answer the fast front wrote from a stored
// entry in wire form (StoredAnswer.AppendHead: Content-Length, Age and
// Cache-Status after the entry's blocks), never one written from a header
// map, whose fields net/http's order sorts (Age, Cache-Status,
// Content-Length).
var storedPathMark = regexp.MustCompile("\r\nContent-Length: [0-9]+\r\nAge: [0-9]+\r\nCache-Status: ")

// path is how the fast front writes an answer.
type path int

const (
	either path = iota // as it happens
	stored             // as a StoredAnswer
	mapped             // from a header map
)

// rawAnswer sends raw on a new connection to addr and returns the
// answer's status, fields (with Connection: close, which
// http.ReadResponse takes out of them), body and head as it came.
func rawAnswer(t *testing.T, addr, raw string, head bool) (int, http.Header, string, string) {
	t.Helper()
	method := "GET"
	if head {
		method = "HEAD"
	}
	req, _ := http.NewRequest(method, "http://"+testHost+"/", nil)
	resp, body, wire := rawDoWire(t, addr, raw, req)
	if resp.Close {
		resp.Header.Add("Connection", "close")
	}
	return resp.StatusCode, resp.Header, body, wire
}

// TestStoredAnswerMatchesNetHTTP: a miss (its leader's answer, written
// from the entry the fill stored) and a stale answer are the same on the
// fast front, which writes a plain one as a StoredAnswer, as on net/http's
// front: status, every field (Date included: the clock is fake and the
// same) and body. Requests that the stored path must leave to the header
// map (a Range, a conditional) are compared too.
func TestStoredAnswerMatchesNetHTTP(t *testing.T) {
	gz := "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\x4b\x4c\x4a\x06\x00\xc2\x41\x24\x35\x03\x00\x00\x00"
	origin := func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "max-age=60, stale-while-revalidate=600")
		h.Set("ETag", `"v1"`)
		h["Set-Thing"] = []string{"one", "two"}
		h.Set("Via", "1.1 upstream")
		switch {
		case strings.HasPrefix(r.URL.Path, "/nodate"):
			h["Date"] = nil
			h.Set("Content-Type", "text/plain")
		case strings.HasPrefix(r.URL.Path, "/sniff"):
			h["Content-Type"] = nil
			h.Set("Cache-Status", "parent; fwd=uri-miss")
		case strings.HasPrefix(r.URL.Path, "/gz"):
			h.Set("Content-Encoding", "gzip")
			io.WriteString(w, gz)
			return
		case strings.HasPrefix(r.URL.Path, "/missing"):
			h.Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusNotFound)
		case strings.HasPrefix(r.URL.Path, "/vary"):
			h.Set("Content-Type", "text/plain")
			h.Set("Vary", "Accept-Language")
		case strings.HasPrefix(r.URL.Path, "/strip"):
			// The leader alone gets X-Strip (RFC 9111 §5.2.2.4): it is
			// answered from its own copy, not the stored one.
			h.Set("Cache-Control", `max-age=60, no-cache="X-Strip"`)
			h.Set("X-Strip", "the leader's")
			h.Set("Content-Type", "text/plain")
		case strings.HasPrefix(r.URL.Path, "/empty"):
			h.Set("Content-Type", "text/plain")
			return
		default:
			h.Set("Content-Type", "text/html")
			h.Set("Last-Modified", "Thu, 26 Nov 2026 08:00:00 GMT")
		}
		io.WriteString(w, "<html>the body of "+r.URL.Path+"</html>")
	}
	const host = "Host: " + testHost + "\r\n"
	cases := []struct {
		name   string
		raw    string
		head   bool
		stored path // how the fast front writes it
	}{
		{"miss", "GET /obj HTTP/1.1\r\n" + host + "\r\n", false, stored},
		{"miss, HEAD", "HEAD /head HTTP/1.1\r\n" + host + "\r\n", true, stored},
		{"miss, no Date", "GET /nodate HTTP/1.1\r\n" + host + "\r\n", false, stored},
		{"miss, sniffed type, upstream Cache-Status", "GET /sniff HTTP/1.1\r\n" + host + "\r\n", false, stored},
		{"miss, encoded", "GET /gz HTTP/1.1\r\n" + host + "\r\n", false, stored},
		{"miss, 404", "GET /missing HTTP/1.1\r\n" + host + "\r\n", false, stored},
		// An empty body is not in the origin client's buffer: the fill
		// ends on a worker, which may store the entry after the leader
		// answered.
		{"miss, empty body", "GET /empty HTTP/1.1\r\n" + host + "\r\n", false, either},
		{"miss, varying", "GET /vary HTTP/1.1\r\n" + host + "Accept-Language: fr\r\n\r\n", false, stored},
		{"miss, a field for the leader only", "GET /strip HTTP/1.1\r\n" + host + "\r\n", false, mapped},
		{"miss, Connection: close", "GET /close HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n", false, stored},
		{"miss, HTTP/1.0", "GET /old HTTP/1.0\r\n" + host + "\r\n", false, mapped}, // (lent to net/http)
		{"miss, Range", "GET /range HTTP/1.1\r\n" + host + "Range: bytes=2-5\r\n\r\n", false, mapped},
		{"miss, If-None-Match", "GET /inm HTTP/1.1\r\n" + host + "If-None-Match: \"v1\"\r\n\r\n", false, mapped},
		{"miss, If-None-Match not matching", "GET /inm2 HTTP/1.1\r\n" + host + "If-None-Match: \"v0\"\r\n\r\n", false, stored},
		{"miss, If-Modified-Since", "GET /ims HTTP/1.1\r\n" + host + "If-Modified-Since: Fri, 27 Nov 2026 08:00:00 GMT\r\n\r\n", false, mapped},
	}
	type answer struct {
		status int
		fields http.Header
		body   string
	}
	got := map[string][2]answer{}
	for i, front := range []string{edge.FrontNetHTTP, edge.FrontFast} {
		e := newEnv(t, origin, withFront(front))
		addr := strings.TrimPrefix(e.base, "http://")
		for _, tc := range cases {
			status, fields, body, wire := rawAnswer(t, addr, tc.raw, tc.head)
			if isStored := storedPathMark.MatchString(wire); front == edge.FrontFast && tc.stored != either && isStored != (tc.stored == stored) {
				t.Errorf("%s: written as a StoredAnswer %v, want %v:\n%s", tc.name, isStored, !isStored, wire)
			}
			a := got[tc.name]
			a[i] = answer{status, fields, body}
			got[tc.name] = a
		}
		// Stale within stale-while-revalidate: served from the stored
		// copy while it refreshes.
		e.clock.Advance(2 * time.Minute)
		status, fields, body, wire := rawAnswer(t, addr, "GET /obj HTTP/1.1\r\n"+host+"\r\n", false)
		if front == edge.FrontFast && !storedPathMark.MatchString(wire) {
			t.Errorf("stale: not written as a StoredAnswer:\n%s", wire)
		}
		if !strings.Contains(fields.Get("Cache-Status"), "detail=stale-while-revalidate") {
			t.Errorf("%s front: stale answer's Cache-Status %q", front, fields.Get("Cache-Status"))
		}
		a := got["stale"]
		a[i] = answer{status, fields, body}
		got["stale"] = a
	}
	for name, a := range got {
		if !reflect.DeepEqual(a[0], a[1]) {
			t.Errorf("%s:\nnet/http %d %v %q\nfast     %d %v %q", name, a[0].status, a[0].fields, a[0].body, a[1].status, a[1].fields, a[1].body)
		}
	}
}
