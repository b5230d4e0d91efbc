// Package listenerfilter is what a listener filter implements and how it
// registers. A listener runs its listener filters in order on each accepted
// connection before the filter chain is matched; a filter inspects the
// first bytes the client sent (without consuming them: they are replayed to
// the transport socket afterwards) and records what it learnt on the
// connection (transport protocol, SNI, ALPN), which filter_chain_match
// then reads. A Consumer filter (proxy_protocol) instead consumes the
// prefix it parsed, which is not replayed.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/listener_filters/listener_filters
//
// It must not import extensions/ nor net/http.
package listenerfilter
