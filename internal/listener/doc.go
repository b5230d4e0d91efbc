// Package listener runs listeners: it binds sockets (kept across config
// snapshots by address), accepts connections, and on each connection's own
// goroutine runs the listener filters (tls_inspector, http_inspector),
// matches the filter chain (filter_chain_match, compiled once per
// snapshot by ChainMatcher, or filter_chain_matcher, Envoy's unified
// matcher API over network inputs, compiled by BuildFilterChainMatcher),
// runs the chain's transport socket handshake
// (TLS), its connection filters, and hands the connection to the terminal
// filter. It counts listener.<address>.* stats and drains. A running
// listener takes a new config with Update (same socket, new connections on
// the new config, old ones drained) and leaves with Remove.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/listeners/listeners
// and https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/listener/v3/listener_components.proto#config-listener-v3-filterchainmatch
// and https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/matching/matching_listener
//
// It must not import extensions/ nor net/http.
package listener
