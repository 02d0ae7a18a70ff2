//go:build !linux

package store

import "os"

// startWriteback does nothing where sync_file_range(2) is missing: the
// sync at a spool's commit writes the whole body.
func startWriteback(f *os.File, off, n int64) {}
