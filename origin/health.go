package origin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// healthLoop probes every server each interval until ctx is done.
func (p *Pool) healthLoop(ctx context.Context) {
	defer close(p.done)
	t := time.NewTicker(p.cfg.Health.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.Check(ctx)
		}
	}
}

// Check runs one round of active health checks now: it probes every server
// at once and returns when all have answered or timed out, having applied
// the rise/fall rules. The background loop calls it every interval; a caller
// may too (say, after a deploy). It does nothing when health checks are not
// enabled.
func (p *Pool) Check(ctx context.Context) {
	if !p.cfg.Health.Enabled {
		return
	}
	var wg sync.WaitGroup
	for _, s := range p.servers {
		wg.Go(func() {
			err := p.probe(ctx, s)
			if ctx.Err() != nil {
				return // shutting down: the probe says nothing of the server
			}
			p.probed(s, err)
		})
	}
	wg.Wait()
}

// probe sends one health check to s; nil means healthy.
func (p *Pool) probe(ctx context.Context, s *server) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Health.Timeout)
	defer cancel()
	ref, err := url.ParseRequestURI(p.cfg.Health.Path)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	u := *s.url
	u.Path, u.RawPath, u.RawQuery = ref.Path, ref.RawPath, ref.RawQuery
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	if s.cfg.Host != "" {
		req.Host = s.cfg.Host
	}
	req.Header.Set("User-Agent", "meridian-health-check")
	resp, err := s.probes.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	if resp.StatusCode != p.cfg.Health.ExpectedStatus {
		return fmt.Errorf("health check: status %d, want %d", resp.StatusCode, p.cfg.Health.ExpectedStatus)
	}
	return nil
}

// probed applies one probe's result: fall failures in a row mark s down,
// rise successes in a row bring it back.
func (p *Pool) probed(s *server, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		s.probeFails = 0
		s.probeOKs++
		if !s.healthy && s.probeOKs >= p.cfg.Health.Rise {
			s.healthy = true
			p.log.Info("origin server up", "server", s.name, "checks", s.probeOKs)
		}
		return
	}
	s.probeOKs = 0
	s.probeFails++
	s.failed(p.now(), err)
	if s.healthy && s.probeFails >= p.cfg.Health.Fall {
		s.healthy = false
		p.log.Warn("origin server down", "server", s.name, "checks", s.probeFails, "err", err)
	}
}
