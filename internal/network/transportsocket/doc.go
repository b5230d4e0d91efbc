// Package transportsocket is what a transport socket implements and how it
// registers: a downstream socket secures accepted connections of a filter
// chain (DownstreamTlsContext), an upstream socket secures connections a
// cluster dials (UpstreamTlsContext). Both kinds share Envoy's name
// (envoy.transport_sockets.tls), so each has its own registry. raw_buffer
// is the absence of a socket and is not registered.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/base.proto#config-core-v3-transportsocket
//
// It must not import extensions/ nor net/http.
package transportsocket
