package quic

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
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
	resumption := cfg.GetEnableResumption() == nil || cfg.GetEnableResumption().GetValue()
	earlyData := earlyDataDefault(cfg)
	if v := cfg.GetEnableEarlyData(); v != nil {
		earlyData = v.GetValue()
		if earlyData && !resumption {
			errs = append(errs, configerr.At(ctx.Path+".enable_early_data", "enable_early_data requires enable_resumption (0-RTT resumes a session)"))
		}
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
	d := &downstream{srv: srv, noTickets: !resumption, noEarlyData: !earlyData || !resumption}
	return d, nil
}

// earlyDataDefault is enable_early_data's default: true, except when the
// TLS context validates client certificates. Envoy: "Defaults to true,
// except when a client certificate validation context is configured, in
// which case it defaults to false. Early data requires resumption, so it
// cannot be enabled unless enable_resumption is also true."
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/transport_sockets/quic/v3/quic_transport.proto#extensions-transport-sockets-quic-v3-quicdownstreamtransport)
func earlyDataDefault(cfg *quicv3.QuicDownstreamTransport) bool {
	return cfg.GetDownstreamTlsContext().GetCommonTlsContext().GetValidationContextType() == nil
}

// downstream is a built QuicDownstreamTransport. Immutable but for the
// derived config cache.
type downstream struct {
	srv *tlsx.Server
	// noTickets is enable_resumption: false.
	noTickets bool
	// noEarlyData: enable_early_data is false (or resumption is off);
	// resumed sessions then never carry 0-RTT data and new tickets do not
	// offer it.
	noEarlyData bool
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
	if d.noEarlyData {
		refuseEarlyData(q)
	}
	d.derived.Store(&derivedConfig{base: base, quic: q})
	return q
}

// refuseEarlyData makes q's handshakes refuse 0-RTT, as Envoy's
// enable_early_data: false tells TLS to "reject any early data and to stop
// issuing 0-RTT credentials with resumption session tickets": tickets are
// issued without the early-data permission, and a presented ticket loses it
// (the client's 0-RTT data is rejected, the session still resumes). The
// QUIC listener accepts 0-RTT for every connection (quic.Config
// Allow0RTT); crypto/tls decides with the session state.
func refuseEarlyData(q *tls.Config) {
	wrap, unwrap := q.WrapSession, q.UnwrapSession
	if wrap == nil {
		wrap = q.EncryptTicket
	}
	if unwrap == nil {
		unwrap = q.DecryptTicket
	}
	q.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		ss.EarlyData = false
		return wrap(cs, ss)
	}
	q.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := unwrap(identity, cs)
		if ss != nil {
			ss.EarlyData = false
		}
		return ss, err
	}
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

// Handshake implements transportsocket.DownstreamSocket. The QUIC
// listener hands connections over once their ClientHello is processed: a
// connection that resumed a session with 0-RTT data goes on at once, so
// that the requests it sent in early data are answered without waiting a
// round trip (Envoy's QUIC server session creates their streams as the
// data arrives; quic-go's HTTP/3 server, like Envoy's, serves requests
// received in 0-RTT as any other — "it's the client's responsibility to
// decide which requests are eligible for 0-RTT", RFC 9114 §10.9, RFC 8470).
// Replay: Envoy adds nothing downstream for early data — its
// EnvoyQuicServerStream::OnInitialHeadersComplete hands a 0-RTT request to
// the connection manager like any other, with no Early-Data: 1 header
// (RFC 8470 §5.1) and no 425 for non-idempotent methods — so herald does
// not either; the operator's replay control is enable_early_data: false
// ("This will prevent clients from sending 0-RTT requests",
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/transport_sockets/quic/v3/quic_transport.proto),
// and its default is off where client certificates are validated.
// Any other connection waits here until its handshake completes, or fails,
// or the deadline passes. LocalCertificate is the certificate the
// handshake presented (recorded by the listener's connection context), for
// x-forwarded-client-cert's By.
func (s *listenerSocket) Handshake(c net.Conn, deadline time.Time) (net.Conn, transportsocket.Negotiated, error) {
	qc, ok := c.(quicConn)
	if !ok {
		// The snapshot only puts this socket on UDP listeners.
		return nil, transportsocket.Negotiated{}, errNotQUIC
	}
	conn := qc.QUICConn()
	if !conn.ConnectionState().Used0RTT {
		if err := waitHandshake(conn, deadline); err != nil {
			return nil, transportsocket.Negotiated{}, err
		}
	}
	cs := conn.ConnectionState().TLS
	if s.stats != nil && s.stats.Handshake != nil {
		s.stats.Handshake.Inc()
	}
	return c, transportsocket.Negotiated{
		ServerName:       cs.ServerName,
		ALPN:             cs.NegotiatedProtocol,
		LocalCertificate: tlsx.ServedCertificate(conn.Context()),
	}, nil
}

// waitHandshake waits for conn's handshake to complete.
func waitHandshake(conn *quicgo.Conn, deadline time.Time) error {
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-conn.HandshakeComplete():
		return nil
	case <-conn.Context().Done():
		return fmt.Errorf("quic: handshake: %w", context.Cause(conn.Context()))
	case <-timeout:
		return errHandshakeTimeout
	}
}

// errHandshakeTimeout is a net.Error with Timeout, so that the listener
// counts it as a transport socket timeout.
var errHandshakeTimeout error = &net.OpError{Op: "handshake", Net: "udp", Err: os.ErrDeadlineExceeded}

type notQUICError struct{}

func (notQUICError) Error() string {
	return "quic: envoy.transport_sockets.quic on a connection that is not QUIC"
}

var errNotQUIC error = notQUICError{}
