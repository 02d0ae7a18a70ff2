package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/origin"
)

func TestMemory(t *testing.T) {
	demo := origin.NewDemo(nil)
	org := httptest.NewServer(demo)
	defer org.Close()
	defer demo.Close()
	debug := httptest.NewServer(DebugHandler())
	defer debug.Close()

	s, err := Memory(context.Background(), MemoryConfig{
		BaseURL:  org.URL,
		Host:     "bench.test",
		Prefix:   "/mem/t/",
		Objects:  50,
		Size:     2048,
		Conns:    4,
		PIDs:     []int{os.Getpid()},
		Dir:      t.TempDir(),
		DebugURL: debug.URL + "/debug/memstats",
		Settle:   time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Tool != "memory" || s.Objects != 50 || s.BodyBytes != 50*2048 {
		t.Errorf("Memory = %+v", s)
	}
	// The demo origin stands for the cache here: every object is asked
	// for twice, the fill and then the hit.
	if got := demo.Requests(); got != 100 {
		t.Errorf("origin served %d requests, want 100 (each object filled, then hit)", got)
	}
	if got := demo.RequestsFor("/mem/t/49?size=2048&cc=max-age%3D3600"); got != 2 {
		t.Errorf("object 49 fetched %d times, want 2", got)
	}
	if want := float64(s.PSSDelta+s.FilesDelta-s.BodyBytes) / 50; s.BytesPerObject != want {
		t.Errorf("BytesPerObject = %v, want %v", s.BytesPerObject, want)
	}
	if want := float64(s.HeapDelta-s.BodyBytes) / 50; s.HeapBytesPerObject != want {
		t.Errorf("HeapBytesPerObject = %v, want %v", s.HeapBytesPerObject, want)
	}

	// A body of the wrong size, or a missing server, is an error.
	if _, err := Memory(context.Background(), MemoryConfig{BaseURL: org.URL, Prefix: "/m/", Objects: 2, Size: 10,
		PIDs: []int{os.Getpid()}, Settle: time.Millisecond}); err != nil {
		t.Errorf("10-byte objects: %v", err)
	}
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "short") }))
	defer bad.Close()
	if _, err := Memory(context.Background(), MemoryConfig{BaseURL: bad.URL, Prefix: "/m/", Objects: 2, PIDs: []int{os.Getpid()}, Settle: time.Millisecond}); err == nil {
		t.Error("short bodies: no error")
	}
	for _, cfg := range []MemoryConfig{{Prefix: "/m/", PIDs: []int{1}}, {BaseURL: "http://x", PIDs: []int{1}}, {BaseURL: "http://x", Prefix: "/m/"},
		{BaseURL: "http://x", Prefix: "/m/", PIDs: []int{1}, Objects: -1}} {
		if _, err := Memory(context.Background(), cfg); err == nil {
			t.Errorf("Memory(%+v): no error", cfg)
		}
	}
}

func TestDebugHandler(t *testing.T) {
	srv := httptest.NewServer(DebugHandler())
	defer srv.Close()
	m, err := ReadMemStats(context.Background(), srv.URL+"/debug/memstats?gc=1")
	if err != nil {
		t.Fatal(err)
	}
	if m.HeapAlloc == 0 || m.Sys == 0 || m.NumGC == 0 {
		t.Errorf("memstats after a GC = %+v", m)
	}
	resp, err := http.Get(srv.URL + "/debug/pprof/profile?seconds=1")
	if err != nil {
		t.Fatal(err)
	}
	prof, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(prof) < 2 || prof[0] != 0x1f || prof[1] != 0x8b {
		t.Errorf("profile: %s, %d bytes, want a gzipped pprof", resp.Status, len(prof))
	}
	resp, err = http.Get(srv.URL + "/debug/pprof/allocs")
	if err != nil {
		t.Fatal(err)
	}
	prof, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(prof) < 2 || prof[0] != 0x1f || prof[1] != 0x8b {
		t.Errorf("allocs: %s, %d bytes, want a gzipped pprof", resp.Status, len(prof))
	}
	for _, u := range []string{"/debug/pprof/profile?seconds=0", "/debug/pprof/profile?seconds=x"} {
		resp, err := http.Get(srv.URL + u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %s, want 400", u, resp.Status)
		}
	}
	if _, err := ReadMemStats(context.Background(), srv.URL+"/nothing"); err == nil {
		t.Error("ReadMemStats of a 404: no error")
	}
}
