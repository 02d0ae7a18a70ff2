package edge

import (
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/internal/poll"
)

// workersRunning counts the goroutines running a worker of background.
func workersRunning() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "edge.(*Handler).worker(")
}

func newWorkerTestHandler(t *testing.T, idle time.Duration) *Handler {
	t.Helper()
	h, err := New(Config{Sites: []SiteConfig{{Hosts: []string{"site.test"}, Origin: "http://127.0.0.1:1"}}},
		Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h.workerIdle = idle
	return h
}

// runBackground runs fn through background and waits for it.
func runBackground(t *testing.T, h *Handler, fn func()) {
	t.Helper()
	done := make(chan struct{})
	if !h.background(func() { fn(); close(done) }) {
		t.Fatal("background refused work before Close")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("background work did not run within 10 s")
	}
}

// A worker of background, whose idle timer is no longer reset for every
// piece of work, still ends once a whole idle period passed without
// work; Close ends the idle ones at once, however long their period.
func TestBackgroundWorkersEndWhenIdleOrClosed(t *testing.T) {
	before := workersRunning()
	h := newWorkerTestHandler(t, 20*time.Millisecond)
	for range 100 {
		runBackground(t, h, func() {})
	}
	poll.Until(t, 10*time.Second, "the idle worker ending", func() bool { return workersRunning() == before })
	h.Close()

	h = newWorkerTestHandler(t, time.Hour)
	runBackground(t, h, func() {})
	if workersRunning() == before {
		t.Fatal("no worker waiting for work")
	}
	closed := make(chan struct{})
	go func() {
		h.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end an idle worker within 10 s")
	}
	// Close returns once every worker called workers.Done, which a worker
	// does on its way out: its goroutine may still be on the stack for a
	// moment after.
	poll.Until(t, 10*time.Second, "the workers ending after Close", func() bool { return workersRunning() == before })
}
