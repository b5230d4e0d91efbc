// Package static implements the STATIC cluster type (envoy.cluster.static):
// the hosts are the IP addresses listed in the cluster's load_assignment,
// fixed for the life of the config.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/service_discovery#static
//
// It imports internal/upstream/clustertype only; never another extension.
package static
