// Package tlsinspector implements envoy.filters.listener.tls_inspector: it
// peeks at the client's first bytes, and when they are a TLS ClientHello
// sets the connection's transport protocol to "tls" and records the SNI and
// the offered ALPN protocols for filter_chain_match. The bytes are not
// consumed: the listener replays them to the transport socket (or, for TLS
// passthrough, to tcp_proxy).
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/listener_filters/tls_inspector
//
// It imports internal/ only.
package tlsinspector
