package chaos_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/internal/chaos"
	"github.com/meridiancdn/meridian/origin"
)

// The origin's faults do what they say, and every request is counted.
func TestOriginFaults(t *testing.T) {
	o := chaos.StartOrigin(t)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(target string, timeout time.Duration, kv ...string) (*http.Response, []byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.URL+target, nil)
		for i := 0; i+1 < len(kv); i += 2 {
			req.Header.Set(kv[i], kv[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	if resp, b, err := get("/a?size=10", 5*time.Second); err != nil || resp.StatusCode != 200 || len(b) != 10 {
		t.Fatalf("normal: %v %v", resp, err)
	}
	o.SetFault(chaos.Fault{Status: 500})
	if resp, _, err := get("/a?size=10", 5*time.Second); err != nil || resp.StatusCode != 500 {
		t.Fatalf("status 500: %v %v", resp, err)
	}
	o.SetFault(chaos.Fault{Reset: true})
	if _, _, err := get("/a?size=10", 5*time.Second); err == nil {
		t.Fatal("reset: got an answer")
	}
	o.SetFault(chaos.Fault{Hang: true})
	if _, _, err := get("/a?size=10", 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hang: %v, want the client's deadline", err)
	}
	o.SetFault(chaos.Fault{HeaderDelay: time.Minute})
	if _, _, err := get("/a?size=10", 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow headers: %v, want the client's deadline", err)
	}
	// A slow body stalls half-way; a Range request is answered whole at
	// once, with If-Range honoured.
	o.SetFault(chaos.Fault{BodyStall: time.Minute})
	if resp, b, err := get("/b?size=1000&etag=1", 500*time.Millisecond); err == nil || resp.StatusCode != 200 || len(b) != 500 {
		t.Fatalf("slow body: %d bytes, %v; want 500 then the client's deadline", len(b), err)
	}
	if o.Stalls() != 1 {
		t.Errorf("Stalls() = %d, want 1", o.Stalls())
	}
	resp, b, err := get("/b?size=1000&etag=1", 5*time.Second, "Range", "bytes=600-")
	if err != nil || resp.StatusCode != 206 || !bytes.Equal(b, origin.DemoBody("/b", 1000)[600:]) {
		t.Fatalf("range: %v, %d bytes, %v", resp, len(b), err)
	}
	resp, b, err = get("/b?size=1000&etag=1", 5*time.Second, "Range", "bytes=600-", "If-Range", `"other"`)
	if err != nil || resp.StatusCode != 200 || len(b) != 1000 {
		t.Fatalf("range with another validator: %v, %d bytes, %v; want the whole 200", resp, len(b), err)
	}
	if got := o.Requests(); got != 8 {
		t.Errorf("Requests() = %d, want 8", got)
	}
	if got := o.RequestsFor("/b?size=1000&etag=1"); got != 3 {
		t.Errorf("RequestsFor = %d, want 3", got)
	}
}

// The proxy forwards, refuses, drops and cuts.
func TestProxyLinks(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "through") })}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	p := chaos.StartProxy(t, ln.Addr().String())
	get := func(timeout time.Duration) (string, error) {
		c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + p.Addr() + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if b, err := get(5 * time.Second); err != nil || b != "through" {
		t.Fatalf("forward: %q %v", b, err)
	}
	p.SetLink(chaos.Link{Delay: 50 * time.Millisecond})
	if b, err := get(5 * time.Second); err != nil || b != "through" {
		t.Fatalf("delay: %q %v", b, err)
	}
	p.SetLink(chaos.Link{Refuse: true})
	if _, err := get(5 * time.Second); err == nil {
		t.Fatal("refuse: got an answer")
	}
	p.SetLink(chaos.Link{Drop: true})
	if _, err := get(300 * time.Millisecond); err == nil {
		t.Fatal("drop: got an answer")
	}
	p.SetLink(chaos.Link{})
	if b, err := get(5 * time.Second); err != nil || b != "through" {
		t.Fatalf("restored: %q %v", b, err)
	}
}
