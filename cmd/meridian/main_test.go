package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
)

// TestMain lets the test binary stand in for the meridian binary in the
// processes a test starts: with MERIDIAN_RUN_MAIN=1 it runs main, with
// its own arguments (see meridianShim); with MERIDIAN_TEST_ARGS set it
// runs `meridian ARGS...`, stopped by SIGINT or SIGTERM.
func TestMain(m *testing.M) {
	if os.Getenv("MERIDIAN_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	if args := os.Getenv("MERIDIAN_TEST_ARGS"); args != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := run(ctx, strings.Fields(args))
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "meridian:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
