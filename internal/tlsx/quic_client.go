package tlsx

import "crypto/tls"

// QUICConfig returns the client's current crypto/tls config for one QUIC
// connection (envoy.transport_sockets.quic QuicUpstreamTransport): TLS 1.3
// only, QUIC's one version (RFC 9001 §4.2), offering alpn, with o applied
// as Handshake applies HandshakeOptions (nil: none). It fails with
// ErrSecretsNotReady while SDS secrets are not ready. The result is a copy
// the caller owns; the session cache stays shared.
func (cl *Client) QUICConfig(alpn []string, o *HandshakeOptions) (*tls.Config, error) {
	cfg := cl.Config()
	if cfg == nil {
		return nil, ErrSecretsNotReady
	}
	if o != nil {
		cfg = withOptions(cfg, o) // a copy
	} else {
		cfg = cfg.Clone()
	}
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS13, tls.VersionTLS13
	cfg.NextProtos = alpn
	return cfg, nil
}
