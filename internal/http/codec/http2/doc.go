// Package http2 is herald's HTTP/2 codec, both sides, built on
// golang.org/x/net/http2 (imported as xhttp2) behind herald's codec-neutral
// stream model (internal/http): a server that presents every HTTP/2 stream
// of a downstream connection as an hhttp.ServerStream, and a client that
// multiplexes upstream requests over pooled HTTP/2 connections as
// hhttp.UpstreamStreams. Cleartext prior-knowledge h2c today; TLS uses the
// same code on a *tls.Conn.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#config-core-v3-http2protocoloptions
// and https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/http_connection_management
//
// Where x/net's server and transport differ from Envoy's codec, the
// difference is written next to the code (header order, undeclared request
// trailers, oversized header lists). doc.go is the index:
//   - Request header order is lost: x/net hands the server an http.Header map.
//     Response headers go out sorted by name (x/net sorts them).
//   - Request trailers reach the server only when the client declared them
//     in a "trailer" request header (x/net drops undeclared ones).
//   - A header list over x/net's SETTINGS_MAX_HEADER_LIST_SIZE is answered
//     431 by x/net itself; lists within it but over Envoy's
//     max_request_headers_kb / max_headers_count reset the stream as Envoy does.
//
// This package may import net/http (as nethttp) and x/net/http2; it must not
// import anything under extensions/ nor other codecs.
package http2
