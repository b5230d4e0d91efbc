// Package listener runs listeners: it binds sockets (kept across config
// snapshots by address), accepts connections, picks the filter chain, runs
// the chain's connection filters and hands the connection to the terminal
// filter on its own goroutine. It counts listener.<address>.* stats and
// drains.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/listeners/listeners
//
// It must not import extensions/ nor net/http.
package listener
