// Package maglev implements envoy.load_balancing_policies.maglev: Google's
// Maglev consistent hashing. Hosts fill a lookup table of table_size (a
// prime) entries through per-host permutations, in proportion to their
// weights; a request goes to table[hash % table_size], so removing one of N
// hosts moves about 1/N of the keys. A request without a hash gets a random
// one, as in Envoy.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/load_balancers#maglev
// and https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/load_balancing_policies/maglev/v3/maglev.proto
// (algorithm: source/extensions/load_balancing_policies/maglev/maglev_lb.cc).
//
// It imports internal/upstream/lbpolicy only; never another extension.
package maglev
