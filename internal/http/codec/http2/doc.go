// Package http2 is herald's HTTP/2 codec, both sides, built on
// golang.org/x/net/http2 (imported as xhttp2) behind herald's codec-neutral
// stream model (internal/http). Server presents every stream of a downstream
// connection as an hhttp.ServerStream; Client multiplexes upstream requests
// over pooled connections as hhttp.UpstreamStreams. Cleartext prior-knowledge
// h2c today; TLS uses the same code on a *tls.Conn.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#config-core-v3-http2protocoloptions
// and https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/http_connection_management
//
// Where x/net differs from Envoy's codec and cannot be bent without
// replacing it, the difference is accepted and listed here:
//
//   - Request header order is lost (x/net hands the server a map); response
//     headers go out sorted by name (x/net sorts them).
//   - Request trailers reach the server only when the client declared them
//     in a "trailer" header; x/net's server drops undeclared ones. The same
//     holds for herald's client talking to an x/net-based upstream.
//   - Header limits: a list over Envoy's max_request_headers_kb or
//     max_headers_count resets the stream, as Envoy's codec does
//     ("http2.too_many_headers"). A list so large that x/net truncates it
//     (over the SETTINGS_MAX_HEADER_LIST_SIZE herald advertises, Envoy's
//     byte limit plus 32 bytes per allowed field) is answered 431 by x/net
//     itself without reaching the handler. ServeCodecError is never called.
//   - A request carrying connection-specific fields (connection, upgrade,
//     transfer-encoding, keep-alive, proxy-connection, or te other than
//     "trailers") is answered 400 by x/net itself; Envoy resets the stream.
//   - The server ends a stream (END_STREAM) when ServeStream returns, not at
//     the last WriteData/WriteTrailers: x/net sends END_STREAM only from a
//     finished handler. A ServeStream that returns without ending the
//     response resets the stream.
//   - Drain sends one GOAWAY(NO_ERROR, last processed stream) rather than
//     Envoy's two-step GOAWAY.
//   - The client sends "content-length: 0" for a bodiless POST, PUT or
//     PATCH (x/net rule), and streams refused by a GOAWAY fail with an
//     error for the router's retry policy rather than being retried here.
//
// This package may import net/http (as nethttp) and x/net/http2; it must not
// import anything under extensions/ nor another codec.
package http2
