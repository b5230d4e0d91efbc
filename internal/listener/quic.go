package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/tlsx"
)

// QUICTransport is implemented by the transport socket of a QUIC
// listener's filter chains (envoy.transport_sockets.quic).
type QUICTransport interface {
	// QUICTLSConfig returns the TLS 1.3 config (ALPN h3) that QUIC
	// handshakes of the chain use; nil while its SDS secrets are not ready.
	QUICTLSConfig() *tls.Config
}

// QUICOptions are a UDP listener's udp_listener_config.quic_options that
// herald applies. Immutable after Build.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/listener/v3/quic_config.proto
type QUICOptions struct {
	// IdleTimeout is idle_timeout: a connection without network activity
	// for this long closes. Envoy: default 300 s, at least 1 ms.
	IdleTimeout time.Duration
	// HandshakeTimeout is crypto_handshake_timeout. Envoy: default 20 s, at
	// least 5 s.
	HandshakeTimeout time.Duration
	// MaxConcurrentStreams is quic_protocol_options.max_concurrent_streams:
	// the bidirectional streams a client may open at once. Envoy: 100.
	MaxConcurrentStreams uint32
	// StreamWindow and ConnectionWindow are
	// quic_protocol_options.initial_stream_window_size and
	// initial_connection_window_size, the largest receive windows. Envoy:
	// 16 MiB and 24 MiB.
	StreamWindow     uint32
	ConnectionWindow uint32

	once sync.Once
	qc   *quic.Config
}

// Envoy's quic_options defaults (quic_config.proto, protocol.proto).
const (
	DefaultQUICIdleTimeout          = 300 * time.Second
	DefaultQUICHandshakeTimeout     = 20 * time.Second
	MinQUICHandshakeTimeout         = 5 * time.Second
	DefaultQUICMaxConcurrentStreams = 100
	DefaultQUICStreamWindow         = 16 << 20
	DefaultQUICConnectionWindow     = 24 << 20
)

// DefaultQUICOptions returns Envoy's defaults.
func DefaultQUICOptions() *QUICOptions {
	return &QUICOptions{
		IdleTimeout:          DefaultQUICIdleTimeout,
		HandshakeTimeout:     DefaultQUICHandshakeTimeout,
		MaxConcurrentStreams: DefaultQUICMaxConcurrentStreams,
		StreamWindow:         DefaultQUICStreamWindow,
		ConnectionWindow:     DefaultQUICConnectionWindow,
	}
}

// quicConfig is o as quic-go's config, built once.
func (o *QUICOptions) quicConfig() *quic.Config {
	o.once.Do(func() {
		qc := &quic.Config{
			// 0-RTT is accepted as Envoy's QUIC listener does: whether a
			// connection may use it is the filter chain's
			// QuicDownstreamTransport.enable_early_data (default true),
			// which its QUICTransport's TLS config enforces on the
			// resumed session.
			Allow0RTT:                  true,
			MaxIdleTimeout:             max(o.IdleTimeout, time.Millisecond),
			HandshakeIdleTimeout:       max(o.HandshakeTimeout, MinQUICHandshakeTimeout),
			MaxIncomingStreams:         int64(o.MaxConcurrentStreams),
			MaxStreamReceiveWindow:     uint64(o.StreamWindow),
			MaxConnectionReceiveWindow: uint64(o.ConnectionWindow),
		}
		// quic-go starts small and grows the windows up to the maxima,
		// which are what Envoy's sizes bound.
		qc.InitialStreamReceiveWindow = min(512<<10, qc.MaxStreamReceiveWindow)
		qc.InitialConnectionReceiveWindow = min(512<<10*3/2, qc.MaxConnectionReceiveWindow)
		if o.MaxConcurrentStreams == 0 {
			// quic-go reads 0 as its default; Envoy's 0 would allow none.
			qc.MaxIncomingStreams = -1
		}
		o.qc = qc
	})
	return o.qc
}

// quicTransportProtocol is the transport protocol a QUIC connection
// matches in filter_chain_match.transport_protocol (Envoy's
// TransportProtocolNames Quic).
const quicTransportProtocol = "quic"

// quicListener accepts QUIC connections on a UDP socket; it is the
// net.Listener of a UDP listener, so that the accept loop, generations and
// drain are the TCP listener's. The UDP socket stays open until the
// listener is closed and its last connection has ended.
type quicListener struct {
	udp *net.UDPConn
	tr  *quic.Transport
	// ln hands out connections once the ClientHello is processed, before
	// the handshake completes, so that requests sent in 0-RTT are served
	// at once; the transport socket's Handshake waits for the handshake
	// of the others (extensions/transport_sockets/quic).
	ln  *quic.EarlyListener
	ctx context.Context
	// owner is the Listener, set by Bind right after listenQUIC; read by
	// handshakes (which may start before it is set).
	mu     sync.Mutex
	owner  *Listener
	active int  // accepted connections not yet closed
	closed bool // Close was called
}

// listenQUIC binds cfg's UDP address and starts quic-go on it.
func listenQUIC(ctx context.Context, cfg *Config) (*quicListener, error) {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, udpNetwork(cfg.Address), cfg.Address)
	if err != nil {
		return nil, err
	}
	q := &quicListener{udp: pc.(*net.UDPConn), ctx: ctx}
	q.tr = &quic.Transport{Conn: q.udp, ConnContext: quicConnContext}
	tlsConf := &tls.Config{GetConfigForClient: q.tlsConfigForClient}
	base := cfg.QUIC
	if base == nil {
		base = DefaultQUICOptions()
	}
	qconf := base.quicConfig().Clone()
	qconf.GetConfigForClient = q.quicConfigForClient
	q.ln, err = q.tr.ListenEarly(tlsConf, qconf)
	if err != nil {
		q.tr.Close()
		q.udp.Close()
		return nil, err
	}
	return q, nil
}

// quicConnContext gives every QUIC handshake the slot where certificate
// selection records the certificate herald presents
// (tlsx.ServedCertificate, x-forwarded-client-cert's By), as the TLS
// transport socket does for TCP.
func quicConnContext(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
	return tlsx.WithServedCertificate(ctx), nil
}

// udpNetwork is tcpNetwork for UDP: IPv4 addresses bind IPv4-only.
func udpNetwork(addr string) string {
	switch tcpNetwork(addr) {
	case "tcp4":
		return "udp4"
	case "tcp6":
		return "udp6"
	}
	return "udp"
}

func (q *quicListener) setOwner(l *Listener) {
	q.mu.Lock()
	q.owner = l
	q.mu.Unlock()
}

func (q *quicListener) listener() *Listener {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.owner
}

// quicConfigForClient gives a new connection the current config's
// quic_options (an update may change them on the same socket).
func (q *quicListener) quicConfigForClient(*quic.ClientInfo) (*quic.Config, error) {
	l := q.listener()
	if l == nil {
		return nil, errNotServing
	}
	o := l.cur.Load().cfg.QUIC
	if o == nil {
		o = DefaultQUICOptions()
	}
	return o.quicConfig(), nil
}

// tlsConfigForClient matches the filter chain on what the ClientHello
// says (destination, source, SNI, offered ALPN, transport protocol
// "quic") and answers with that chain's TLS config.
func (q *quicListener) tlsConfigForClient(hi *tls.ClientHelloInfo) (*tls.Config, error) {
	l := q.listener()
	if l == nil {
		return nil, errNotServing
	}
	cfg := l.cur.Load().cfg
	nc := &network.Conn{TransportProtocol: quicTransportProtocol, RequestedALPN: hi.SupportedProtos}
	if hi.Conn != nil {
		nc.Local = network.AddrPortOf(hi.Conn.LocalAddr())
		nc.Remote = network.AddrPortOf(hi.Conn.RemoteAddr())
		nc.DirectRemote = nc.Remote
	}
	nc.ServerName = lowerASCII(hi.ServerName)
	fc := cfg.pickChain(nc)
	if fc == nil {
		l.stats.noFilterChain.Inc()
		return nil, errNoChain
	}
	qt, ok := fc.Transport.(QUICTransport)
	if !ok {
		return nil, errNoChain
	}
	tc := qt.QUICTLSConfig()
	if tc == nil {
		return nil, errSecretsNotReady
	}
	return tc, nil
}

var (
	errNotServing      = errors.New("listener: QUIC listener not ready")
	errNoChain         = errors.New("listener: no QUIC filter chain matches")
	errSecretsNotReady = errors.New("listener: QUIC filter chain secrets not ready")
)

// Accept implements net.Listener: the next connection whose ClientHello
// was processed (quic.EarlyListener); the chain's transport socket waits
// for the rest of the handshake unless the connection uses 0-RTT.
func (q *quicListener) Accept() (net.Conn, error) {
	qc, err := q.ln.Accept(q.ctx)
	if err != nil {
		if errors.Is(err, quic.ErrServerClosed) || errors.Is(err, quic.ErrTransportClosed) || q.ctx.Err() != nil {
			return nil, net.ErrClosed
		}
		return nil, err
	}
	q.mu.Lock()
	q.active++
	q.mu.Unlock()
	return &quicConn{qc: qc, q: q}, nil
}

// Close implements net.Listener: no new connections; the socket closes
// once the open ones have ended.
func (q *quicListener) Close() error {
	err := q.ln.Close()
	q.mu.Lock()
	q.closed = true
	last := q.active == 0
	q.mu.Unlock()
	if last {
		q.closeSocket()
	}
	return err
}

func (q *quicListener) closeSocket() {
	q.tr.Close()
	q.udp.Close()
}

// Addr implements net.Listener: the bound UDP address.
func (q *quicListener) Addr() net.Addr { return q.udp.LocalAddr() }

// connClosed is called once per accepted connection when it closes.
func (q *quicListener) connClosed() {
	q.mu.Lock()
	q.active--
	last := q.closed && q.active == 0
	q.mu.Unlock()
	if last {
		q.closeSocket()
	}
}

// quicConn is an accepted QUIC connection as the net.Conn the listener
// tracks and hands to the filter chain. It carries no bytes itself: the
// HTTP/3 codec serves its streams (internal/http/codec/http3.Conn).
type quicConn struct {
	qc   *quic.Conn
	q    *quicListener
	once sync.Once
}

var _ net.Conn = (*quicConn)(nil)

// QUICConn returns the QUIC connection.
func (c *quicConn) QUICConn() *quic.Conn { return c.qc }

// ConnectionState is the TLS state of the QUIC handshake, so that code
// reading a connection's TLS state (network.Conn.PeerCertificate) treats
// QUIC like TLS over TCP.
func (c *quicConn) ConnectionState() tls.ConnectionState { return c.qc.ConnectionState().TLS }

// describe fills what the handshake settled into nc before the filter
// chain is matched.
func (c *quicConn) describe(nc *network.Conn) {
	cs := c.qc.ConnectionState().TLS
	nc.TransportProtocol = quicTransportProtocol
	nc.ServerName = lowerASCII(cs.ServerName)
	if cs.NegotiatedProtocol != "" {
		// quic-go does not keep the offered list; the negotiated protocol
		// is what application_protocols can match after the handshake.
		nc.RequestedALPN = []string{cs.NegotiatedProtocol}
	}
}

// errNoStreamBytes is what Read and Write on a QUIC connection return: its
// bytes travel on streams only.
var errNoStreamBytes = fmt.Errorf("listener: QUIC connection carries no byte stream: %w", net.ErrClosed)

func (c *quicConn) Read([]byte) (int, error)  { return 0, errNoStreamBytes }
func (c *quicConn) Write([]byte) (int, error) { return 0, errNoStreamBytes }

// Close closes the QUIC connection (CONNECTION_CLOSE with H3_NO_ERROR).
func (c *quicConn) Close() error {
	c.once.Do(func() {
		c.qc.CloseWithError(h3NoError, "")
		c.q.connClosed()
	})
	return nil
}

// h3NoError is H3_NO_ERROR (RFC 9114 §8.1).
const h3NoError = 0x100

func (c *quicConn) LocalAddr() net.Addr              { return c.qc.LocalAddr() }
func (c *quicConn) RemoteAddr() net.Addr             { return c.qc.RemoteAddr() }
func (c *quicConn) SetDeadline(time.Time) error      { return nil }
func (c *quicConn) SetReadDeadline(time.Time) error  { return nil }
func (c *quicConn) SetWriteDeadline(time.Time) error { return nil }

// lowerASCII lowercases an SNI (Envoy compares server names lowercase).
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
