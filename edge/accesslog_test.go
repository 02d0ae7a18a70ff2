package edge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/listen"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// Every request, hits included and on either front, leaves one JSON
// access log line.
func TestAccessLogOneLinePerRequest(t *testing.T) {
	origin := httptest.NewServer(respond(200, "logged", "Cache-Control", "max-age=60"))
	defer origin.Close()
	for _, front := range []string{edge.FrontNetHTTP, edge.FrontFast} {
		t.Run(front, func(t *testing.T) {
			var buf syncBuffer
			cfg := edge.Config{Listen: "127.0.0.1:0", Server: edge.ServerConfig{Front: front},
				Sites: []edge.SiteConfig{{Hosts: []string{testHost}, Origin: origin.URL}}}
			h, err := edge.New(cfg, edge.Options{AccessLog: slog.New(slog.NewJSONHandler(&buf, nil)),
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			srv := listen.NewServer(cfg, h, listen.Options{})
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(ctx)
			}()
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			for i := 0; i < 3; i++ {
				req, _ := http.NewRequest("GET", "http://"+srv.Addr()+"/log", nil)
				req.Host = testHost
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			// A line is written as the handler returns, which may be just
			// after the client has the whole answer.
			waitFor(t, func() bool { return len(buf.lines()) >= 3 })
			lines := buf.lines()
			if len(lines) != 3 {
				t.Fatalf("%d access log lines for 3 requests: %v", len(lines), lines)
			}
			last := lines[2]
			if last["uri"] != "/log" || last["status"] != float64(200) || last["host"] != testHost ||
				!strings.Contains(last["cache_status"].(string), "hit") || last["bytes"] != float64(6) {
				t.Fatalf("hit's access line: %v", last)
			}
			if !strings.Contains(lines[0]["cache_status"].(string), "fwd=uri-miss") {
				t.Fatalf("miss's access line: %v", lines[0])
			}
		})
	}
}
