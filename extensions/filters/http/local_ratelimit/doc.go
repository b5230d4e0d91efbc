// Package localratelimit implements envoy.filters.http.local_ratelimit: a
// token bucket per filter config (and per typed_per_filter_config, or per
// downstream connection) that answers 429 "local_rate_limited" when empty.
// Buckets are lock-free and refilled lazily from the monotonic clock: no
// timer or goroutine runs per bucket.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/local_rate_limit_filter
//
// It imports internal/ only, never another extension nor net/http.
package localratelimit
