// Package extauthz implements envoy.filters.network.ext_authz: each new
// connection is checked with an external authorization service over gRPC
// (envoy.service.auth.v3.Authorization); a denied connection, or one whose
// check failed without failure_mode_allow, is closed before the filters
// after it see any byte.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/network_filters/ext_authz_filter
// (API: https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/ext_authz/v3/ext_authz.proto)
//
// It imports internal/ only, never another extension nor net/http.
package extauthz
