package store

import (
	"os"
	"syscall"
)

// startWriteback asks the kernel to start writing the file's bytes
// [off, off+n) to the device without waiting (sync_file_range with
// SYNC_FILE_RANGE_WRITE), so that the sync at a spool's commit finds
// little left to write. Best effort: an error changes nothing.
func startWriteback(f *os.File, off, n int64) {
	const syncFileRangeWrite = 2 // SYNC_FILE_RANGE_WRITE
	syscall.SyncFileRange(int(f.Fd()), off, n, syncFileRangeWrite)
}
