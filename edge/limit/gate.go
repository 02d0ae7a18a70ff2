package limit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// GateConfig caps the requests in flight on a whole listener. Its zero
// value caps nothing; every field documents its default, filled in by
// [GateConfig.WithDefaults], and [GateConfig.Validate] names the field of
// any mistake.
type GateConfig struct {
	// MaxConcurrent is how many requests may be in flight at once.
	// Default 0: no cap.
	MaxConcurrent int `yaml:"max_concurrent"`
	// MaxQueue is how many more may wait for one to end; past that they
	// are refused at once. Default: as many as MaxConcurrent, since a
	// longer queue would rarely be served within queue_timeout unless
	// requests take less than half of it. -1: no queue.
	MaxQueue int `yaml:"max_queue"`
	// QueueTimeout bounds a request's wait; then it is refused (503 with
	// Retry-After). Default 1s: a burst passes, and a refused caller
	// hears so long before its own timeouts.
	QueueTimeout time.Duration `yaml:"queue_timeout"`

	// Name labels the gate's metrics. Default "default". Not read from
	// YAML.
	Name string `yaml:"-"`
}

// WithDefaults returns a copy of c with every unset field at its default.
func (c GateConfig) WithDefaults() GateConfig {
	if c.MaxQueue == 0 {
		c.MaxQueue = c.MaxConcurrent
	}
	if c.QueueTimeout == 0 {
		c.QueueTimeout = time.Second
	}
	if c.Name == "" {
		c.Name = "default"
	}
	return c
}

// Validate reports every mistake in c, each naming its field. Zero values
// are fine: they mean the default.
func (c GateConfig) Validate() error {
	var errs []error
	if c.MaxConcurrent < 0 {
		errs = append(errs, fmt.Errorf("max_concurrent: negative (%d)", c.MaxConcurrent))
	}
	if c.MaxQueue < -1 {
		errs = append(errs, fmt.Errorf("max_queue: %d: want a count, or -1 for no queue", c.MaxQueue))
	}
	if c.QueueTimeout < 0 {
		errs = append(errs, fmt.Errorf("queue_timeout: negative (%v)", c.QueueTimeout))
	}
	return errors.Join(errs...)
}

// ErrOverloaded is what Gate.Acquire returns (wrapped) when the gate is
// at its cap and the request cannot wait: the queue is full or the wait
// ran out. Test with errors.Is.
var ErrOverloaded = errors.New("too many requests in flight")

var (
	errGateFull    = fmt.Errorf("%w: queue full", ErrOverloaded)
	errGateTimeout = fmt.Errorf("%w: none ended within queue_timeout", ErrOverloaded)
)

// Gate caps the requests in flight, with a FIFO queue of bounded length
// and wait. A gate without a cap (max_concurrent 0) admits everything. It is
// safe for concurrent use and holds no lock.
type Gate struct {
	cfg        GateConfig
	sem        chan struct{} // a token per request in flight; nil: no cap
	waiting    atomic.Int64
	retryAfter string // seconds, for 503s

	refusedFull, refusedTimeout atomic.Uint64
}

// NewGate validates cfg and returns its gate.
func NewGate(cfg GateConfig) (*Gate, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gate: %w", err)
	}
	cfg = cfg.WithDefaults()
	g := &Gate{cfg: cfg, retryAfter: retryAfterSeconds(cfg.QueueTimeout)}
	if cfg.MaxConcurrent > 0 {
		g.sem = make(chan struct{}, cfg.MaxConcurrent)
	}
	return g, nil
}

// retryAfterSeconds rounds d up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(max(1, int64(math.Ceil(d.Seconds()))), 10)
}

// Acquire admits one request, waiting in the queue if the gate is at its
// cap. It returns an error wrapping ErrOverloaded when the queue is full
// or the wait runs out, and ctx's error if ctx ends first. Each nil return
// must be matched by one Release.
func (g *Gate) Acquire(ctx context.Context) error {
	if g.sem == nil {
		return nil
	}
	select {
	case g.sem <- struct{}{}:
		return nil
	default:
	}
	if g.waiting.Add(1) > int64(max(g.cfg.MaxQueue, 0)) {
		g.waiting.Add(-1)
		g.refusedFull.Add(1)
		return errGateFull
	}
	defer g.waiting.Add(-1)
	timer := time.NewTimer(g.cfg.QueueTimeout)
	defer timer.Stop()
	// Blocked senders on a channel are served in order: the queue is FIFO.
	select {
	case g.sem <- struct{}{}:
		return nil
	case <-timer.C:
		g.refusedTimeout.Add(1)
		return errGateTimeout
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Release ends a request that Acquire admitted.
func (g *Gate) Release() {
	if g.sem != nil {
		<-g.sem
	}
}

// Handler returns next behind the gate: a request past the cap waits for
// one to end, and is answered 503 with Retry-After when it cannot. A
// request counts until next returns, streamed body included.
func (g *Gate) Handler(next http.Handler) http.Handler {
	if g.sem == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.Acquire(r.Context()); err != nil {
			w.Header().Set("Retry-After", g.retryAfter)
			http.Error(w, "503 service unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		defer g.Release()
		next.ServeHTTP(w, r)
	})
}

// GateStats is a snapshot of a gate.
type GateStats struct {
	// InFlight counts the requests admitted and not yet released; Queued
	// those waiting.
	InFlight, Queued int
	// RefusedFull counts requests refused because the queue was full,
	// RefusedTimeout those whose wait ran out.
	RefusedFull, RefusedTimeout uint64
}

// Stats returns the gate's counts now.
func (g *Gate) Stats() GateStats {
	return GateStats{InFlight: len(g.sem), Queued: int(g.waiting.Load()),
		RefusedFull: g.refusedFull.Load(), RefusedTimeout: g.refusedTimeout.Load()}
}
