package tlsx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
)

// servedKey carries a *servedCert in a server handshake's context, where
// certificate selection records the certificate it chose: crypto/tls's
// ConnectionState does not report the local certificate, and
// x-forwarded-client-cert's By needs its URI SANs.
type servedKey struct{}

// servedCert is the leaf certificate a server handshake presented.
type servedCert struct{ leaf *x509.Certificate }

// getCertificateRecording is getCertificate that also records the chosen
// leaf when the handshake context carries a *servedCert.
func (s *certSelector) getCertificateRecording(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
	c, err := s.getCertificate(hi)
	if c != nil {
		if rec, ok := hi.Context().Value(servedKey{}).(*servedCert); ok {
			rec.leaf = c.Leaf
		}
	}
	return c, err
}

// WithServedCertificate returns ctx with a slot where a server handshake
// run under it (ClientHelloInfo.Context) records the leaf certificate it
// presents; ServedCertificate reads it. QUIC listeners use it, whose
// handshakes run inside quic-go (quic.Transport.ConnContext).
func WithServedCertificate(ctx context.Context) context.Context {
	return context.WithValue(ctx, servedKey{}, &servedCert{})
}

// ServedCertificate returns the leaf certificate a handshake run under ctx
// (prepared by WithServedCertificate) presented; nil when none was chosen
// (a resumed session) or ctx has no slot.
func ServedCertificate(ctx context.Context) *x509.Certificate {
	if rec, ok := ctx.Value(servedKey{}).(*servedCert); ok {
		return rec.leaf
	}
	return nil
}
