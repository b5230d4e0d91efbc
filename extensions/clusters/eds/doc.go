// Package eds implements the EDS cluster type (envoy.cluster.eds): the
// cluster's hosts come from the ClusterLoadAssignment named by
// eds_cluster_config.service_name (else the cluster name), fetched from
// eds_config through the server's xDS client. Each accepted update replaces
// the membership in place: hosts that stay keep their connection pools,
// stats and health, endpoints the control plane marks UNHEALTHY, DRAINING
// or TIMEOUT carry /failed_eds_health. The listener and cluster sets are
// not touched.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/service_discovery#endpoint-discovery-service-eds
// and https://www.envoyproxy.io/docs/envoy/latest/configuration/upstream/cluster_manager/cluster_stats#config-cluster-manager-cluster-stats-dynamic-http
//
// It imports internal/upstream/clustertype and internal/xds; never another
// extension, internal/upstream itself nor net/http.
package eds
