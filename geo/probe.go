package geo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"
)

// probeLoop probes every edge each interval, feeds the results to the
// health state and publishes a new view, until ctx is done. It owns the
// health state.
//
// Each round also probes a local target ([Service.listenSelfCheck]), which
// answers at once unless the prober itself is starved (a saturated core,
// a stalled runtime). When the self-check fails, the round's failures are
// no evidence: they are dropped and the last known state is held, so a
// starved prober does not take healthy regions down; its successes still
// count.
func (s *Service) probeLoop(ctx context.Context) {
	h := newHealth(s.cfg.Probe, s.cfg.Regions, s.now())
	t := time.NewTicker(s.cfg.Probe.Interval)
	defer t.Stop()
	for {
		ok, self := s.probeRound(ctx)
		if ctx.Err() != nil {
			return // a round cut short by shutdown is no evidence
		}
		if !self {
			s.held.Add(1)
			s.log.Warn("probe self-check failed: the prober is starved or broken; failed probes of this round ignored",
				"self_check", s.selfAddr)
		}
		for _, e := range h.observe(ok, !self, s.now()) {
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

// probeRound probes every edge and the self-check target at once and
// waits for all of them (each bounded by the probe timeout, counted from
// when its request was written). self reports the self-check.
func (s *Service) probeRound(ctx context.Context) (ok [][]bool, self bool) {
	ok = make([][]bool, len(s.regions))
	var wg sync.WaitGroup
	for i, r := range s.regions {
		ok[i] = make([]bool, len(r.Edges))
		for j, addr := range r.Edges {
			wg.Go(func() { ok[i][j] = s.probe(ctx, addr) })
		}
	}
	wg.Go(func() { self = s.probe(ctx, s.selfAddr) })
	wg.Wait()
	return ok, self
}

// selfCheckHost is the self-check target's address when the probes go
// through a caller's Transport ([Options.Transport]), which must answer
// it as a healthy edge; with the Service's own transport the target is a
// loopback listener of its own ([Service.Run]).
const selfCheckHost = "geo-self-check.invalid:80"

// listenSelfCheck binds the loopback listener that answers the
// self-check probe (GET /healthz: 200) and serves it until ctx is done.
func (s *Service) listenSelfCheck(ctx context.Context, wg *sync.WaitGroup) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("probe self-check listener: %w", err)
	}
	s.selfAddr = ln.Addr().String()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, "ok\n")
		}),
		ReadHeaderTimeout: time.Second,
	}
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("probe self-check listener stopped", "err", err)
		}
	})
	wg.Go(func() {
		<-ctx.Done()
		srv.Close()
	})
	return nil
}

// probeHost is the Host header of every probe: a name no site can serve
// (.invalid is reserved, RFC 2606), so that an edge answers /healthz for
// itself rather than passing the probe to a site's origin. Probing
// through a site would measure the origin: an origin outage would take
// every edge, and so every region, down at once.
const probeHost = "geo-probe.invalid"

// errProbeTimeout ends a probe that got no answer within the timeout.
var errProbeTimeout = errors.New("probe timeout")

// probe reports whether GET http://addr/<path> (Host: probeHost) answers
// 2xx within the timeout. The timeout counts from when the request was
// written (httptrace WroteRequest), or from the start while it is not:
// a prober whose goroutine ran late must not blame the edge for the wait.
func (s *Service) probe(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(s.cfg.Probe.Timeout, func() { cancel(errProbeTimeout) })
	defer timer.Stop()
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) {
			if ctx.Err() == nil {
				timer.Reset(s.cfg.Probe.Timeout)
			}
		},
	})
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
