package main

import (
	"io"
	"log/slog"
	"runtime/debug"
	"testing"
)

// Issue 13: `meridian edge` sets the Go runtime's soft memory limit from
// the cache budgets, unless the operator set GOMEMLIMIT, which wins.
func TestSetMemoryLimitUnlessGOMEMLIMIT(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	t.Setenv("GOMEMLIMIT", "")
	setMemoryLimit(log, 300<<20)
	if got := debug.SetMemoryLimit(-1); got != 300<<20 {
		t.Fatalf("limit %d, want the budgets' %d", got, 300<<20)
	}

	debug.SetMemoryLimit(1 << 30) // what the runtime read from GOMEMLIMIT=1GiB
	t.Setenv("GOMEMLIMIT", "1GiB")
	setMemoryLimit(log, 300<<20)
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Fatalf("limit %d with GOMEMLIMIT set, want the operator's %d", got, 1<<30)
	}
}
