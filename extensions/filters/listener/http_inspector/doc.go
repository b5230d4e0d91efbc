// Package httpinspector implements envoy.filters.listener.http_inspector:
// on a plaintext connection it peeks at the first bytes and records the
// application protocol for filter_chain_match.application_protocols: "h2c"
// for the HTTP/2 connection preface, "http/1.1" or "http/1.0" for an
// HTTP/1.x request line. The bytes are not consumed.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/listener_filters/http_inspector
//
// It imports internal/ only.
package httpinspector
