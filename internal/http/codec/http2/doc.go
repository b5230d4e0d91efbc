// Package http2 is herald's HTTP/2 codec, both sides, behind herald's
// codec-neutral stream model (internal/http). Server presents every stream
// of a downstream connection as an hhttp.ServerStream; Client multiplexes
// upstream requests over pooled connections as hhttp.UpstreamStreams.
// Cleartext prior-knowledge h2c today; TLS uses the same code on a *tls.Conn.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#config-core-v3-http2protocoloptions
// and https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/http_connection_management
//
// # Server
//
// The server is herald's own connection state machine (server*.go) on
// golang.org/x/net/http2's Framer and hpack, which only frame and compress.
// One reader goroutine per connection reads and handles every frame; each
// stream runs ServeStream on its own goroutine and writes its frames itself
// under the connection mutex into one buffer, flushed by whichever writer
// finds no flush in progress, so concurrent streams share write syscalls
// and no frame crosses a channel. Request headers keep their wire order;
// response headers go out in the order given. Streams are pooled.
//
// Behaviour follows Envoy's codec (nghttp2) with Envoy's defaults:
//
//   - SETTINGS: max_concurrent_streams, initial stream window and
//     SETTINGS_MAX_HEADER_LIST_SIZE (max_request_headers_kb plus 32 bytes per
//     allowed field); the connection window is raised with WINDOW_UPDATE.
//     Receive windows are replenished once half is consumed by ReadBody;
//     WriteData blocks on the client's stream and connection windows.
//   - END_STREAM goes out with the last WriteData/WriteTrailers/
//     WriteHeaders(end) call. A ServeStream that returns without ending the
//     response resets the stream with INTERNAL_ERROR; one that ended the
//     response while the request is still open resets it with NO_ERROR.
//   - An invalid request HEADERS block (uppercase or non-token names,
//     connection-specific fields, te other than "trailers", pseudo-header
//     errors, content-length mismatch, trailers without END_STREAM)
//     terminates the connection with GOAWAY(PROTOCOL_ERROR): Envoy's default
//     when override_stream_error_on_invalid_http_message is unset. A header
//     list over max_request_headers_kb or max_headers_count resets the stream
//     with INTERNAL_ERROR ("http2.too_many_headers"). ServeCodecError is
//     never called.
//   - Request trailers arrive declared or not. Cookie crumbs are joined with
//     "; " into one field at the end; a "host" without :authority becomes
//     :authority. :scheme is the client's.
//   - Over max_concurrent_streams, or after the final GOAWAY, new streams get
//     RST_STREAM(REFUSED_STREAM). Drain is Envoy's two-step GOAWAY (2^31-1,
//     then after the drain timeout the last stream id); the idle timeout sends
//     GOAWAY and closes; a client GOAWAY closes once active streams finish.
//   - Flood limits as Envoy's defaults: max_outbound_frames 10000 and
//     max_outbound_control_frames 1000 close the connection;
//     max_consecutive_inbound_frames_with_empty_payload 1,
//     max_inbound_priority_frames_per_stream 100 and
//     max_inbound_window_update_frames_per_data_frame_sent 10 close it with
//     GOAWAY(ENHANCE_YOUR_CALM). PRIORITY is otherwise ignored.
//
// Conformance: h2spec 2.2.1 (generic, http2, hpack, strict cases included)
// passes every case (146/146) in server_h2spec_test.go; no case is skipped.
//
// Not done yet: Envoy's premature-reset
// (rapid reset) mitigation, SETTINGS_ENABLE_CONNECT_PROTOCOL (extended
// CONNECT), and per-connection buffer watermarks.
//
// Performance (BenchmarkServerRoundTrip, x/net client and server in one
// process, 2 cores): x/net server adapter 59 allocs/op, 5.9 KB/op, ≈77 µs
// of process CPU per request; own server 27 allocs/op, 2.65 KB/op, ≈48 µs
// (the x/net client accounts for ~23 allocs of each). Server-side
// allocations per request went from ≈16 to 2 (HEADERS frame struct and
// the stream goroutine).
//
// # Client
//
// The client is an adapter over x/net's Transport. Where x/net differs from
// Envoy's codec and cannot be bent without replacing it, the difference is
// accepted: the client sends "content-length: 0" for a bodiless POST, PUT
// or PATCH (x/net rule); response header order is lost (x/net hands over a
// map); only declared trailers reach an x/net-based upstream; streams
// refused by a GOAWAY fail with an error for the router's retry policy
// rather than being retried here.
//
// This package may import net/http (as nethttp) and x/net/http2; it must not
// import anything under extensions/ nor another codec.
package http2
