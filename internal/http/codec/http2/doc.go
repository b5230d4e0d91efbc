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
//   - Flood limits from http2_protocol_options, Envoy's defaults when
//     unset: max_outbound_frames (10000) and max_outbound_control_frames
//     (1000) close the connection;
//     max_consecutive_inbound_frames_with_empty_payload (1),
//     max_inbound_priority_frames_per_stream (100) and
//     max_inbound_window_update_frames_per_data_frame_sent (10) close it
//     with GOAWAY(ENHANCE_YOUR_CALM). PRIORITY is otherwise ignored.
//   - hpack_table_size is advertised as SETTINGS_HEADER_TABLE_SIZE (when
//     not 4096) and caps both HPACK tables; the decoder applies it once the
//     client acknowledged our SETTINGS.
//   - allow_connect advertises SETTINGS_ENABLE_CONNECT_PROTOCOL and accepts
//     extended CONNECT (RFC 8441), presented to the handler as Envoy's
//     transformUpgradeRequestFromH2toH1 does (GET plus "upgrade:
//     <:protocol>" and "connection: upgrade"); the handler's 101 goes out
//     as 200 without the upgrade fields (transformUpgradeResponseFromH1toH2).
//     Plain CONNECT (:method and :authority only) is served as a tunnel.
//     DATA carries the tunnel both ways; END_STREAM is the half-close.
//     A stream's CloseConnWhenIdle (the connection manager after refusing
//     an upgrade) closes the connection once no stream is active, Envoy's
//     DrainState::Closing, with a GOAWAY(NO_ERROR) first.
//   - override_stream_error_on_invalid_http_message (or the deprecated
//     stream_error_on_invalid_http_messaging) turns the connection errors
//     for invalid requests into RST_STREAM(PROTOCOL_ERROR).
//   - connection_keepalive: a PING every interval (plus jitter); with no
//     frame received within timeout after it the connection is closed
//     without flushing; any frame received extends the timeout and a PING
//     ACK schedules the next PING (Envoy's ConnectionImpl keepalive).
//   - Premature resets (CVE-2023-44487), as Envoy's connection manager:
//     a stream closed before its response headers and within
//     premature_reset_min_stream_lifetime_seconds (1) is premature; once
//     half of premature_reset_total_stream_count (500) closed streams
//     are, or half of all closed streams past that count, the connection
//     gets GOAWAY(NO_ERROR) and is closed, reported through
//     ServerOptions.OnPrematureResets (downstream_rq_too_many_premature_resets).
//
// Conformance: h2spec 2.2.1 (generic, http2, hpack, strict cases included)
// passes every case (146/146) in server_h2spec_test.go; no case is skipped.
//
// Not done yet: per-connection buffer watermarks.
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
// rather than being retried here; keepalive PINGs only after interval
// without frames received, with no jitter (x/net's ReadIdleTimeout); the
// flood limits are not applied upstream.
//
// A request carrying HTTP/1.1 upgrade headers goes out as an extended
// CONNECT (Envoy's transformUpgradeRequestFromH1toH2) once the peer's first
// SETTINGS enabled it, and the peer's 200 comes back as 101 with the
// upgrade headers (transformUpgradeResponseFromH2toH1); without the setting
// the stream fails with ErrExtendedConnectNotSupported before any response.
// A plain CONNECT goes out with :method and :authority only. A cluster's
// http2_protocol_options apply through ClientOptions.HTTP2: each cluster's
// pools build their own Client (internal/upstream pools.go).
//
// This package may import net/http (as nethttp) and x/net/http2; it must not
// import anything under extensions/ nor another codec.
package http2
