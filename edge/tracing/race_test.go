//go:build race

package tracing_test

// raceEnabled: the race detector's build allocates where a plain one
// does not (crypto/rand's read), so allocation counts are not checked.
const raceEnabled = true
