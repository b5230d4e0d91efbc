// Package server is herald's lifecycle: load the bootstrap, build the
// snapshot, apply clusters, start listeners and the admin endpoint, serve,
// and on SIGTERM/SIGINT or /quitquitquit drain gracefully and exit. It owns
// what outlives a snapshot: the stats store, the cluster manager, the
// listener sockets, the access-log files. It implements admin.Source.
//
// Apply is the one way a configuration changes at runtime: a complete set
// of listeners and clusters is validated and built whole, diffed against
// what runs, and swapped in with Envoy's safe-update rules (cluster warming,
// listener update on the same socket with the old connections draining,
// https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/lds#config-listeners-lds).
// A static reload (SIGHUP, --watch-config) feeds it the file's
// static_resources; LDS and CDS (xds.go) feed it the static resources
// merged with the control plane's: each update is validated on the xDS
// subscription's goroutine (the result is its ACK or NACK) and applied by
// one applier goroutine. The server also shares RDS subscriptions among
// connection managers (xds_rds.go) and dials envoy_grpc control planes
// through static clusters.
//
// It must not import extensions/ nor net/http.
package server
