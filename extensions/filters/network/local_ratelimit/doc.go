// Package localratelimit implements envoy.filters.network.local_ratelimit:
// a token bucket on new connections of the filter's chain; a connection
// that finds the bucket empty is closed before the next filter runs. The
// bucket is internal/tokenbucket, shared with
// envoy.filters.http.local_ratelimit.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/network_filters/local_rate_limit_filter
// (API: https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/local_ratelimit/v3/local_rate_limit.proto)
//
// It imports internal/ only, never another extension nor net/http.
package localratelimit
