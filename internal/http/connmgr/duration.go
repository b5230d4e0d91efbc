package connmgr

import (
	"strconv"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

// grpcDeadlineExceeded is gRPC's DEADLINE_EXCEEDED status code.
const grpcDeadlineExceeded = 4

// armStreamDuration arms the stream's maximum duration, counted from the
// stream's start, as Envoy's ActiveStream::refreshDurationTimeout does once
// the route is known: the route's (max_stream_duration, or grpc-timeout
// within grpc_timeout_header_max) when it sets one, none when the route's
// max_stream_duration is an explicit 0, otherwise the connection manager's
// common_http_protocol_options.max_stream_duration (also without a route).
func (as *stream) armStreamDuration(h *hhttp.Headers) {
	rt := as.Route()
	var d time.Duration
	set := false
	if r, ok := rt.(httpfilter.StreamDurationRoute); ok {
		d, set = r.StreamDuration(h)
	}
	if !set {
		if as.cfg.MaxStreamDuration <= 0 || routeDisablesStreamDuration(rt) {
			return
		}
		d = as.cfg.MaxStreamDuration
	}
	if as.wd == nil {
		as.armWatchdog(0, 0)
	}
	as.wd.setMaxDuration(d)
}

// maxStreamDurationRoute is the route's own max_stream_duration setting
// (internal/router.Route has it), asked only to tell "unset" from an
// explicit 0, which StreamDuration reports alike.
type maxStreamDurationRoute interface {
	MaxStreamDuration() (d time.Duration, set bool)
}

// routeDisablesStreamDuration reports whether the route sets
// max_stream_duration.max_stream_duration to 0: Envoy's
// refreshDurationTimeout then disables the connection manager's limit
// ("Explicitly configured 0 means no timeout"); an unset one falls back to
// it ("Fall back to HCM config").
func routeDisablesStreamDuration(rt httpfilter.Route) bool {
	r, ok := rt.(maxStreamDurationRoute)
	if !ok {
		return false
	}
	d, set := r.MaxStreamDuration()
	return set && d == 0
}

// onMaxDuration answers a stream that outlived its maximum duration:
// Envoy's ActiveStream::onStreamMaxDurationReached — 408 while the request
// is still arriving, 504 once it is complete (Utility::maybeRequestTimeoutCode),
// "downstream duration timeout", details max_duration_timeout, and
// DEADLINE_EXCEEDED for gRPC clients.
func (as *stream) onMaxDuration() {
	as.cfg.Stats.DownstreamRqMaxDurationReached.Inc()
	// Once the response started sendLocalReply can only reset the stream,
	// whatever the code (Envoy's sendLocalReply does the same).
	code := 408
	if as.requestComplete {
		code = 504
	}
	var modify func(*hhttp.Headers)
	if as.isGRPC {
		modify = setGRPCDeadlineExceeded
	}
	as.sendLocalReply(code, "downstream duration timeout", "max_duration_timeout", modify)
}

// setGRPCDeadlineExceeded is Envoy's grpc_status argument to sendLocalReply
// for a duration timeout: DEADLINE_EXCEEDED instead of the status mapped
// from the HTTP code. A plain function: no closure per timeout.
func setGRPCDeadlineExceeded(h *hhttp.Headers) {
	h.Set("grpc-status", strconv.Itoa(grpcDeadlineExceeded))
}
