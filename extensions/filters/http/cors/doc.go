// Package cors implements envoy.filters.http.cors: the CorsPolicy of the
// route, virtual host and route configuration (typed_per_filter_config)
// answers CORS preflight requests locally and adds the
// access-control-allow-* headers to actual cross-origin responses.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/cors_filter
//
// It imports internal/ only, never another extension nor net/http.
package cors
