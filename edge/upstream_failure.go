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
	if isTimeout(err) {
		return http.StatusGatewayTimeout, "origin-timeout"
	}
	var oe *origin.Error
	if errors.As(err, &oe) && oe.Kind == origin.KindProtocol {
		return http.StatusBadGateway, "origin-protocol-error"
	}
	return http.StatusBadGateway, "origin-unreachable"
}
