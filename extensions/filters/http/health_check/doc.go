// Package healthcheck implements envoy.filters.http.health_check: requests
// matching the configured headers are health checks, answered 200 by herald
// itself (or passed upstream in pass_through_mode) and 503 while the server
// fails health checks (admin POST /healthcheck/fail).
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/health_check_filter
//
// It imports internal/ only, never another extension nor net/http.
package healthcheck
