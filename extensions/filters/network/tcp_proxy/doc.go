// Package tcpproxy implements envoy.filters.network.tcp_proxy: it forwards
// the bytes of a downstream connection to a host of a cluster (one cluster or
// weighted_clusters), both ways, honouring half-close and idle_timeout; with
// tunneling_config it carries the bytes in an HTTP/2 or HTTP/1.1 CONNECT (or
// POST) instead (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/upgrades#tunneling-tcp-over-http).
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/network_filters/tcp_proxy_filter
//
// It imports internal/ only (the HTTP/2 pools of internal/upstream and
// internal/http/codec/http1 for tunnels); never net/http.
package tcpproxy
