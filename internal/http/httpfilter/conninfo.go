package httpfilter

import "crypto/x509"

// ConnectionInfo is implemented by Callbacks that can describe the
// stream's downstream TLS connection (Envoy's
// StreamInfo::downstreamAddressProvider().sslConnection()), for filters
// that decide on the client certificate (rbac's authenticated principals,
// ext_authz's source principal). The requested server name is in
// StreamInfo().RequestedServerName.
type ConnectionInfo interface {
	// DownstreamTLS reports whether the downstream connection is TLS
	// (Envoy: connection.ssl() != nullptr).
	DownstreamTLS() bool
	// PeerCertificate is the client's leaf certificate; nil without TLS or
	// when the client sent none. Callers must not modify it.
	PeerCertificate() *x509.Certificate
}

// DownstreamTLS returns what cb's ConnectionInfo says of the downstream
// connection: whether it is TLS and the client's certificate (nil when
// none); false and nil when cb does not implement ConnectionInfo.
func DownstreamTLS(cb Callbacks) (tls bool, peer *x509.Certificate) {
	ci, ok := cb.(ConnectionInfo)
	if !ok || !ci.DownstreamTLS() {
		return false, nil
	}
	return true, ci.PeerCertificate()
}
