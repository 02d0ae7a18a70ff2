package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/meridiancdn/meridian/edge/node"
)

// Issue 13: `meridian edge` sets the Go runtime's soft memory limit from
// the cache budgets (and, as objects reach the disk tier, its index),
// unless the operator set GOMEMLIMIT, which wins. Read back from the
// process's /status.
func TestSetMemoryLimitUnlessGOMEMLIMIT(t *testing.T) {
	// Each process gets its own config and disk tier (a tier's directory
	// is one process's).
	writeConfig := func() string {
		dir := t.TempDir()
		path := filepath.Join(dir, "edge.yaml")
		os.WriteFile(path, []byte(fmt.Sprintf(`name: mem-edge
listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
access_log:
  destination: "off"
cache:
  max_bytes: 96MiB
  disk:
    path: %s
    max_bytes: 64MiB
sites:
  - hosts: [mem.test]
    origin: http://127.0.0.1:1
`, filepath.Join(dir, "disk"))), 0o600)
		return path
	}
	cfg, err := node.Load(writeConfig())
	if err != nil {
		t.Fatal(err)
	}
	limitOf := func(gomemlimit string) int64 {
		t.Helper()
		t.Setenv("GOMEMLIMIT", gomemlimit)
		_, waitLog := startEdgeProcess(t, writeConfig())
		admin, _ := waitLog("edge node started")["admin"].(string)
		resp, err := http.Get("http://" + admin + "/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st struct {
			Memory struct {
				Limit int64 `json:"limit_bytes"`
			} `json:"memory"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st.Memory.Limit
	}
	if got, want := limitOf(""), cfg.MemoryLimit(); got != want {
		t.Errorf("limit %d, want the budgets' %d (an empty disk tier adds nothing)", got, want)
	}
	if got := limitOf("1GiB"); got != 1<<30 {
		t.Errorf("limit %d with GOMEMLIMIT=1GiB, want the operator's %d", got, 1<<30)
	}
}
