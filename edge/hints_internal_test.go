package edge

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// blockedHintWriter is a client whose 103 write does not return until
// released: a slow or stalled client.
type blockedHintWriter struct {
	h       http.Header
	hinted  chan struct{}
	release chan struct{}
	once    sync.Once
}

func (w *blockedHintWriter) Header() http.Header         { return w.h }
func (w *blockedHintWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *blockedHintWriter) WriteHeader(code int) {
	if code == http.StatusEarlyHints {
		w.once.Do(func() { close(w.hinted) })
		<-w.release
	}
}

// A 103 Early Hints relayed to a leader whose client does not read must
// not hold a lock that other requests need: while it is being written,
// a request joining the same fill and a miss on another key are served
// (the hint used to be written under the flight's lock, which a joiner
// waits for while holding the handler's).
func TestEarlyHintNotWrittenUnderLock(t *testing.T) {
	finish := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		if r.URL.Path == "/hinted" {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			<-finish
		}
		io.WriteString(w, "body")
	}))
	defer origin.Close()
	h, err := New(Config{Sites: []SiteConfig{{Hosts: []string{"site.test"}, Origin: origin.URL, Timeout: 10 * time.Second}}},
		Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	leader := &blockedHintWriter{h: http.Header{}, hinted: make(chan struct{}), release: make(chan struct{})}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(finish) // before the wait: the fill ends, and its waiters
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.ServeHTTP(leader, httptest.NewRequest("GET", "http://site.test/hinted", nil))
	}()
	select {
	case <-leader.hinted:
	case <-time.After(10 * time.Second):
		t.Fatal("no 103 relayed to the leader")
	}
	released := false
	defer func() {
		if !released {
			close(leader.release)
		}
	}()
	joined := make(chan struct{})
	wg.Add(1)
	go func() { // joins the fill, and waits for it
		defer wg.Done()
		defer close(joined)
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "http://site.test/hinted", nil))
	}()
	other := make(chan int, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "http://site.test/other", nil))
		other <- rec.Code
	}()
	select {
	case code := <-other:
		if code != http.StatusOK {
			t.Fatalf("miss on another key: %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a miss on another key waited on a stalled client's 103")
	}
	close(leader.release)
	released = true
}
