package certs

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Watched is a value loaded from files and kept current as a Source
// keeps its certificates (the cluster's link certificate and CA are
// one): the files are checked every interval for a change of
// modification time or size, and on a change, or on Reload, the value is
// loaded again. A load that fails keeps the running value; the poll logs
// its error once per change of the files, Reload returns it. Get takes
// no lock.
type Watched[T any] struct {
	field string
	files []string
	load  func() (T, error)
	log   *slog.Logger
	ticks func(time.Duration) (<-chan time.Time, func())

	cur atomic.Pointer[T]
	// mu serializes loads and guards stamps (of the files the running
	// or last refused value was read from).
	mu     sync.Mutex
	stamps []fileStamp

	startOnce sync.Once
	closeOnce sync.Once
	stop      chan struct{}
	wg        sync.WaitGroup
}

// fileStamp is what a poll compares of one file; the zero value is a
// missing file.
type fileStamp struct {
	mod  time.Time
	size int64
}

// statFile stamps a file; ok is false when it cannot be read.
func statFile(path string) (s fileStamp, ok bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, false
	}
	return fileStamp{fi.ModTime(), fi.Size()}, true
}

// statFiles stamps every file (a missing one with the zero stamp).
func statFiles(files []string) []fileStamp {
	out := make([]fileStamp, len(files))
	for i, f := range files {
		out[i], _ = statFile(f)
	}
	return out
}

// tickerFunc is opt.Ticks, or a time.Ticker when nil.
func tickerFunc(opt Options) func(time.Duration) (<-chan time.Time, func()) {
	if opt.Ticks != nil {
		return opt.Ticks
	}
	return func(d time.Duration) (<-chan time.Time, func()) {
		t := time.NewTicker(d)
		return t.C, t.Stop
	}
}

// Watch loads a value from files with load (field names it in logs, as
// "cluster.tls"); an error of this first load is returned. Start begins
// the poll.
func Watch[T any](field string, files []string, load func() (T, error), opt Options) (*Watched[T], error) {
	w := &Watched[T]{field: field, files: slices.Clone(files), load: load, log: opt.Logger, ticks: tickerFunc(opt), stop: make(chan struct{})}
	if w.log == nil {
		w.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	w.stamps = statFiles(w.files)
	v, err := load()
	if err != nil {
		return nil, err
	}
	w.cur.Store(&v)
	return w, nil
}

// Start checks the files every interval (opt.Ticks is the clock, as for
// a Source) until Close; with interval 0 or less only Reload loads
// again. It is a no-op after the first call or after Close.
func (w *Watched[T]) Start(interval time.Duration) {
	w.startOnce.Do(func() {
		select {
		case <-w.stop:
			return
		default:
		}
		if interval <= 0 {
			return
		}
		ticks, stopTicks := w.ticks(interval)
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			defer stopTicks()
			for {
				select {
				case <-w.stop:
					return
				case <-ticks:
					w.poll()
				}
			}
		}()
	})
}

// Get is the running value.
func (w *Watched[T]) Get() T { return *w.cur.Load() }

// Reload loads the value again now, whether or not the files changed
// (SIGHUP). On error the running value stays.
func (w *Watched[T]) Reload() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stamps = statFiles(w.files)
	v, err := w.load()
	if err != nil {
		return fmt.Errorf("%w (the running one is kept)", err)
	}
	w.cur.Store(&v)
	w.log.Info("reloaded", "field", w.field)
	return nil
}

// poll loads the value again if a file changed since the last load.
func (w *Watched[T]) poll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := statFiles(w.files)
	if slices.Equal(st, w.stamps) {
		return
	}
	w.stamps = st
	v, err := w.load()
	if err != nil {
		w.log.Error("changed files refused; the running ones are kept", "field", w.field, "err", err)
		return
	}
	w.cur.Store(&v)
	w.log.Info("reloaded after a change of its files", "field", w.field)
}

// Close stops the poll. Safe to call more than once.
func (w *Watched[T]) Close() {
	w.closeOnce.Do(func() {
		w.startOnce.Do(func() {}) // no poll starts after Close
		close(w.stop)
		w.wg.Wait()
	})
}
