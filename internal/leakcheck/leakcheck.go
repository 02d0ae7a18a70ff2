// Package leakcheck is goleak's VerifyTestMain for packages whose tests run
// memberlist: its Shutdown returns before its probe goroutines end (they
// end on their own within a probe timeout), so the check waits for them.
package leakcheck

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// settle is how long goroutines may take to end after the last test: far
// longer than any probe timeout of memberlist's presets, so that what is
// left after it is a real leak.
const settle = 10 * time.Second

// Main runs the tests, then fails the run if goroutines are still running
// once they have had settle to end.
func Main(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(settle)
		err := goleak.Find()
		for err != nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			err = goleak.Find()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "leakcheck: goroutines still running %s after the tests: %v\n", settle, err)
			code = 1
		}
	}
	os.Exit(code)
}
