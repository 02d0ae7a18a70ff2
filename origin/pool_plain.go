package origin

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// roundTripPlain is RoundTrip for a plain request (see plainRequest) to a
// pool of plain http:// servers, through the lean client: the same
// choice of servers, slots, retries, errors, outlier detection, breaker
// and metrics, without a context or timer of the pool's. The pool's timeout
// is a deadline: it bounds the waits for a slot and, with try_timeout, each
// try's connection deadline.
func (p *Pool) roundTripPlain(req *http.Request, host string, target requestTarget) (*http.Response, error) {
	parent := req.Context()
	// One reading of the clock serves the first try's deadlines and its
	// idle connection's expiry (a miss read it six times on its way to
	// the origin; time.Now is about 150 ns here under virtualization).
	now := time.Now()
	deadline := now.Add(p.cfg.Timeout)
	var triedBuf [8]bool
	tried := triedBuf[:0]
	if len(p.servers) <= len(triedBuf) {
		tried = triedBuf[:len(p.servers)]
	} else {
		tried = make([]bool, len(p.servers))
	}
	queueLeft := p.cfg.QueueTimeout // for slots, over every try
	var last *Error
	for attempt := 0; attempt <= max(p.cfg.Retries, 0); attempt++ {
		s := p.pick(tried)
		if s == nil {
			break
		}
		tried[s.idx] = true
		if attempt > 0 {
			p.metrics.retries.Inc()
		}
		if attempt > 0 {
			now = time.Now()
		}
		left := deadline.Sub(now)
		waited, err := s.slots.acquire(parent, min(queueLeft, left))
		byPool := err == errQueueTimeout && left < queueLeft // the pool's timeout ended the wait
		queueLeft -= waited
		if err != nil {
			last = p.refused(parent, s, err, byPool)
			last.Tries = attempt + 1
			if last.Kind == KindOverloaded && !byPool && parent.Err() == nil {
				continue // never sent: another server may have a slot
			}
			break
		}
		if waited > 0 {
			now = time.Now()
		}
		resp, terr := p.tryPlain(parent, req, s, host, target, now, deadline, p.canRetry(attempt, tried))
		if terr == nil {
			p.settle(resp.StatusCode < 500)
			s.slots.setHTTP2(false) // plain TCP: HTTP/1, whatever its status line says
			if resp.Body == http.NoBody {
				s.slots.release()
			}
			return resp, nil
		}
		s.slots.release()
		terr.Tries = attempt + 1
		last = terr.Error
		if parent.Err() != nil || !time.Now().Before(deadline) {
			break
		}
	}
	if last == nil { // unreachable: a pool has a server
		last = &Error{Kind: KindUnavailable, Pool: p.cfg.Name, Err: errors.New("no server to try")}
	}
	p.settleErr(last.Kind)
	return nil, last
}

// tryPlain sends req to s once through the lean client, by the pool's
// deadline or, when another server could take over (failover, see
// canRetry), by the sooner of it and try_timeout from now (the time the
// try starts); on error it is classified and counted as try's errors
// are.
func (p *Pool) tryPlain(parent context.Context, req *http.Request, s *server, host string, target requestTarget, now, poolDeadline time.Time, failover bool) (*http.Response, *tryError) {
	deadline, cause := poolDeadline, errPoolTimeout
	if d := now.Add(p.cfg.TryTimeout); failover && d.Before(deadline) {
		deadline, cause = d, errTryTimeout
	}
	switch {
	case s.cfg.Host != "":
		host = s.cfg.Host
	case host == "":
		host = s.url.Host
	}
	start := p.now()
	resp, err := p.h1RoundTrip(parent, req, s, host, target, now, deadline)
	elapsed := p.now().Sub(start)
	if err != nil {
		var kind Kind
		switch {
		case errors.Is(parent.Err(), context.DeadlineExceeded):
			kind = KindTimeout
		case parent.Err() != nil:
			kind = KindCanceled
		default:
			bg := context.Background()
			kind = classify(err, bg, bg, bg)
			if kind == KindTimeout && !time.Now().Before(deadline) {
				err = withCause(err, cause)
			}
		}
		p.tryFailed(s, kind, err, elapsed)
		return nil, &tryError{Error: &Error{Kind: kind, Pool: p.cfg.Name, Server: s.name, Err: err}, sent: true}
	}
	p.tryAnswered(s, resp.StatusCode, elapsed)
	return resp, nil
}
