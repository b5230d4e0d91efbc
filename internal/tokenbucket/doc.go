// Package tokenbucket is the lock-free token bucket shared by
// envoy.filters.http.local_ratelimit and envoy.filters.network.local_ratelimit:
// Envoy's AtomicTokenBucketImpl semantics (continuous refill, starting full)
// in one atomic word, with a monotonic clock reading passed in so tests
// control time.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/type/v3/token_bucket.proto
//
// It must not import anything of herald's.
package tokenbucket
