// Package tlsx turns Envoy's TLS protos (DownstreamTlsContext,
// UpstreamTlsContext, CommonTlsContext, CertificateValidationContext) into
// crypto/tls configs built once per snapshot, runs handshakes and counts
// Envoy's ssl.* stats. Names follow Envoy: cipher suites by their
// OpenSSL/BoringSSL names, curves as BoringSSL spells them, versions as
// SSL_get_version does.
//
// Certificates and validation contexts may come from secrets
// (internal/secret): static secrets are read at build time; a context
// following SDS secrets rebuilds its crypto/tls config whenever one of them
// changes and swaps it in atomically, so a handshake costs one atomic load
// and open connections keep what they negotiated
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/security/secret).
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/transport_sockets/tls/v3/tls.proto
// and https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/transport_sockets/tls/v3/common.proto
//
// It must not import extensions/ nor net/http (DESIGN.md names it tlsx for
// that reason: internal/http shadows the standard name).
package tlsx
