//go:build !linux

package store

import (
	"os"
	"syscall"
)

// sendFile is sendfile(2) where the tier uses it (Linux); elsewhere the
// caller copies.
func sendFile(dst syscall.Conn, f *os.File, off, n int64) (int64, error, bool) {
	return 0, nil, false
}
