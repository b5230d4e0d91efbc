// Package connmgr is the HTTP connection manager engine: it serves one
// downstream connection with the right codec (HTTP/1.1, HTTP/2 prior
// knowledge, or AUTO sniffing), turns each request into a stream, mutates
// request and response headers as Envoy's connection manager does
// (x-forwarded-for, x-forwarded-proto, x-request-id, x-envoy-internal, server,
// date), runs the HTTP filter chain (decode in order, encode in reverse),
// answers local replies, enforces stream and connection timeouts, counts the
// http.<stat_prefix>.* stats and writes access logs.
//
// A stream runs on one goroutine, except that a filter may hand the response
// to one other goroutine while request events go on (full-duplex streaming,
// httpfilter.ConcurrentEncoder; concurrent.go). HTTP upgrades (WebSocket and
// custom types) are allowed or refused by upgrade_configs and stream both
// ways at once, each direction ending on its own after a 101 (upgrade.go).
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/http_conn_man
//
// The extension envoy.filters.network.http_connection_manager translates its
// proto into a Config; this package never sees protos. It must not import
// extensions/ nor net/http.
package connmgr
