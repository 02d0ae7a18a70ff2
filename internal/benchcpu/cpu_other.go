//go:build !unix

package benchcpu

import "time"

// processCPU is not known here: Report then reports nothing.
func processCPU() time.Duration { return 0 }
