// Package leastrequest implements envoy.load_balancing_policies.least_request:
// with equal host weights, the host with the fewest active requests among
// choice_count random picks (power of two choices) or among all hosts
// (FULL_SCAN); with different weights (or an explicit active_request_bias),
// Envoy's EDF schedule over weight / (active_requests + 1)^active_request_bias.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/load_balancers#weighted-least-request
// and https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/load_balancing_policies/least_request/v3/least_request.proto
//
// It imports internal/upstream/lbpolicy only; never another extension.
package leastrequest
