// Package http1 is herald's own HTTP/1.1 codec, both sides: Serve drives a
// downstream connection (request parsing, response encoding) and ClientConn
// carries exchanges on an upstream connection (request encoding, response
// parsing). Both translate to and from the codec-neutral stream model of
// internal/http (ordered lowercase headers with pseudo-headers, streamed
// bodies, trailers).
//
// Why herald has its own codec: proxies built on net/http's server and
// Transport measure about 59 µs of CPU per proxied request against about
// 10 µs for nginx on the same machine (DESIGN.md, "Codecs"): header maps,
// per-request allocations and goroutine hand-offs. This codec aims at a few
// µs of codec CPU and zero or one allocation per request on a keep-alive
// connection: the header section is read into a per-connection buffer,
// names are lowercased in place, the whole section becomes ONE string and
// every name and value is a substring of it; the Headers slice, the stream
// object and the buffers are reused from request to request.
//
// Parsing is strict in the way Envoy's HTTP/1 codec (Balsa parser) is:
// request smuggling vectors (Content-Length with Transfer-Encoding, repeated
// Content-Length, malformed chunk sizes, bare CR, control characters,
// oversized or too many headers) are rejected with Envoy's status and
// response_code_details (see errors.go).
//
// Upgrades (WebSocket and others) switch both sides to raw bytes after the
// headers; on the server side the read and write halves of an upgrade may
// then run on two goroutines (upgrade.go).
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/http_connection_management
// and https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#config-core-v3-http1protocoloptions
//
// Checks Envoy performs in the connection manager rather than in the codec
// are left to the connection manager: a missing Host on HTTP/1.1 (400
// missing_host_header), HTTP/1.0 without accept_http_10 (426 low_version),
// headers_with_underscores_action, request trailers being dropped unless
// http1_protocol_options.enable_trailers.
//
// This package may import net/http only in tests (as nethttp). It must not
// import anything under extensions/ nor the router or upstream packages.
package http1
