package connmgr

import (
	"crypto/x509"

	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

var _ httpfilter.ConnectionInfo = (*stream)(nil)

// DownstreamTLS implements httpfilter.ConnectionInfo.
func (as *stream) DownstreamTLS() bool { return as.c.nc.TLS }

// PeerCertificate implements httpfilter.ConnectionInfo: the leaf of the
// certificates the client presented in the handshake (TLS over TCP or
// QUIC).
func (as *stream) PeerCertificate() *x509.Certificate { return as.c.nc.PeerCertificate() }
