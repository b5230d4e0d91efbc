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

// servedCert is the leaf certificate a server handshake presented. It is
// also a context (the one it was made from, where servedKey{} finds the
// slot itself), so that a handshake context with the slot costs one
// allocation rather than a slot and a context.WithValue.
type servedCert struct {
	context.Context
	leaf *x509.Certificate
}

// Value implements context.Context; every other key is the parent's,
// including the context package's own (cancellation propagates as from
// the parent).
func (s *servedCert) Value(key any) any {
	if key == (servedKey{}) {
		return s
	}
	return s.Context.Value(key)
}

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
	return &servedCert{Context: ctx}
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
