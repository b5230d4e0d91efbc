// Package router implements envoy.filters.http.router, the terminal HTTP
// filter: it forwards the request to the cluster its route names. The work
// is in internal/router; this package only registers and reads the config.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/router_filter
//
// It imports internal/ only.
package router
