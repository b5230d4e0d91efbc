// Package random implements envoy.load_balancing_policies.random: each
// request goes to a host chosen uniformly at random. As Envoy's
// RandomLoadBalancer (hosts_to_use[random % size]), it ignores
// load_balancing_weight.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/load_balancers#random
// and https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/load_balancing_policies/random/v3/random.proto
//
// It imports internal/upstream/lbpolicy only; never another extension.
package random
