// Package rbac implements envoy.filters.http.rbac: role-based access control
// on requests. A config's rules (and shadow_rules) are compiled once per
// snapshot into an engine of policies (internal/rbac, shared with
// envoy.filters.network.rbac), each a tree of permission and principal
// matchers; evaluating a request allocates nothing. A denied
// request gets a 403 "RBAC: access denied" local reply.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/rbac_filter
// (API: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/rbac/v3/rbac.proto)
//
// It imports internal/ only, never another extension nor net/http.
package rbac
