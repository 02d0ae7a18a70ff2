package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// breakingBody gives the first n bytes of data, then fails as a dead
// peer's connection does.
type breakingBody struct {
	r      io.Reader
	closed bool
}

func breakAfter(data []byte, n int) *breakingBody {
	return &breakingBody{r: io.MultiReader(bytes.NewReader(data[:n]), errReader{io.ErrUnexpectedEOF})}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func (b *breakingBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *breakingBody) Close() error               { b.closed = true; return nil }

func TestResumeBody(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<12) // 64 KiB
	size := int64(len(data))
	const etag = `"v1"`
	answer := func(status int, etag, contentRange string, body []byte) *http.Response {
		h := http.Header{"Etag": {etag}}
		if contentRange != "" {
			h.Set("Content-Range", contentRange)
		}
		return &http.Response{StatusCode: status, Header: h, ContentLength: int64(len(body)), Body: io.NopCloser(bytes.NewReader(body))}
	}
	cases := []struct {
		name  string
		next  func(r *http.Request, from int64) (*http.Response, error)
		whole bool
	}{
		{"206 of the rest", func(r *http.Request, from int64) (*http.Response, error) {
			return answer(206, etag, fmt.Sprintf("bytes %d-%d/%d", from, size-1, size), data[from:]), nil
		}, true},
		{"200 of the same representation", func(r *http.Request, from int64) (*http.Response, error) {
			return answer(200, etag, "", data), nil
		}, true},
		{"broken again, then resumed", func() func(*http.Request, int64) (*http.Response, error) {
			calls := 0
			return func(r *http.Request, from int64) (*http.Response, error) {
				calls++
				resp := answer(206, etag, fmt.Sprintf("bytes %d-%d/%d", from, size-1, size), nil)
				if calls == 1 {
					resp.Body = breakAfter(data[from:], 1000)
				} else {
					resp.Body = io.NopCloser(bytes.NewReader(data[from:]))
				}
				return resp, nil
			}
		}(), true},
		{"another representation", func(r *http.Request, from int64) (*http.Response, error) {
			return answer(200, `"v2"`, "", data), nil
		}, false},
		{"a weak validator", func(r *http.Request, from int64) (*http.Response, error) {
			return answer(206, "W/"+etag, fmt.Sprintf("bytes %d-%d/%d", from, size-1, size), data[from:]), nil
		}, false},
		{"the wrong range", func(r *http.Request, from int64) (*http.Response, error) {
			return answer(206, etag, fmt.Sprintf("bytes %d-%d/%d", from+1, size-1, size), data[from+1:]), nil
		}, false},
		{"another length", func(r *http.Request, from int64) (*http.Response, error) {
			return answer(206, etag, fmt.Sprintf("bytes %d-%d/%d", from, size, size+1), data[from:]), nil
		}, false},
		{"no next source", func(r *http.Request, from int64) (*http.Response, error) {
			return nil, errors.New("origin down")
		}, false},
		{"a 304", func(r *http.Request, from int64) (*http.Response, error) {
			return answer(304, etag, "", nil), nil
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "http://site.test/big", nil)
			req.Header.Set("If-None-Match", `"old"`)
			first := breakAfter(data, 20000)
			broke := 0
			var ranges []string
			b := &resumeBody{ctx: context.Background(), req: req, etag: etag, size: size, cur: first,
				broke: func(error) { broke++ },
				next: func(r *http.Request) (*http.Response, error) {
					if r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Range") != etag {
						t.Errorf("resumption carries If-None-Match %q, If-Range %q", r.Header.Get("If-None-Match"), r.Header.Get("If-Range"))
					}
					ranges = append(ranges, r.Header.Get("Range"))
					var from int64
					fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-", &from)
					return tc.next(r, from)
				}}
			got, err := io.ReadAll(b)
			b.Close()
			if tc.whole {
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("read %d bytes, %v; want the whole body (ranges asked %q)", len(got), err, ranges)
				}
			} else if err == nil || len(got) == len(data) {
				t.Fatalf("read %d bytes, %v; want the break signalled", len(got), err)
			}
			if ranges[0] != "bytes=20000-" || broke < 1 || !first.closed {
				t.Errorf("ranges %q, breaks %d, first body closed %v", ranges, broke, first.closed)
			}
		})
	}
}

// Only streaming 200s with a strong ETag become resumable.
func TestResumableOnlyWithAStrongValidator(t *testing.T) {
	n, err := New(Config{Name: "self", GossipListen: "127.0.0.1:0", PeerListen: "127.0.0.1:0", Secret: testSecret},
		Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	tr := &peerTransport{n: n}
	for _, tc := range []struct {
		etag, rng string
		status    int
		whole     bool
		want      bool
	}{
		{`"a"`, "", 200, false, true},
		{`W/"a"`, "", 200, false, false},
		{``, "", 200, false, false},
		{`"a"`, "", 206, false, false},
		{`"a"`, "bytes=5-", 200, false, false},
		{`"a"`, "", 200, true, false},
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://site.test/x", nil)
		if tc.rng != "" {
			req.Header.Set("Range", tc.rng)
		}
		resp := &http.Response{StatusCode: tc.status, Header: http.Header{"Etag": {tc.etag}}, Body: io.NopCloser(strings.NewReader("x"))}
		if tc.whole {
			resp.Body = wholeBody{bytes.NewReader([]byte("x"))}
		}
		tr.resumable(req, resp, "owner", nil)
		if _, got := resp.Body.(*resumeBody); got != tc.want {
			t.Errorf("%+v: resumable %v, want %v", tc, got, tc.want)
		}
	}
}
