package listen

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
)

// overBase is a handler's view of an answer whose fields start as base:
// given to the writer when it takes a base (edge.BaseHeaderWriter, the
// fast writer), else copied into its map (net/http's); fields are then
// removed as the edge's serveEntry removes them.
type overBase struct {
	w    http.ResponseWriter
	base http.Header // nil: copied
}

func newOverBase(t *testing.T, w http.ResponseWriter, base http.Header) *overBase {
	if bw, ok := w.(edge.BaseHeaderWriter); ok {
		if !bw.SetBaseHeader(base) {
			t.Errorf("the fast writer refused a base before its header was written")
		}
		return &overBase{w: w, base: base}
	}
	for k, vs := range base {
		w.Header()[k] = vs
	}
	return &overBase{w: w}
}

func (o *overBase) drop(name string) {
	if _, ok := o.base[name]; ok {
		o.w.Header()[name] = nil
		return
	}
	delete(o.w.Header(), name)
}

// copying hides a writer's SetBaseHeader: the handler copies the base.
type copying struct{ http.ResponseWriter }

// TestFastWriterOverBaseAnswersAsNetHTTP: an answer whose fields the fast
// writer takes as a base header (SetBaseHeader) is the answer net/http
// writes when the same fields are copied into its header map (as the
// client reads it: fields but Date, framing, body, the connection kept
// or not), and byte for byte but its Date the one the fast writer writes
// with them copied: with fields set before the base (replaced by base's),
// over it (replacing base's), removed from it, hostile names and values
// (invalid names dropped, line breaks made spaces, values trimmed), the
// framing fields, Content-Type sniffed when base has none or it is
// removed, a 304, 1xx answers, trailers declared in base, chunking.
func TestFastWriterOverBaseAnswersAsNetHTTP(t *testing.T) {
	handlers := overBaseHandlers()
	mux := http.NewServeMux()
	for p, h := range handlers {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) { h(t, w) })
	}
	quiet := log.New(io.Discard, "", 0)
	std := httptest.NewUnstartedServer(mux)
	std.Config.ErrorLog = quiet
	std.Start()
	defer std.Close()
	fast := newFastMissServer(t, mux, watchAfter)
	fastCopying := newFastMissServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(copying{w}, r)
	}), watchAfter)
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for p := range handlers {
			if !yield(p) {
				return
			}
		}
	}) {
		for _, method := range []string{"GET", "HEAD"} {
			raw := method + " " + p + " HTTP/1.1\r\nHost: site.test\r\n\r\n"
			if got, want := exchangeTwice(t, fast, raw), exchangeTwice(t, std.Listener.Addr().String(), raw); !slices.Equal(got, want) {
				t.Errorf("%q:\nnet/http %q\nfast     %q", raw, want, got)
			}
			closing := method + " " + p + " HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n"
			if got, want := rawAnswer(t, fast, closing), rawAnswer(t, fastCopying, closing); !bytes.Equal(got, want) {
				t.Errorf("%q, the bytes:\ncopied    %q\nover base %q", closing, want, got)
			}
		}
	}
}

// overBaseHandlers are the handlers of
// TestFastWriterOverBaseAnswersAsNetHTTP, by path: answers over a base
// header (or with it copied, on a writer that takes none).
func overBaseHandlers() map[string]func(t *testing.T, w http.ResponseWriter) {
	big := strings.Repeat("0123456789", 500)
	origin := func() http.Header { // as a filling entry's: a new map for each answer
		return http.Header{
			"Cache-Control": {"max-age=60"},
			"Content-Type":  {"text/plain"},
			"Etag":          {`"v1"`},
			"Via":           {"1.1 shield"},
			"X-Multi":       {"a", "b"},
			"Surrogate-Key": {"k1 k2"},
		}
	}
	with := func(extra http.Header) http.Header {
		h := origin()
		for k, vs := range extra {
			h[k] = vs
		}
		return h
	}
	return map[string]func(t *testing.T, w http.ResponseWriter){
		"/plain": func(t *testing.T, w http.ResponseWriter) {
			o := newOverBase(t, w, origin())
			w.Header()["Via"] = append(origin()["Via"], "1.1 edge")
			w.Header().Set("Age", "0")
			w.Header().Set("Cache-Status", "edge; fwd=uri-miss")
			o.drop("Surrogate-Key")
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		},
		"/before": func(t *testing.T, w http.ResponseWriter) {
			w.Header().Set("Via", "set before")
			w.Header().Set("X-Before", "kept")
			w.Header().Set("Etag", `"before"`)
			newOverBase(t, w, origin())
			io.WriteString(w, "hello")
		},
		"/hostile": func(t *testing.T, w http.ResponseWriter) {
			newOverBase(t, w, with(http.Header{
				"Bad Name":                 {"dropped"},
				"X-Crlf":                   {"a\r\nInjected: 1", "b\nc"},
				"X-Spaces":                 {"  padded \t"},
				"X-Empty":                  nil,
				"X-Blank":                  {""},
				http.TrailerPrefix + "X-P": {"p"},
			}))
			io.WriteString(w, "hostile")
		},
		"/dropped": func(t *testing.T, w http.ResponseWriter) {
			o := newOverBase(t, w, with(http.Header{"Content-Length": {"99"}}))
			o.drop("Content-Type")
			o.drop("Content-Length")
			o.drop("Surrogate-Key")
			o.drop("X-Not-There")
			io.WriteString(w, "<html><body>sniffed</body></html>")
		},
		"/notype": func(t *testing.T, w http.ResponseWriter) {
			b := origin()
			delete(b, "Content-Type")
			newOverBase(t, w, b)
			io.WriteString(w, "<html>sniffed</html>")
		},
		"/typenil": func(t *testing.T, w http.ResponseWriter) {
			b := origin()
			delete(b, "Content-Type")
			newOverBase(t, w, b)
			w.Header()["Content-Type"] = nil // not base's: not sniffed, as net/http
			w.Header()["Date"] = nil         // no Date at all
			io.WriteString(w, "<html>not sniffed</html>")
		},
		"/304": func(t *testing.T, w http.ResponseWriter) {
			o := newOverBase(t, w, with(http.Header{"Content-Length": {"5"}}))
			o.drop("Content-Length")
			w.WriteHeader(http.StatusNotModified)
		},
		"/304type": func(t *testing.T, w http.ResponseWriter) {
			newOverBase(t, w, origin()) // its Content-Type is not sent
			w.WriteHeader(http.StatusNotModified)
		},
		"/412": func(t *testing.T, w http.ResponseWriter) {
			o := newOverBase(t, w, with(http.Header{"Content-Length": {"5"}}))
			o.drop("Content-Length")
			w.WriteHeader(http.StatusPreconditionFailed)
		},
		"/framing": func(t *testing.T, w http.ResponseWriter) {
			newOverBase(t, w, with(http.Header{"Transfer-Encoding": {"chunked"}, "Content-Length": {"3"},
				"Connection": {"close"}, "Content-Encoding": {"gzip"}, "Date": {"Mon, 07 Dec 2026 05:00:00 GMT"}}))
			io.WriteString(w, "abc")
		},
		"/badcl": func(t *testing.T, w http.ResponseWriter) {
			newOverBase(t, w, with(http.Header{"Content-Length": {"abc"}}))
			io.WriteString(w, "hi")
		},
		"/hints": func(t *testing.T, w http.ResponseWriter) {
			newOverBase(t, w, with(http.Header{"Link": {"</s.css>; rel=preload"}}))
			w.Header().Set("X-Hint", "1")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("X-Hint")
			io.WriteString(w, "hinted")
		},
		"/trailer": func(t *testing.T, w http.ResponseWriter) {
			newOverBase(t, w, with(http.Header{"Trailer": {"X-T, X-Multi"}}))
			io.WriteString(w, "body")
			w.Header().Set("X-T", "t1")
		},
		"/big": func(t *testing.T, w http.ResponseWriter) {
			newOverBase(t, w, origin())
			io.WriteString(w, big)
		},
		"/upgrade": func(t *testing.T, w http.ResponseWriter) {
			newOverBase(t, w, with(http.Header{"Upgrade": {"example"}, "Connection": {"close, Upgrade"}}))
			io.WriteString(w, "not switched")
		},
		"/manyfields": func(t *testing.T, w http.ResponseWriter) {
			b := origin()
			for i := range 40 { // past the 32 the writer sorts in place
				b[fmt.Sprintf("X-F%02d", 39-i)] = []string{fmt.Sprint(i)}
			}
			o := newOverBase(t, w, b)
			o.drop("X-F07")
			w.Header().Set("X-F08", "over")
			io.WriteString(w, "many")
		},
		"/nilbase": func(t *testing.T, w http.ResponseWriter) {
			newOverBase(t, w, nil)
			io.WriteString(w, "nothing under")
		},
	}
}

var dateLine = regexp.MustCompile(`(?m)^Date: [^\r\n]*\r\n`)

// rawAnswer sends raw, a request with Connection: close, on a new
// connection and returns all the server wrote, Date lines left out.
func rawAnswer(t *testing.T, addr, raw string) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, raw)
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	return dateLine.ReplaceAll(b, nil)
}

// FuzzFastWriterOverBase runs a script of header work on the fast writer
// twice, once with a base header (SetBaseHeader) and once with the base
// copied into the map, and wants the same bytes (but Date lines). A
// script's lines: "p name:value" sets a field before the base, "b
// name:value" adds a value to the base, "s name:value" sets a field
// over it, "n name" sets a field with no values, "d name" removes a
// field as the edge does (dropField), "c code" writes the status (one of
// a few), "w text" writes body bytes. Names and values are the fuzzer's:
// an origin's may be anything.
func FuzzFastWriterOverBase(f *testing.F) {
	for _, s := range []string{
		"b Content-Type:text/plain\nb Via:1.1 up\ns Via:1.1 up\ns Age:0\nd Surrogate-Key\nw hello",
		"b Surrogate-Key:k\nb Content-Length:5\nd Content-Length\nd Surrogate-Key\nw <html>x</html>",
		"p Etag:\"mine\"\np X-Pre:1\nb Etag:\"v1\"\nb Content-Type:text/html\nd Content-Type\nc 304",
		"b Bad Name:x\nb X-Crlf:a\r\nb: c\nb X-Sp:  padded \t\nn X-Sp\nw body",
		"b Transfer-Encoding:chunked\nb Content-Length:3\nb Connection:close\nw abc",
		"b Trailer:X-T\nb Link:</a>\nc 103\nw one\ns X-T:t",
		"b Content-Length:abc\nb Date:Mon, 07 Dec 2026 05:00:00 GMT\nw hi",
		"b Upgrade:x\nb Connection:Upgrade\nd Connection\nc 412",
		"n Content-Type\nn Date\nb X:1\nw <html>",
		"b Trailer:Content-Length, X-A\nb Trailer:x-b\nw " + strings.Repeat("z", 3000) + "\ns X-A:a",
	} {
		f.Add(s)
	}
	var script atomic.Pointer[string]
	handler := func(t *testing.T, w http.ResponseWriter, s string) {
		base := http.Header{}
		var o *overBase
		over := func() {
			if o == nil {
				o = newOverBase(t, w, base)
			}
		}
		field := func(arg string) (string, string) {
			name, value, _ := strings.Cut(arg, ":")
			return name, value
		}
		for _, line := range strings.Split(s, "\n") {
			op, arg, _ := strings.Cut(line, " ")
			switch op {
			case "p":
				if o == nil {
					name, value := field(arg)
					w.Header()[name] = []string{value}
				}
			case "b":
				if o == nil {
					name, value := field(arg)
					base[name] = append(base[name], value)
				}
			case "s":
				over()
				name, value := field(arg)
				w.Header()[name] = []string{value}
			case "n":
				over()
				w.Header()[arg] = nil
			case "d":
				over()
				o.drop(arg)
			case "c":
				over()
				switch arg {
				case "103", "200", "204", "206", "304", "404", "412":
					code := 0
					for _, c := range arg {
						code = code*10 + int(c-'0')
					}
					w.WriteHeader(code)
				}
			case "w":
				over()
				io.WriteString(w, arg)
			}
		}
		over()
	}
	var tt atomic.Pointer[testing.T]
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := *script.Load()
		if r.URL.Path == "/copying" {
			w = copying{w}
		}
		handler(tt.Load(), w, s)
	})
	fast := newFastMissServer(f, h, watchAfter)
	f.Fuzz(func(t *testing.T, s string) {
		tt.Store(t)
		script.Store(&s)
		for _, method := range []string{"GET", "HEAD"} {
			got := rawAnswer(t, fast, method+" /base HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
			want := rawAnswer(t, fast, method+" /copying HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
			if !bytes.Equal(got, want) {
				t.Fatalf("%s %q:\ncopied    %q\nover base %q", method, s, want, got)
			}
		}
	})
}
