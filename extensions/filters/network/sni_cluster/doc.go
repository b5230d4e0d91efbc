// Package snicluster implements envoy.filters.network.sni_cluster: it sets
// the connection's upstream cluster for tcp_proxy to the SNI the client
// sent, through the envoy.tcp_proxy.cluster filter state.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/network_filters/sni_cluster_filter
// (API: https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/sni_cluster/v3/sni_cluster.proto)
//
// It imports internal/ only, never another extension nor net/http.
package snicluster
