package httpfilter

import (
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// StreamDurationRoute is implemented by routes that bound how long a
// stream may last (RouteAction.max_stream_duration: max_stream_duration,
// or the request's grpc-timeout capped by grpc_timeout_header_max and
// reduced by grpc_timeout_header_offset). The connection manager asks once
// the route is resolved and arms the stream's timer, as Envoy's
// ActiveStream::refreshDurationTimeout.
type StreamDurationRoute interface {
	// StreamDuration returns the stream's maximum duration counted from
	// its start; set is false when the route sets none (0 with set true
	// means the stream has already run out).
	StreamDuration(h *hhttp.Headers) (d time.Duration, set bool)
}
