// Package network is herald's view of one accepted downstream connection:
// the socket (raw or TLS), its addresses, what listener filters learnt (SNI,
// ALPN), and the drain signal of the listener that accepted it. Network
// filters receive a *Conn.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/listeners/network_filters
//
// It must not import extensions/ nor net/http.
package network
