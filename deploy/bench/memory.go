package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// MemoryConfig configures Memory. Its zero value plus BaseURL, Prefix and
// PIDs works.
type MemoryConfig struct {
	// BaseURL is the server, e.g. "http://127.0.0.1:18080". Required.
	BaseURL string
	// Host, when set, is sent as the Host header. Default "".
	Host string
	// Prefix starts every object's path; it must be new to the server,
	// e.g. "/mem/r1-1k/". Required.
	Prefix string
	// Objects is how many distinct objects are cached. Default 10000.
	Objects int
	// Size is each body's size in bytes. Default 1024.
	Size int64
	// Conns is the number of concurrent clients. Default 16.
	Conns int
	// PIDs are the server's root processes; their descendants count too.
	// Required.
	PIDs []int
	// Dir, when set, is the server's on-tmpfs cache directory (nginx),
	// whose files count as its memory. Default "".
	Dir string
	// DebugURL, when set, is a DebugHandler's /debug/memstats in the
	// server (Meridian under `meridian bench edge`), read for the live Go
	// heap. Default "".
	DebugURL string
	// Settle is how long to wait after the last response before measuring,
	// so that a server's cache writes finish. Default 1s.
	Settle time.Duration
	// Proc reads the processes. Default /proc.
	Proc Proc
}

// Memory measures how many bytes a server keeps per cached object beyond
// the body once the object has been hit: it reads the server's memory,
// fetches cfg.Objects new objects of cfg.Size bytes once each (the demo
// origin's ?size=N&cc=max-age%3D3600: the fills), then each once more
// (the hits, since a cache may keep state per object from its first hit
// on, as Meridian's hit stamp), and reads the memory again.
func Memory(ctx context.Context, cfg MemoryConfig) (Sample, error) {
	if cfg.Objects == 0 {
		cfg.Objects = 10000
	}
	if cfg.Size == 0 {
		cfg.Size = 1024
	}
	if cfg.Conns == 0 {
		cfg.Conns = 16
	}
	if cfg.Settle == 0 {
		cfg.Settle = time.Second
	}
	switch {
	case cfg.BaseURL == "":
		return Sample{}, errors.New("memory: base_url: required")
	case cfg.Prefix == "":
		return Sample{}, errors.New("memory: prefix: required")
	case len(cfg.PIDs) == 0:
		return Sample{}, errors.New("memory: pids: required")
	case cfg.Objects < 0 || cfg.Size < 0 || cfg.Conns < 0 || cfg.Settle < 0:
		return Sample{}, errors.New("memory: objects, size, conns and settle must not be negative")
	}
	before, err := memorySnapshot(ctx, cfg)
	if err != nil {
		return Sample{}, err
	}
	for pass := range 2 { // the fills, then a hit on every object
		if err := fetchAll(ctx, cfg); err != nil {
			return Sample{}, fmt.Errorf("memory: %s: %w", [2]string{"filling", "hitting"}[pass], err)
		}
	}
	select {
	case <-time.After(cfg.Settle):
	case <-ctx.Done():
		return Sample{}, ctx.Err()
	}
	after, err := memorySnapshot(ctx, cfg)
	if err != nil {
		return Sample{}, err
	}
	s := Sample{
		Tool:       "memory",
		Objects:    cfg.Objects,
		BodyBytes:  int64(cfg.Objects) * cfg.Size,
		PSSDelta:   after.pss - before.pss,
		FilesDelta: after.files - before.files,
	}
	s.BytesPerObject = float64(s.PSSDelta+s.FilesDelta-s.BodyBytes) / float64(cfg.Objects)
	if cfg.DebugURL != "" {
		s.HeapDelta = after.heap - before.heap
		s.HeapBytesPerObject = float64(s.HeapDelta-s.BodyBytes) / float64(cfg.Objects)
	}
	return s, nil
}

type memSnapshot struct{ pss, files, heap int64 }

func memorySnapshot(ctx context.Context, cfg MemoryConfig) (memSnapshot, error) {
	var m memSnapshot
	if cfg.DebugURL != "" {
		ms, err := ReadMemStats(ctx, cfg.DebugURL+"?gc=1")
		if err != nil {
			return m, fmt.Errorf("memory: %w", err)
		}
		m.heap = int64(ms.HeapAlloc)
	}
	pids, err := cfg.Proc.Tree(cfg.PIDs)
	if err != nil {
		return m, fmt.Errorf("memory: %w", err)
	}
	if m.pss, err = cfg.Proc.PSS(pids); err != nil {
		return m, fmt.Errorf("memory: %w", err)
	}
	if m.files, err = DirBytes(cfg.Dir); err != nil {
		return m, fmt.Errorf("memory: %w", err)
	}
	return m, nil
}

// fetchAll fetches each object once and checks its size.
func fetchAll(ctx context.Context, cfg MemoryConfig) error {
	t := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: cfg.Conns, DisableCompression: true}
	defer t.CloseIdleConnections()
	client := &http.Client{Transport: t, Timeout: 30 * time.Second}
	var next atomic.Int64
	errs := make([]error, cfg.Conns)
	var wg sync.WaitGroup
	for w := range cfg.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(cfg.Objects) {
					return
				}
				u := cfg.BaseURL + cfg.Prefix + strconv.FormatInt(i, 10) +
					"?size=" + strconv.FormatInt(cfg.Size, 10) + "&cc=max-age%3D3600"
				if err := fetchSized(ctx, client, u, cfg.Host, cfg.Size); err != nil {
					errs[w] = err
					return
				}
			}
			errs[w] = ctx.Err()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func fetchSized(ctx context.Context, c *http.Client, u, host string, size int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	if host != "" {
		req.Host = host
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", u, err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%s: %s", u, resp.Status)
	case n != size:
		return fmt.Errorf("%s: body of %d bytes, want %d", u, n, size)
	}
	return nil
}

// MemStats is the JSON that DebugHandler's /debug/memstats serves: a few
// runtime.MemStats fields, in bytes.
type MemStats struct {
	HeapAlloc   uint64 `json:"heap_alloc"`
	HeapInuse   uint64 `json:"heap_inuse"`
	HeapSys     uint64 `json:"heap_sys"`
	HeapObjects uint64 `json:"heap_objects"`
	Sys         uint64 `json:"sys"`
	NumGC       uint32 `json:"num_gc"`
}

// ReadMemStats fetches a DebugHandler's /debug/memstats.
func ReadMemStats(ctx context.Context, u string) (MemStats, error) {
	var m MemStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return m, fmt.Errorf("memstats: %w", err)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return m, fmt.Errorf("memstats: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return m, fmt.Errorf("memstats %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return m, fmt.Errorf("memstats %s: %w", u, err)
	}
	return m, nil
}
