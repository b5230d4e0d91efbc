// Package healthcheck is herald's active health checking: it interprets a
// cluster's health_checks entry (config.go), probes every host of the
// cluster on its own goroutine with an HTTP/1.1, HTTP/2 (h2c), TCP or gRPC
// checker (http.go, tcp.go, grpc.go), and runs Envoy's per-host state
// machine (healthy_threshold / unhealthy_threshold, first-check fast path,
// immediate failure on an unexpected HTTP status, timeouts counting as
// network failures) and interval schedule (interval, unhealthy_interval,
// the edge intervals, no_traffic_interval, jitter) in runner.go.
//
// The cluster owns a Runner: it hands it the current hosts (as Targets),
// and the Runner reports transitions back through Options.OnChange so the
// cluster can rebuild its HostSet. Host flags live on the Target, so this
// package needs nothing from internal/upstream.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/health_checking
// and https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/health_check.proto;
// behaviour follows source/extensions/health_checkers/{common,http,tcp,grpc}
// of envoyproxy/envoy. Stats:
// https://www.envoyproxy.io/docs/envoy/latest/configuration/upstream/cluster_manager/cluster_stats#health-check-statistics
//
// It must not import internal/upstream, extensions/, nor net/http.
package healthcheck
