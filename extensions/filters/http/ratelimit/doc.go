// Package ratelimit implements envoy.filters.http.ratelimit: global rate
// limiting through a rate limit service. For each request it turns the
// matched route's (and virtual host's) rate_limits actions into descriptors,
// calls envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit over
// gRPC, and answers 429 when the service says OVER_LIMIT.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/rate_limit_filter
// (architecture: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/other_features/global_rate_limiting).
//
// The descriptors come from internal/router (Route.AppendRateLimitDescriptors);
// the gRPC connection from internal/grpcservice. It imports internal/ only,
// never another extension nor net/http.
package ratelimit
