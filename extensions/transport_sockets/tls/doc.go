// Package tls implements envoy.transport_sockets.tls: DownstreamTlsContext
// on a listener's filter chain (TLS termination, optionally mTLS) and
// UpstreamTlsContext on a cluster (TLS to the hosts). Config is interpreted
// by internal/tlsx; this package registers it and binds stats.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/transport_sockets/tls/v3/tls.proto
//
// It imports internal/ only.
package tls
