// Package originaldst implements envoy.filters.listener.original_dst: it
// reads the destination a connection had before iptables REDIRECT/DNAT
// (SO_ORIGINAL_DST, IP6T_SO_ORIGINAL_DST) and makes it the connection's
// local address, for filter_chain_match and the ORIGINAL_DST cluster.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/listener_filters/original_dst_filter
// (API: https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/listener/original_dst/v3/original_dst.proto)
//
// It imports internal/ only, never another extension nor net/http.
package originaldst
