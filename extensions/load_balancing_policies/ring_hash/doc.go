// Package ringhash implements envoy.load_balancing_policies.ring_hash:
// Ketama-style consistent hashing. Each host is placed on a ring of 64-bit
// xxHash values, proportionally to its weight; a request goes to the first
// host at or after its hash (from the route's hash_policy), so adding or
// removing a host moves only the keys next to it. A request without a hash
// gets a random one, as in Envoy.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/load_balancers#ring-hash
// and https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/load_balancing_policies/ring_hash/v3/ring_hash.proto
// (algorithm: source/extensions/load_balancing_policies/ring_hash/ring_hash_lb.cc).
//
// It imports internal/upstream/lbpolicy only; never another extension.
package ringhash
