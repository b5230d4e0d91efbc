package quic

import (
	"crypto/tls"
	"net"
	"sync/atomic"
	"time"

	quicv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/quic/v3"
	quicgo "github.com/quic-go/quic-go"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/listener"
	"github.com/herald-proxy/herald/internal/network/transportsocket"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/tlsx"
)

// Name is the Envoy name of the QUIC transport socket.
const Name = "envoy.transport_sockets.quic"

// alpnH3 is the only application protocol herald's QUIC listeners speak
// (RFC 9114 §3.1).
const alpnH3 = "h3"

func init() {
	transportsocket.RegisterDownstream(transportsocket.DownstreamExtension[*quicv3.QuicDownstreamTransport]{
		Name:   Name,
		Config: &quicv3.QuicDownstreamTransport{},
		Build:  buildDownstream,
	})
}

var downstreamFields = []string{"downstream_tls_context", "enable_early_data", "enable_resumption"}

func buildDownstream(cfg *quicv3.QuicDownstreamTransport, ctx transportsocket.BuildContext) (transportsocket.Downstream, error) {
	errs := configerr.RejectUnlisted(cfg, ctx.Path, nil, downstreamFields...)
	if cfg.GetEnableEarlyData().GetValue() {
		// herald's QUIC listener does not accept 0-RTT data; leaving the
		// field unset (Envoy's default is on) only loses the 0-RTT
		// round-trip saving, while asking for it explicitly is refused.
		errs = append(errs, configerr.At(ctx.Path+".enable_early_data", "enable_early_data: true is %s (0-RTT)", configerr.NotSupported))
	}
	if cfg.GetDownstreamTlsContext() == nil {
		errs = append(errs, configerr.At(ctx.Path+".downstream_tls_context", "downstream_tls_context is required"))
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	srv, err := tlsx.BuildServer(cfg.GetDownstreamTlsContext(), ctx.Path+".downstream_tls_context", ctx.Secrets)
	if err != nil {
		return nil, err
	}
	d := &downstream{srv: srv, noTickets: cfg.GetEnableResumption() != nil && !cfg.GetEnableResumption().GetValue()}
	return d, nil
}

// downstream is a built QuicDownstreamTransport. Immutable but for the
// derived config cache.
type downstream struct {
	srv *tlsx.Server
	// noTickets is enable_resumption: false.
	noTickets bool
	// derived caches the QUIC config made from the context's current
	// crypto/tls config (which SDS may replace).
	derived atomic.Pointer[derivedConfig]
}

type derivedConfig struct {
	base, quic *tls.Config
}

var (
	_ transportsocket.Downstream = (*downstream)(nil)
	_ listener.QUICTransport     = (*downstream)(nil)
)

// ForListener implements transportsocket.Downstream.
func (d *downstream) ForListener(scope stats.Scope) transportsocket.DownstreamSocket {
	st := tlsx.NewServerStats(scope)
	d.srv.Track(st)
	return &listenerSocket{stats: st}
}

// QUICTLSConfig implements listener.QUICTransport: the context's crypto/tls
// config restricted to TLS 1.3 (QUIC's only version, RFC 9001 §4.2) with
// ALPN h3, derived once per context version. nil while SDS secrets are not
// ready.
func (d *downstream) QUICTLSConfig() *tls.Config {
	base := d.srv.Config()
	if base == nil {
		return nil
	}
	if c := d.derived.Load(); c != nil && c.base == base {
		return c.quic
	}
	q := base.Clone()
	q.MinVersion = tls.VersionTLS13
	q.MaxVersion = tls.VersionTLS13
	// Envoy's QUIC server negotiates h3 whatever alpn_protocols says; the
	// TLS socket's "no overlap, no ALPN" fallback does not apply to QUIC.
	q.NextProtos = []string{alpnH3}
	q.GetConfigForClient = nil
	if d.noTickets {
		q.SessionTicketsDisabled = true
	}
	d.derived.Store(&derivedConfig{base: base, quic: q})
	return q
}

// listenerSocket is the socket of one listener: the QUIC handshake already
// ran in quic-go when the listener accepted the connection, so Handshake
// only reports what it settled and counts it. Immutable.
type listenerSocket struct {
	stats *tlsx.Stats
}

var _ transportsocket.DownstreamSocket = (*listenerSocket)(nil)

// quicConn is the net.Conn a QUIC listener accepts.
type quicConn interface {
	QUICConn() *quicgo.Conn
}

// Handshake implements transportsocket.DownstreamSocket.
func (s *listenerSocket) Handshake(c net.Conn, _ time.Time) (net.Conn, transportsocket.Negotiated, error) {
	qc, ok := c.(quicConn)
	if !ok {
		// The snapshot only puts this socket on UDP listeners.
		return nil, transportsocket.Negotiated{}, errNotQUIC
	}
	cs := qc.QUICConn().ConnectionState().TLS
	if s.stats != nil && s.stats.Handshake != nil {
		s.stats.Handshake.Inc()
	}
	return c, transportsocket.Negotiated{ServerName: cs.ServerName, ALPN: cs.NegotiatedProtocol}, nil
}

type notQUICError struct{}

func (notQUICError) Error() string {
	return "quic: envoy.transport_sockets.quic on a connection that is not QUIC"
}

var errNotQUIC error = notQUICError{}
