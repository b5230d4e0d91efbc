package quic

import (
	"context"
	"crypto/tls"
	"net"
	"slices"

	quicv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/quic/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/network/transportsocket"
	"github.com/herald-proxy/herald/internal/tlsx"
	"github.com/herald-proxy/herald/internal/upstream"
)

func init() {
	transportsocket.RegisterUpstream(transportsocket.UpstreamExtension[*quicv3.QuicUpstreamTransport]{
		Name:   Name,
		Config: &quicv3.QuicUpstreamTransport{},
		Build:  buildUpstream,
	})
}

// h3ALPN is what an HTTP/3 cluster's connections offer.
var h3ALPN = []string{alpnH3}

// buildUpstream builds a QuicUpstreamTransport for a cluster speaking
// HTTP/3 (explicit_http_config.http3_protocol_options): the cluster's
// DefaultALPN is then h3. Envoy pairs the two the other way round too
// ("HTTP3 requires a QuicUpstreamTransport transport socket",
// source/common/upstream/upstream_impl.cc); a QUIC socket under an
// HTTP/1.1 or HTTP/2 cluster could carry nothing.
func buildUpstream(cfg *quicv3.QuicUpstreamTransport, ctx transportsocket.BuildContext) (transportsocket.Upstream, error) {
	errs := configerr.RejectUnlisted(cfg, ctx.Path, nil, "upstream_tls_context")
	if cfg.GetUpstreamTlsContext() == nil {
		errs = append(errs, configerr.At(ctx.Path+".upstream_tls_context", "upstream_tls_context is required"))
	}
	if !slices.Equal(ctx.DefaultALPN, h3ALPN) {
		errs = append(errs, configerr.At(ctx.Path, "%s needs a cluster with explicit_http_config.http3_protocol_options", Name))
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	// Envoy's QUIC client offers h3 whatever alpn_protocols says.
	cl, err := tlsx.BuildClient(cfg.GetUpstreamTlsContext(), ctx.Path+".upstream_tls_context", h3ALPN, ctx.Secrets)
	if err != nil {
		return nil, err
	}
	return &upstreamSocket{client: cl}, nil
}

// upstreamSocket is a built QuicUpstreamTransport. Immutable.
type upstreamSocket struct {
	client *tlsx.Client
}

var _ upstream.QUICTransport = (*upstreamSocket)(nil)

// QUICTLSConfig implements upstream.QUICTransport.
func (u *upstreamSocket) QUICTLSConfig(o *tlsx.HandshakeOptions) (*tls.Config, error) {
	return u.client.QUICConfig(h3ALPN, o)
}

// Handshake implements transportsocket.Upstream: a QUIC socket secures no
// TCP connection (the cluster dials QUIC through DialQUIC instead).
func (u *upstreamSocket) Handshake(context.Context, net.Conn) (net.Conn, error) {
	return nil, errNotQUIC
}
