package tls

import (
	"context"
	"net"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/herald-proxy/herald/internal/network/transportsocket"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/tlsx"
)

// Name is the Envoy name of both the downstream and the upstream socket.
const Name = "envoy.transport_sockets.tls"

func init() {
	transportsocket.RegisterDownstream(transportsocket.DownstreamExtension[*tlsv3.DownstreamTlsContext]{
		Name:   Name,
		Config: &tlsv3.DownstreamTlsContext{},
		Build:  buildDownstream,
	})
	transportsocket.RegisterUpstream(transportsocket.UpstreamExtension[*tlsv3.UpstreamTlsContext]{
		Name:   Name,
		Config: &tlsv3.UpstreamTlsContext{},
		Build:  buildUpstream,
	})
}

func buildDownstream(cfg *tlsv3.DownstreamTlsContext, ctx transportsocket.BuildContext) (transportsocket.Downstream, error) {
	srv, err := tlsx.BuildServer(cfg, ctx.Path, ctx.Secrets)
	if err != nil {
		return nil, err
	}
	return &downstream{srv: srv}, nil
}

// downstream is a built DownstreamTlsContext. Immutable.
type downstream struct{ srv *tlsx.Server }

var _ transportsocket.Downstream = (*downstream)(nil)

// ForListener implements transportsocket.Downstream: the listener's
// listener.<address>.ssl.* and server_ssl_socket_factory.* stats.
func (d *downstream) ForListener(scope stats.Scope) transportsocket.DownstreamSocket {
	st := tlsx.NewServerStats(scope)
	d.srv.Track(st)
	return &listenerSocket{srv: d.srv, stats: st}
}

// listenerSocket is the socket of one listener. Immutable.
type listenerSocket struct {
	srv   *tlsx.Server
	stats *tlsx.Stats
}

var _ transportsocket.DownstreamSocket = (*listenerSocket)(nil)

// Handshake implements transportsocket.DownstreamSocket.
func (s *listenerSocket) Handshake(c net.Conn, deadline time.Time) (net.Conn, transportsocket.Negotiated, error) {
	tc, local, err := s.srv.HandshakeServed(c, deadline, s.stats)
	if err != nil {
		return nil, transportsocket.Negotiated{}, err
	}
	cs := tc.ConnectionState()
	return tc, transportsocket.Negotiated{ServerName: cs.ServerName, ALPN: cs.NegotiatedProtocol, LocalCertificate: local}, nil
}

func buildUpstream(cfg *tlsv3.UpstreamTlsContext, ctx transportsocket.BuildContext) (transportsocket.Upstream, error) {
	cl, err := tlsx.BuildClient(cfg, ctx.Path, ctx.DefaultALPN, ctx.Secrets)
	if err != nil {
		return nil, err
	}
	u := &upstream{client: cl}
	if ctx.Stats != nil {
		u.stats = tlsx.NewClientStats(ctx.Scope)
		cl.Track(u.stats)
	}
	return u, nil
}

// upstream is a built UpstreamTlsContext with the cluster's
// cluster.<name>.ssl.* and client_ssl_socket_factory.* stats. Immutable.
type upstream struct {
	client *tlsx.Client
	stats  *tlsx.Stats
}

var _ transportsocket.Upstream = (*upstream)(nil)

// Handshake implements transportsocket.Upstream.
func (u *upstream) Handshake(ctx context.Context, c net.Conn) (net.Conn, error) {
	tc, err := u.client.Handshake(ctx, c, u.stats)
	if err != nil {
		return nil, err
	}
	return tc, nil
}
