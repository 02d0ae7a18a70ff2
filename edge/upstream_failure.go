package edge

import (
	"errors"
	"net/http"

	"github.com/meridiancdn/meridian/origin"
)

// upstreamFailure is the status and Cache-Status detail a client gets when
// a fill or a pass failed with err and nothing stale may stand in:
//
//   - 503 "inflight-full": the edge's in-flight body budget stayed full
//     (cache.max_inflight_bytes), so the fill never went upstream;
//   - 503 "shutting-down": the handler is closed, so no fill starts;
//   - 503 "origin-overloaded": the pool's caps on the origin's servers
//     (pool.max_conns, max_inflight) refused it within queue_timeout;
//   - 503 "origin-circuit-open": the pool's circuit breaker is open;
//   - 504 "origin-timeout": upstream did not answer in time;
//   - 502 "origin-protocol-error": upstream answered, but not with an HTTP
//     response this edge may forward (origin.KindProtocol): malformed
//     HTTP, a transfer coding other than chunked (see
//     deploy/README.md, "RFC notes"), or a failed TLS handshake;
//   - 502 "origin-unreachable": anything else (refused, reset, ...).
func upstreamFailure(err error) (status int, detail string) {
	if errors.Is(err, errInflightFull) {
		return http.StatusServiceUnavailable, "inflight-full"
	}
	if errors.Is(err, errClosed) {
		return http.StatusServiceUnavailable, "shutting-down"
	}
	var oe *origin.Error
	if errors.As(err, &oe) {
		switch oe.Kind {
		case origin.KindOverloaded:
			return http.StatusServiceUnavailable, "origin-overloaded"
		case origin.KindUnavailable:
			return http.StatusServiceUnavailable, "origin-circuit-open"
		}
	}
	if isTimeout(err) {
		return http.StatusGatewayTimeout, "origin-timeout"
	}
	if oe != nil && oe.Kind == origin.KindProtocol {
		return http.StatusBadGateway, "origin-protocol-error"
	}
	return http.StatusBadGateway, "origin-unreachable"
}

// refusedByEdge reports whether a failed fill never reached the origin
// because the edge's own protections refused it: the in-flight budget,
// the pool's caps or its open circuit breaker. Such failures are not the
// origin's answer, so they are not remembered for the key (see
// failedFills).
func refusedByEdge(err error) bool {
	if errors.Is(err, errInflightFull) {
		return true
	}
	var oe *origin.Error
	return errors.As(err, &oe) && (oe.Kind == origin.KindOverloaded || oe.Kind == origin.KindUnavailable)
}
