// Package server is herald's lifecycle: load the bootstrap, build the
// snapshot, apply clusters, start listeners and the admin endpoint, serve,
// and on SIGTERM/SIGINT or /quitquitquit drain gracefully and exit. It owns
// what outlives a snapshot: the stats store, the cluster manager, the
// listener sockets, the access-log files. It implements admin.Source.
//
// It must not import extensions/ nor net/http.
package server
