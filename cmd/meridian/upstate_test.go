package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// A reader polling for up's state file sees it whole or not at all: with
// os.WriteFile it could read the file between its creation and its
// write, empty (TestStatusPageInChromium failed so: "unexpected end of
// JSON input").
func TestStateFileWrittenWholeOrNotAtAll(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	want := []byte(strings.Repeat(`{"regions": "0123456789abcdef"}`, 2048)) // 64 KiB: more than one write
	var partial atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if b, err := os.ReadFile(path); err == nil && !bytes.Equal(b, want) {
				partial.Add(1)
			}
		}
	}()
	for i := 0; i < 300; i++ {
		os.Remove(path)
		if err := writeFileAtomic(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	<-done
	if n := partial.Load(); n > 0 {
		t.Errorf("a reader saw the state file partly written %d times", n)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("state file: %v, mode %v; want 0644", err, fi.Mode())
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".state.json.*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if err := writeFileAtomic(filepath.Join(dir, "no-such-dir", "state.json"), want, 0o644); err == nil {
		t.Error("writing into a missing directory: no error")
	}
}
