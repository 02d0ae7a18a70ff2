package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/internal/poll"
)

// Issue 20: `meridian edge` reopens its access log file on SIGUSR1, the
// logrotate convention: after the file is moved away and the signal
// sent, lines go to a new file at the configured path, and the moved one
// gets no more.
func TestEdgeReopensAccessLogOnSIGUSR1(t *testing.T) {
	dir := t.TempDir()
	origin := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "rotate me")
	})}
	oln := listenLoopback(t)
	go origin.Serve(oln)
	defer origin.Close()
	logPath := filepath.Join(dir, "access.log")
	cfgPath := filepath.Join(dir, "edge.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`name: sig-edge
listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
access_log:
  destination: %s
  format: combined
sites:
  - hosts: [sig.test]
    origin: http://%s
`, logPath, oln.Addr())), 0o600)

	cmd, waitLog := startEdgeProcess(t, cfgPath)
	addr, _ := waitLog("edge node started")["http"].(string)
	get := func() {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+"/obj", nil)
		req.Host = "sig.test"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	lines := func(p string) int {
		b, _ := os.ReadFile(p)
		return strings.Count(string(b), "\n")
	}
	waitLines := func(p string, n int) {
		t.Helper()
		poll.Until(t, 10*time.Second, fmt.Sprintf("%s has %d lines", p, n), func() bool { return lines(p) == n })
	}
	get()
	get()
	waitLines(logPath, 2)
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitLog("logs reopened")
	get()
	waitLines(logPath, 1)
	if n := lines(logPath + ".1"); n != 2 {
		t.Fatalf("the rotated file has %d lines, want the 2 from before the signal", n)
	}
	b, _ := os.ReadFile(logPath)
	if !strings.HasPrefix(string(b), "127.0.0.1 - - [") || !strings.Contains(string(b), `"GET /obj HTTP/1.1" 200 9 "-" "Go-http-client/1.1"`) {
		t.Fatalf("new file: %q", b)
	}
}

// listenLoopback listens on a free loopback port.
func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startEdgeProcess runs `meridian edge --config cfgPath` as a child
// process (this test binary, re-entered through MERIDIAN_TEST_ARGS) with
// a JSON process log, stopped with SIGTERM when the test ends. waitLog
// returns the next log line whose msg is msg, failing the test if the
// process exits first or none comes within a minute of the start.
func startEdgeProcess(t *testing.T, cfgPath string) (cmd *exec.Cmd, waitLog func(msg string) map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd = exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "MERIDIAN_TEST_ARGS=edge --config "+cfgPath+" --log-format json")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		cancel()
	})
	logs := make(chan map[string]any, 64)
	var other []string // lines that are no log line: why it exited
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				logs <- m
			} else {
				other = append(other, sc.Text())
			}
		}
		close(logs)
	}()
	waitLog = func(msg string) map[string]any {
		t.Helper()
		for {
			select {
			case m, ok := <-logs:
				if !ok {
					t.Fatalf("the edge exited before logging %q:\n%s", msg, strings.Join(other, "\n"))
				}
				if m["msg"] == msg {
					return m
				}
			case <-ctx.Done():
				t.Fatalf("no %q in the edge's log", msg)
			}
		}
	}
	return cmd, waitLog
}
