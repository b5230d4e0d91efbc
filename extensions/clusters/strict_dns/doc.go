// Package strictdns implements the STRICT_DNS cluster type
// (envoy.cluster.strict_dns): every endpoint address of the load_assignment
// is resolved periodically and every IP it resolves to is a host.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/service_discovery#strict-dns
//
// It imports internal/upstream/clustertype only; never another extension.
package strictdns
