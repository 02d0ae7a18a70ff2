package geo

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

// probeLoop probes every edge each interval, feeds the results to the
// health state and publishes a new view, until ctx is done. It owns the
// health state.
func (s *Service) probeLoop(ctx context.Context) {
	h := newHealth(s.cfg.Probe, s.cfg.Regions, s.now())
	t := time.NewTicker(s.cfg.Probe.Interval)
	defer t.Stop()
	for {
		ok := s.probeRound(ctx)
		if ctx.Err() != nil {
			return // a round cut short by shutdown is no evidence
		}
		for _, e := range h.observe(ok, s.now()) {
			s.logEvent(e)
		}
		s.view.Store(h.view())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probeRound probes every edge at once and waits for all of them (each
// bounded by the probe timeout).
func (s *Service) probeRound(ctx context.Context) [][]bool {
	ok := make([][]bool, len(s.regions))
	var wg sync.WaitGroup
	for i, r := range s.regions {
		ok[i] = make([]bool, len(r.Edges))
		for j, addr := range r.Edges {
			wg.Go(func() { ok[i][j] = s.probe(ctx, addr) })
		}
	}
	wg.Wait()
	return ok
}

// probeHost is the Host header of every probe: a name no site can serve
// (.invalid is reserved, RFC 2606), so that an edge answers /healthz for
// itself rather than passing the probe to a site's origin. Probing
// through a site would measure the origin: an origin outage would take
// every edge, and so every region, down at once.
const probeHost = "geo-probe.invalid"

// probe reports whether GET http://addr/<path> (Host: probeHost) answers
// 2xx within the timeout.
func (s *Service) probe(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Probe.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+s.cfg.Probe.Path, nil)
	if err != nil {
		return false
	}
	req.Host = probeHost
	req.Header.Set("User-Agent", "meridian-geo-probe")
	resp, err := s.transport.RoundTrip(req)
	if err != nil {
		return false
	}
	// Drain a little so the connection can be reused, then close.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode <= 299
}

func (s *Service) logEvent(e event) {
	if e.edge != "" {
		s.log.Info("edge "+e.to, "region", e.region, "edge", e.edge, "was", e.from)
		return
	}
	lvl := s.log.Info
	if e.to == StateDown.String() {
		lvl = s.log.Warn
	}
	lvl("region "+e.to, "region", e.region, "was", e.from, "detail", e.detail)
}
