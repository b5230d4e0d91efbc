package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/herald-proxy/herald/internal/network/transportsocket"
	"github.com/herald-proxy/herald/internal/tlsx"
)

// QUICTransport is an upstream transport socket that secures QUIC
// connections (envoy.transport_sockets.quic QuicUpstreamTransport): QUIC
// runs its own TLS 1.3 handshake, so the socket hands out the TLS config
// instead of securing a dialed byte stream.
type QUICTransport interface {
	transportsocket.Upstream
	// QUICTLSConfig returns the client config for one new connection
	// (TLS 1.3, ALPN h3) with o applied (nil: none); an error while the
	// config is not ready (SDS).
	QUICTLSConfig(o *tlsx.HandshakeOptions) (*tls.Config, error)
}

// ErrNotQUIC is DialQUIC's error for a cluster without a QUIC transport
// socket (the config checks make it unreachable).
var ErrNotQUIC = errors.New("upstream: cluster has no QUIC transport socket")

// Envoy's QUIC client defaults (config/core/v3/protocol.proto
// QuicProtocolOptions).
const (
	// defaultQUICStreamWindow: initial_stream_window_size "defaults to
	// 16777216".
	defaultQUICStreamWindow = 16 << 20
	// defaultQUICConnWindow: initial_connection_window_size "defaults to
	// 25165824".
	defaultQUICConnWindow = 24 << 20
	// defaultQUICIdleTimeout: idle_network_timeout "If this field is not
	// present, QUICHE default 600s will be applied".
	defaultQUICIdleTimeout = 600 * time.Second
	// quicKeepAlive: connection_keepalive "If absent, ... a client
	// connection sends PINGs every 15s".
	quicKeepAlive = 15 * time.Second
)

// quicConfig is the quic-go config of a new connection to c's hosts.
func (c *Cluster) quicConfig() *quic.Config {
	stream, conn, idle := uint64(defaultQUICStreamWindow), uint64(defaultQUICConnWindow), defaultQUICIdleTimeout
	if q := c.http.http3.GetQuicProtocolOptions(); q != nil {
		if v := q.GetInitialStreamWindowSize(); v != nil {
			stream = uint64(v.GetValue())
		}
		if v := q.GetInitialConnectionWindowSize(); v != nil {
			conn = uint64(v.GetValue())
		}
		if d := q.GetIdleNetworkTimeout(); d != nil {
			idle = d.AsDuration()
		}
	}
	return &quic.Config{
		// Envoy sets the windows once; quic-go starts small and grows up
		// to the maximum, so the setting is the maximum.
		MaxStreamReceiveWindow:     stream,
		MaxConnectionReceiveWindow: conn,
		MaxIdleTimeout:             idle,
		KeepAlivePeriod:            quicKeepAlive,
		// An HTTP/3 server opens no bidirectional streams (RFC 9114 §6.1).
		MaxIncomingStreams: -1,
	}
}

// DialQUIC opens a QUIC connection to h for HTTP/3 with the per-request
// TLS options o (TLSOptionsFor; the zero options keep the context's sni),
// bounded by connect_timeout. It counts the connection as Dial does
// (upstream_cx_total, _active, _connect_fail, _connect_timeout, _destroy
// with _local/_remote, upstream_cx_connect_ms, the host's counters) and
// holds the same circuit breakers (max_connections, max_connection_pools)
// until the connection closes. Byte counters are not kept for QUIC.
func (c *Cluster) DialQUIC(ctx context.Context, h *Host, o TLSOptions) (*quic.Conn, error) {
	qt, ok := c.transport.(QUICTransport)
	if !ok {
		return nil, ErrNotQUIC
	}
	var hso *tlsx.HandshakeOptions
	if o != (TLSOptions{}) {
		hso = &tlsx.HandshakeOptions{ServerName: o.ServerName, VerifyName: o.VerifyName}
	}
	tlsConf, err := qt.QUICTLSConfig(hso)
	if err != nil {
		return nil, err
	}
	s := c.Stats
	rm := c.resources[PriorityDefault]
	if h.Stats.CxActive.Add(1) == 1 && !rm.ConnectionPools.TryAcquire() {
		rm.Overflow.UpstreamCxPoolOverflow.Inc()
		if h.Stats.CxActive.Add(-1) != 0 {
			rm.ConnectionPools.Inc()
		}
		return nil, ErrPoolOverflow
	}
	rm.Connections.Inc()
	s.UpstreamCxTotal.Inc()
	s.UpstreamCxActive.Inc()
	h.Stats.CxTotal.Add(1)

	start := c.now()
	dctx, cancel := context.WithTimeout(ctx, c.connectTimeout)
	// DialAddr binds its own UDP socket and closes it with the connection.
	qc, err := quic.DialAddr(dctx, h.Address(), tlsConf, c.quicConfig())
	timedOut := err != nil && errors.Is(dctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
	cancel()
	if err != nil {
		s.UpstreamCxConnectFail.Inc()
		h.Stats.CxConnectFail.Add(1)
		s.UpstreamCxDestroy.Inc()
		if timedOut {
			s.UpstreamCxConnectTimeout.Inc()
			s.UpstreamCxDestroyLocal.Inc()
		} else {
			s.UpstreamCxDestroyRemote.Inc()
		}
		s.UpstreamCxActive.Dec()
		releaseConn(rm, h)
		return nil, err
	}
	s.UpstreamCxConnectMs.Record(uint64(c.now().Sub(start).Milliseconds()))
	// The connection's context ends once, when it closes.
	context.AfterFunc(qc.Context(), func() {
		s.UpstreamCxDestroy.Inc()
		// quic-go reports who closed: a local CloseWithError or idle
		// timeout is local, the peer's CONNECTION_CLOSE remote.
		var ae *quic.ApplicationError
		if errors.As(context.Cause(qc.Context()), &ae) && ae.Remote {
			s.UpstreamCxDestroyRemote.Inc()
		} else {
			s.UpstreamCxDestroyLocal.Inc()
		}
		s.UpstreamCxActive.Dec()
		releaseConn(rm, h)
	})
	return qc, nil
}
