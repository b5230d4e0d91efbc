// Package upstream is the cluster manager: it builds clusters from config
// (discovery through clustertype extensions, load balancing through lbpolicy
// extensions), swaps them in whole, runs their discovery workers, and gives
// the request path a lock-free way from a cluster name to a host and a
// connection: Manager.Cluster → Cluster.Pick → Cluster.Dial / Host.Idle
// (HTTP/1.1) / Host.HTTP2 / Host.HTTP3. Connection pools live on the host
// and are drained when the host leaves its cluster or the cluster is
// removed or replaced, never by listener or route updates.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/cluster_manager,
// service_discovery, load_balancing/load_balancers, and
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/cluster/v3/cluster.proto.
// Stats: https://www.envoyproxy.io/docs/envoy/latest/configuration/upstream/cluster_manager/cluster_stats.
// Admin /clusters: https://www.envoyproxy.io/docs/envoy/latest/operations/admin#get--clusters.
//
// Concurrency: a Manager's cluster map and a Cluster's HostSet are immutable
// snapshots behind atomic.Pointer; the request path only loads them. A
// Cluster's membership changes on its discovery goroutine(s), serialised by
// Cluster.mu, which the request path never takes.
//
// It must not import extensions/ nor net/http.
package upstream
