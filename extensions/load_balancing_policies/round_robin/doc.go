// Package roundrobin implements envoy.load_balancing_policies.round_robin:
// hosts in turn, or weighted round robin through an earliest-deadline-first
// schedule when their load_balancing_weight values differ, as Envoy's
// RoundRobinLoadBalancer does.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/load_balancers#weighted-round-robin
// and https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/load_balancing_policies/round_robin/v3/round_robin.proto
//
// It imports internal/upstream/lbpolicy only; never another extension.
package roundrobin
