package connmgr

import (
	"crypto/tls"
	"crypto/x509"

	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

var _ httpfilter.ConnectionInfo = (*stream)(nil)

// connectionState is what a TLS transport exposes (*tls.Conn, and the
// HTTP/2 codec's peeked TLS conn).
type connectionState interface {
	ConnectionState() tls.ConnectionState
}

// DownstreamTLS implements httpfilter.ConnectionInfo.
func (as *stream) DownstreamTLS() bool { return as.c.nc.TLS }

// PeerCertificate implements httpfilter.ConnectionInfo: the leaf of the
// certificates the client presented in the handshake.
func (as *stream) PeerCertificate() *x509.Certificate {
	nc := as.c.nc
	if !nc.TLS {
		return nil
	}
	cs, ok := nc.Conn.(connectionState)
	if !ok {
		return nil
	}
	if certs := cs.ConnectionState().PeerCertificates; len(certs) > 0 {
		return certs[0]
	}
	return nil
}
