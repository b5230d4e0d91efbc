// Package rbac implements envoy.filters.network.rbac: role-based access
// control on connections. Its rules and shadow_rules are compiled once per
// snapshot by internal/rbac (shared with envoy.filters.http.rbac); a
// connection the enforced rules deny is closed before any byte reaches the
// terminal filter.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/network_filters/rbac_filter
// (API: https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/rbac/v3/rbac.proto)
//
// It imports internal/ only, never another extension nor net/http.
package rbac
