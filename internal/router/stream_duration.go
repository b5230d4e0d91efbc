package router

import (
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

var _ httpfilter.StreamDurationRoute = (*Route)(nil)

// StreamDuration implements httpfilter.StreamDurationRoute with Envoy's
// ActiveStream::refreshDurationTimeout (route part): without a grpc-timeout
// header, or without grpc_timeout_header_max, the route's
// max_stream_duration applies (0 disables it); with both, the header's
// timeout capped by grpc_timeout_header_max (0: no cap) and reduced by
// grpc_timeout_header_offset applies.
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#envoy-v3-api-msg-config-route-v3-routeaction-maxstreamduration
func (r *Route) StreamDuration(h *hhttp.Headers) (time.Duration, bool) {
	if !r.maxStreamDuration.set && !r.grpcTimeoutMax.set {
		return 0, false
	}
	var gt time.Duration
	hasGT := false
	if r.grpcTimeoutMax.set {
		// The header matters only with grpc_timeout_header_max.
		gt, hasGT = parseGrpcTimeout(h.Get("grpc-timeout"))
	}
	if !hasGT {
		if !r.maxStreamDuration.set || r.maxStreamDuration.d == 0 {
			return 0, false
		}
		return r.maxStreamDuration.d, true
	}
	d := gt
	if m := r.grpcTimeoutMax.d; m != 0 && d > m {
		d = m
	}
	if d != 0 && r.grpcTimeoutOffset.set {
		if off := r.grpcTimeoutOffset.d; off < d {
			d -= off
		} else {
			d = 0
		}
	}
	return d, true
}

// parseGrpcTimeout parses a grpc-timeout header: at most 8 ASCII digits
// and a unit (H, M, S, m, u, n), as gRPC's HTTP/2 protocol document and
// Envoy's Grpc::Common::getGrpcTimeout.
func parseGrpcTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v)-1; i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	return time.Duration(n) * unit, true
}
