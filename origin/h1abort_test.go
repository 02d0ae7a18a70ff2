package origin

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slotContext is a context that is no cancelCtx and registers one
// AfterFunc of its own (as the edge's fill contexts do): a context the
// lean client must abort its exchange through.
type slotContext struct {
	context.Context // Background: values and deadline
	done            chan struct{}
	mu              sync.Mutex
	ended           bool
	slot            func()
	registered      atomic.Int32
}

func newSlotContext() *slotContext {
	return &slotContext{Context: context.Background(), done: make(chan struct{})}
}

func (c *slotContext) Done() <-chan struct{} { return c.done }

func (c *slotContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return context.Canceled
	}
	return nil
}

func (c *slotContext) AfterFunc(f func()) func() bool {
	c.registered.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		go f()
		return func() bool { return false }
	}
	if c.slot != nil {
		panic("slotContext: a second registration at once")
	}
	c.slot = f
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		ok := c.slot != nil
		c.slot = nil
		return ok
	}
}

func (c *slotContext) cancel() {
	c.mu.Lock()
	c.ended = true
	f := c.slot
	c.slot = nil
	c.mu.Unlock()
	close(c.done)
	if f != nil {
		f()
	}
}

// The lean client registers its abort with a context's own AfterFunc
// when it has one: a cancellation while the origin hangs on the headers
// ends the try at once (KindCanceled, not charged to the server), and an
// exchange that ends first stops its registration, so that its
// connection is reused and a later cancellation touches nothing.
func TestLeanClientAbortsThroughContextAfterFunc(t *testing.T) {
	arrived := make(chan struct{}, 1)
	o := startScript(t, func(conn, req int, head string) (string, bool) {
		if strings.HasPrefix(head, "GET /hang ") {
			arrived <- struct{}{}
			return "", false // no answer
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	p := newPool(t, PoolConfig{Servers: []ServerConfig{{URL: o.url}}, Timeout: 10 * time.Second, TryTimeout: 10 * time.Second, ReadTimeout: time.Hour})

	done := newSlotContext()
	req, _ := http.NewRequestWithContext(done, "GET", "http://site.example/ok", nil)
	resp, err := p.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "ok" {
		t.Fatalf("body %q, %v", b, err)
	}
	resp.Body.Close()
	if done.registered.Load() == 0 {
		t.Fatal("the abort was not registered through the context's AfterFunc")
	}
	done.mu.Lock()
	left := done.slot
	done.mu.Unlock()
	if left != nil {
		t.Fatal("the registration outlived its exchange")
	}
	done.cancel() // touches nothing: the idle connection stays usable

	hang := newSlotContext()
	req, _ = http.NewRequestWithContext(hang, "GET", "http://site.example/hang", nil)
	go func() {
		<-arrived
		hang.cancel()
	}()
	if _, err := p.RoundTrip(req); kindOf(err) != KindCanceled {
		t.Fatalf("a try canceled while the origin hangs: %v, want canceled", err)
	}
	if hang.registered.Load() == 0 {
		t.Fatal("the abort was not registered through the context's AfterFunc")
	}
	if st := p.Servers()[0]; st.Failures != 0 {
		t.Errorf("%d failures charged to the server, want none", st.Failures)
	}
	if n := o.accepts.Load(); n != 1 {
		t.Errorf("%d connections, want 1: the first one reused by the hanging try", n)
	}
}
