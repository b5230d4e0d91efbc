// Package httpconnectionmanager implements
// envoy.filters.network.http_connection_manager: it translates the
// HttpConnectionManager proto into an internal/http/connmgr.Config (route
// table, HTTP filter chain, access logs, timeouts, header options) once per
// snapshot; connmgr serves the connections.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/http_conn_man
//
// It imports internal/ only.
package httpconnectionmanager
