// Package connectionlimit implements envoy.filters.network.connection_limit:
// it caps the number of open connections of its filter chain; a connection
// over the cap is closed (after delay, when set) before the next filter
// runs.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/network_filters/connection_limit_filter
// (API: https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/connection_limit/v3/connection_limit.proto)
//
// It imports internal/ only, never another extension nor net/http.
package connectionlimit
