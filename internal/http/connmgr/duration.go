package connmgr

import (
	"strconv"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

// grpcDeadlineExceeded is gRPC's DEADLINE_EXCEEDED status code.
const grpcDeadlineExceeded = 4

// armStreamDuration arms the route's maximum stream duration
// (max_stream_duration, or grpc-timeout within grpc_timeout_header_max),
// counted from the stream's start, as Envoy's
// ActiveStream::refreshDurationTimeout does once the route is known.
func (as *stream) armStreamDuration(h *hhttp.Headers) {
	r, ok := as.Route().(httpfilter.StreamDurationRoute)
	if !ok {
		return
	}
	d, set := r.StreamDuration(h)
	if !set {
		return
	}
	if as.wd == nil {
		as.armWatchdog(0, 0)
	}
	as.wd.setMaxDuration(d)
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
