// Package tcpproxy implements envoy.filters.network.tcp_proxy: it forwards
// the bytes of a downstream connection to a host of a cluster (one cluster or
// weighted_clusters), both ways, honouring half-close and idle_timeout.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/network_filters/tcp_proxy_filter
//
// It imports internal/ only.
package tcpproxy
