package tlsx

import (
	"context"
	"crypto/tls"
	"net/url"
)

// HandshakeOptions are per-connection overrides of a client context,
// Envoy's transport socket options set by the router from
// upstream_http_protocol_options (auto_sni, auto_san_validation):
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#envoy-v3-api-msg-config-core-v3-upstreamhttpprotocoloptions
type HandshakeOptions struct {
	// ServerName replaces the context's sni when not empty.
	ServerName string
	// VerifyName, when not empty, must be one of the server certificate's
	// subject alternative names, in addition to the context's own
	// validation (Envoy's verifySubjectAltNameListOverride: DNS SANs by
	// dnsNameMatch, others compared as strings); a mismatch fails as
	// fail_verify_san.
	VerifyName string
	// ALPNFallback, when not empty, replaces the cluster's default ALPN
	// for this connection if the context configures no alpn_protocols:
	// Envoy's connection pools set their protocol's ALPN as the fallback
	// (an HTTP/2 pool of a use_downstream_protocol_config cluster offers
	// h2).
	ALPNFallback string
}

type handshakeOptionsKey struct{}

// WithHandshakeOptions returns ctx carrying o for Client.Handshake.
func WithHandshakeOptions(ctx context.Context, o *HandshakeOptions) context.Context {
	return context.WithValue(ctx, handshakeOptionsKey{}, o)
}

// withOptions is cfg adjusted to o (a copy; cfg is shared).
func withOptions(cfg *tls.Config, o *HandshakeOptions) *tls.Config {
	cfg = cfg.Clone()
	if o.ServerName != "" {
		cfg.ServerName = o.ServerName
	}
	if o.ALPNFallback != "" {
		cfg.NextProtos = []string{o.ALPNFallback}
	}
	if o.VerifyName != "" {
		prev, name := cfg.VerifyConnection, o.VerifyName
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if prev != nil {
				if err := prev(cs); err != nil {
					return err
				}
			}
			return verifyName(cs, name)
		}
	}
	return cfg
}

// verifyName checks that the leaf certificate has name as a SAN.
func verifyName(cs tls.ConnectionState, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return &verifyError{kind: ErrNoCertificate}
	}
	leaf := cs.PeerCertificates[0]
	for _, san := range leaf.DNSNames {
		if dnsNameMatch(name, san) {
			return nil
		}
	}
	// Envoy compares non-DNS SANs as strings (Utility::generalNameAsString
	// == name), IPs in the form matchSAN also uses.
	for _, san := range leaf.IPAddresses {
		if ipString(san) == name {
			return nil
		}
	}
	for _, san := range leaf.URIs {
		if (*url.URL)(san).String() == name {
			return nil
		}
	}
	for _, san := range leaf.EmailAddresses {
		if san == name {
			return nil
		}
	}
	return &verifyError{kind: ErrVerifySAN}
}
