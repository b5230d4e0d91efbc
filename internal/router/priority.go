package router

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/herald-proxy/herald/internal/upstream"
)

// Route priority (RouteAction.priority): a HIGH route's requests use the
// cluster's HIGH circuit breakers (circuit_breakers.thresholds with
// priority: HIGH, gauges circuit_breakers.high.*), a DEFAULT route's the
// DEFAULT ones, as Envoy's ConfigUtility::parsePriority and
// createConnPool(..., route_entry_->priority(), ...)
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/circuit_breaking:
// "each circuit breaking threshold can be configured and tracked on a per
// upstream cluster and per priority basis").
//
// herald keeps one connection pool per host shared by both priorities
// (Envoy keeps one per priority): every connection counts in the DEFAULT
// breaker's connection count (cluster.<name>.circuit_breakers.default.cx_open),
// and a HIGH request may dial while that shared count is under the HIGH
// max_connections. max_requests, max_pending_requests and max_retries are
// per priority exactly as in Envoy.

// routePriority maps RoutingPriority to the circuit breaker priority.
func routePriority(p corev3.RoutingPriority) upstream.Priority {
	if p == corev3.RoutingPriority_HIGH {
		return upstream.PriorityHigh
	}
	return upstream.PriorityDefault
}

// Priority is the route's RoutingPriority (DEFAULT unless priority: HIGH).
func (r *Route) Priority() upstream.Priority { return r.ext.priority }

// canDial reports whether the request may open a new connection to the
// cluster under its priority's max_connections. Connections are counted in
// the DEFAULT breaker (see above).
func (f *Filter) canDial() bool {
	if f.route == nil || f.route.ext.priority == upstream.PriorityDefault {
		return f.rm.Connections.CanCreate()
	}
	n := f.cluster.Resources(upstream.PriorityDefault).Connections.Count()
	return n < 0 || uint64(n) < f.rm.Connections.Max()
}
