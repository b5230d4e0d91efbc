// Package logicaldns implements the LOGICAL_DNS cluster type
// (envoy.cluster.logical_dns): the cluster has one logical host per
// endpoint's name, whose address is the first IP of the latest resolution;
// new connections go to that address, open ones stay where they are.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/service_discovery#logical-dns
//
// It imports internal/upstream/clustertype only; never another extension.
package logicaldns
