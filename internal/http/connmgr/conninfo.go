package connmgr

import (
	"crypto/tls"
	"crypto/x509"

	"github.com/herald-proxy/herald/internal/http/codec/http3"
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
	var certs []*x509.Certificate
	switch c := nc.Conn.(type) {
	case connectionState:
		certs = c.ConnectionState().PeerCertificates
	case http3.Conn:
		// A QUIC connection: its TLS 1.3 handshake ran in quic-go, and
		// the net.Conn the listener hands over has no ConnectionState.
		certs = c.QUICConn().ConnectionState().TLS.PeerCertificates
	}
	if len(certs) > 0 {
		return certs[0]
	}
	return nil
}
