package edge_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/origin"
)

// An origin that hangs, resets, truncates its body or sends an invalid
// status line: the client gets a clean error within the timeout, nothing
// partial is stored, and the edge keeps serving.
func TestBrokenOriginGivesCleanErrors(t *testing.T) {
	demo := origin.NewDemo(nil)
	defer demo.Close()
	osrv := httptest.NewServer(demo)
	defer osrv.Close()
	cfg := edge.Config{
		Listen: "127.0.0.1:0",
		Sites: []edge.SiteConfig{{
			Hosts:   []string{testHost},
			Origin:  osrv.URL,
			Timeout: 500 * time.Millisecond,
			Pool:    origin.PoolConfig{Retries: -1},
		}},
	}
	h, err := edge.New(cfg, edge.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	pub := httptest.NewServer(h)
	defer pub.Close()
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(target string) (int, string, error) {
		req, _ := http.NewRequest("GET", pub.URL+target, nil)
		req.Host = testHost
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	cases := []struct {
		mode  string
		codes []int
	}{
		{"hang", []int{504}},
		{"reset", []int{502}},
		{"badstatus", []int{502}},
		{"truncate", nil}, // headers were fine: the client sees a short body, never a complete one
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			target := "/broken-" + tc.mode + "?cc=max-age%3D600&size=10000&fail=" + tc.mode
			for i := 0; i < 2; i++ {
				code, body, err := get(target)
				switch {
				case tc.codes == nil:
					if err == nil && len(body) == 10000 {
						t.Fatalf("a truncated origin body reached the client whole")
					}
				case err != nil:
					t.Fatalf("%s: %v", tc.mode, err)
				case code != tc.codes[0]:
					t.Fatalf("%s: status %d, want %d (%q)", tc.mode, code, tc.codes[0], body)
				}
			}
			if n, _, _ := h.StoreStats(); n != 0 {
				t.Fatalf("%s: %d entries stored from a broken origin", tc.mode, n)
			}
			if code, body, err := get("/healthy?cc=max-age%3D600&size=100"); err != nil || code != 200 || len(body) != 100 {
				t.Fatalf("after %s the edge does not serve: %d %v", tc.mode, code, err)
			}
			h.Purge(edge.Purge{URLs: []string{"http://" + testHost + "/healthy?cc=max-age%3D600&size=100"}})
		})
	}
}

// A body over max_object_bytes streams through without being stored.
func TestLargeObjectStreamsThroughUnstored(t *testing.T) {
	big := strings.Repeat("z", 300<<10)
	e := newEnv(t, respond(200, big, "Cache-Control", "max-age=600"), func(c *edge.Config) {
		c.Cache.MaxObjectBytes = 100 << 10
	})
	for i := 0; i < 2; i++ {
		r, b := e.get("/big")
		wantStatus(t, r, 200)
		wantCS(t, r, "!stored", "!hit")
		if b != big {
			t.Fatalf("big body: %d bytes", len(b))
		}
	}
	if n := e.origin.count("/big"); n != 2 {
		t.Fatalf("origin count %d, want 2 (not stored)", n)
	}
	// A Range on it is passed to the origin rather than cut from a copy.
	r, b := e.get("/big", "Range", "bytes=0-9")
	if r.StatusCode != 200 && r.StatusCode != 206 || (r.StatusCode == 206 && b != "zzzzzzzzzz") {
		t.Fatalf("range on a big object: %d %d bytes", r.StatusCode, len(b))
	}
}

// The store keeps within its byte budget, evicting the least recently used
// of the objects asked once first.
func TestStoreIsByteBounded(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, strings.Repeat("b", 10<<10))
	}, func(c *edge.Config) {
		c.Cache.MaxBytes = 100 << 10
		c.Cache.MaxObjectBytes = 20 << 10
	})
	for i := 0; i < 30; i++ {
		e.get("/obj" + string(rune('a'+i)))
	}
	n, bytes, evicted := e.edge.StoreStats()
	if bytes > 100<<10 {
		t.Fatalf("store holds %d bytes, over its 100 KiB budget", bytes)
	}
	if n < 5 || evicted == 0 {
		t.Fatalf("entries %d, evicted %d", n, evicted)
	}
	// The most recent objects are the ones kept.
	r, _ := e.get("/obj" + string(rune('a'+29)))
	wantCS(t, r, "hit")
	r, _ = e.get("/obja")
	wantCS(t, r, "!hit")
}

// Oversized request headers get 431 and reach nobody.
func TestOversizedHeadersRefused(t *testing.T) {
	e := newEnv(t, respond(200, "x"), func(c *edge.Config) { c.Server.MaxHeaderBytes = 4 << 10 })
	r, _ := e.get("/h", "X-Huge", strings.Repeat("a", 64<<10))
	wantStatus(t, r, http.StatusRequestHeaderFieldsTooLarge)
	if n := e.origin.total.Load(); n != 0 {
		t.Fatalf("origin saw %d requests", n)
	}
}

// A body of unknown length far past max_object_bytes, and past what the
// edge used to buffer (64 MiB), streams to the client whole, and is not
// stored.
func TestUnknownLengthBodyStreamsPastStorableSize(t *testing.T) {
	const total = 68 << 20
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4<<10) // 64 KiB
	e := newEnv(t, chunkedBody(chunk, total), func(c *edge.Config) { c.Cache.MaxObjectBytes = 1 << 20 })
	req, _ := http.NewRequest("GET", e.base+"/huge", nil)
	req.Host = testHost
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	wantStatus(t, resp, 200)
	wantCS(t, resp, "!stored", "!hit")
	buf := make([]byte, len(chunk))
	n := 0
	for {
		m, err := io.ReadFull(resp.Body, buf)
		n += m
		if err == io.EOF {
			break
		}
		if err != nil || !bytes.Equal(buf, chunk) {
			t.Fatalf("after %d bytes: %v (bytes as sent: %v)", n, err, bytes.Equal(buf, chunk))
		}
	}
	if n != total {
		t.Fatalf("%d bytes, want %d", n, total)
	}
	if entries, _, _ := e.edge.StoreStats(); entries != 0 {
		t.Fatalf("%d entries stored", entries)
	}
	if n := e.counter("meridian_edge_streamed_fills_total"); n != 1 {
		t.Fatalf("meridian_edge_streamed_fills_total = %v, want 1", n)
	}
}

// A Range request for a body of unknown length that streams past what
// the edge holds is answered with the whole body, not left waiting for a
// size that only the end of the stream would tell.
func TestRangeOnStreamingBodyGetsWholeBody(t *testing.T) {
	const total = 6 << 20 // the storable 1 MiB plus more than the stream window
	e := newEnv(t, chunkedBody(bytes.Repeat([]byte("r"), 64<<10), total), func(c *edge.Config) { c.Cache.MaxObjectBytes = 1 << 20 })
	r, b := e.get("/stream", "Range", "bytes=0-9")
	if r.StatusCode != 200 || len(b) != total {
		t.Fatalf("Range on a streaming body: %d, %d bytes", r.StatusCode, len(b))
	}
}

// The site's timeout bounds the wait for the response's headers, not a
// body that keeps coming: a fill that takes longer than it in all is
// still stored whole.
func TestSlowFlowingBodyIsNotCutOff(t *testing.T) {
	const chunks, gap = 10, 60 * time.Millisecond // 600 ms in all
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		for i := 0; i < chunks; i++ {
			io.WriteString(w, "0123456789")
			w.(http.Flusher).Flush()
			time.Sleep(gap)
		}
	}, func(c *edge.Config) {
		c.Sites[0].Timeout = 300 * time.Millisecond
		c.Sites[0].ReadTimeout = 5 * time.Second
	})
	r, b := e.get("/slow")
	wantStatus(t, r, 200)
	if len(b) != chunks*10 {
		t.Fatalf("%d bytes, want %d", len(b), chunks*10)
	}
	r, _ = e.get("/slow")
	wantCS(t, r, "hit")
}

// chunkedBody is an origin that sends chunk again and again, total bytes
// in all, without a Content-Length, fresh for ten minutes.
func chunkedBody(chunk []byte, total int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		for n := 0; n < total; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
}
