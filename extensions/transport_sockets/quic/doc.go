// Package quic implements envoy.transport_sockets.quic: for downstream
// (listener) filter chains a QuicDownstreamTransport wrapping a
// DownstreamTlsContext, for HTTP/3 clusters a QuicUpstreamTransport
// wrapping an UpstreamTlsContext. It builds the TLS contexts with
// internal/tlsx and hands a QUIC listener (internal/listener), or the
// cluster's QUIC dial (upstream.Cluster.DialQUIC), the TLS 1.3 config with
// ALPN h3 its handshakes use; the QUIC handshake itself is quic-go's.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/http3
// (API: https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/transport_sockets/quic/v3/quic_transport.proto)
//
// It imports internal/ helpers only, never another extension, and not
// net/http.
package quic
