package network

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/herald-proxy/herald/internal/streaminfo"
)

// Conn is one accepted downstream connection. It is owned by the goroutine
// serving the connection; the drain fields are safe for concurrent use.
type Conn struct {
	// Conn is the transport: the accepted socket, or a TLS conn over it.
	net.Conn
	// Ctx is cancelled when the server stops hard.
	Ctx context.Context
	// ListenerName is the listener's configured name.
	ListenerName string
	// StatPrefix is the listener's stat prefix, "listener.<address>.".
	StatPrefix string
	// LocalAddr and RemoteAddr are the socket's addresses (after
	// proxy_protocol / original_dst, when those listener filters ran).
	Local  netip.AddrPort
	Remote netip.AddrPort
	// DirectRemote is the socket peer, whatever proxy_protocol said.
	DirectRemote netip.AddrPort
	// TLS is true when the transport socket is TLS.
	TLS bool
	// ServerName is the SNI the client sent, "" when none.
	ServerName string
	// ALPN is the negotiated application protocol ("h2", "http/1.1"), "" when none.
	ALPN string
	// TransportProtocol is what listener filters detected: "tls"
	// (tls_inspector), else "raw_buffer" once they ran (Envoy's default
	// for filter_chain_match.transport_protocol).
	TransportProtocol string
	// RequestedALPN are the application protocols the client offered, in
	// its order (tls_inspector's ALPN, http_inspector's "h2c" or
	// "http/1.1"), for filter_chain_match.application_protocols.
	RequestedALPN []string
	// JA3Hash is the client's JA3 fingerprint (MD5, lowercase hex) when
	// tls_inspector computed it (enable_ja3_fingerprinting), else "".
	JA3Hash string
	// LocalCertificate is the leaf certificate herald presented in the TLS
	// handshake, nil without TLS or when the transport socket does not
	// report it (x-forwarded-client-cert's By).
	LocalCertificate *x509.Certificate
	// Accepted is when the listener accepted the connection.
	Accepted time.Time
	// BufferLimit is per_connection_buffer_limit_bytes (Envoy default 1 MiB).
	BufferLimit int

	drain *Drain
	// Owned by the conn goroutine: what network filters asked to run at
	// close, and the filter state they set.
	onClose     []func()
	filterState []filterStateEntry
}

// filterStateEntry is one key of a connection's filter state.
type filterStateEntry struct {
	key   string
	value any
}

// FilterStateTCPProxyCluster is the filter state key whose string value
// overrides tcp_proxy's cluster for the connection (Envoy's
// TcpProxy::PerConnectionCluster, set by envoy.filters.network.sni_cluster).
const FilterStateTCPProxyCluster = "envoy.tcp_proxy.cluster"

// SetFilterState sets key to v on the connection, replacing an earlier
// value (Envoy's connection-lifetime filter state, for the small set of
// well-known keys herald's filters exchange). Owned by the conn goroutine.
func (c *Conn) SetFilterState(key string, v any) {
	for i := range c.filterState {
		if c.filterState[i].key == key {
			c.filterState[i].value = v
			return
		}
	}
	c.filterState = append(c.filterState, filterStateEntry{key: key, value: v})
}

// FilterState is the value a filter set for key, nil when none did.
func (c *Conn) FilterState(key string) any {
	for i := range c.filterState {
		if c.filterState[i].key == key {
			return c.filterState[i].value
		}
	}
	return nil
}

// StreamInfo returns a new record of the connection for L4 filters'
// access logs and format strings (Envoy's connection-level StreamInfo):
// addresses, SNI, JA3 and the dynamic metadata listener filters left in
// filter state (the proxy_protocol TLV rules).
func (c *Conn) StreamInfo() *streaminfo.Info {
	info := &streaminfo.Info{
		StartTime:               c.Accepted,
		DownstreamRemoteAddress: c.Remote,
		DownstreamLocalAddress:  c.Local,
		DirectRemoteAddress:     c.DirectRemote,
		RequestedServerName:     c.ServerName,
		JA3Hash:                 c.JA3Hash,
	}
	if md, ok := c.FilterState(streaminfo.FilterStateDynamicMetadata).(map[string]*structpb.Struct); ok {
		info.DynamicMetadata = md
	}
	return info
}

// OnClose registers fn to run once the connection is done (its terminal
// filter returned, or a filter refused it, and the socket is closed):
// Envoy's ConnectionEvent::LocalClose/RemoteClose for filters that keep
// per-connection accounting (connection_limit). Callbacks run in reverse
// order of registration. Owned by the conn goroutine.
func (c *Conn) OnClose(fn func()) { c.onClose = append(c.onClose, fn) }

// Closed runs the OnClose callbacks; the listener calls it once, after
// closing the socket.
func (c *Conn) Closed() {
	for i := len(c.onClose) - 1; i >= 0; i-- {
		c.onClose[i]()
	}
	c.onClose = nil
}

// NewConn wraps c for drain signal d (may be nil).
func NewConn(ctx context.Context, c net.Conn, d *Drain) *Conn {
	nc := &Conn{Conn: c, Ctx: ctx, drain: d, Accepted: time.Now(), BufferLimit: 1 << 20}
	nc.Local = AddrPortOf(c.LocalAddr())
	nc.Remote = AddrPortOf(c.RemoteAddr())
	nc.DirectRemote = nc.Remote
	return nc
}

// SetDrain replaces the drain signal c follows. The listener calls it once,
// on the conn goroutine, when it has matched c's filter chain and before any
// network filter sees c: a filter-chain-only listener update drains the
// connections of the chains it changed and leaves the others alone.
func (c *Conn) SetDrain(d *Drain) { c.drain = d }

// Draining reports whether the listener that accepted c is draining.
func (c *Conn) Draining() bool { return c.drain != nil && c.drain.Draining() }

// OnDrain registers fn to run once when the listener starts draining (at
// once if it already is). The returned function unregisters it; call it when
// the connection ends.
func (c *Conn) OnDrain(fn func()) (unregister func()) {
	if c.drain == nil {
		return func() {}
	}
	return c.drain.Register(fn)
}

// AddrPortOf converts a net.Addr of TCP or UDP to netip.AddrPort (zero when
// it is neither).
func AddrPortOf(a net.Addr) netip.AddrPort {
	switch v := a.(type) {
	case *net.TCPAddr:
		ap := v.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case *net.UDPAddr:
		ap := v.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// Drain is a listener's drain signal: connections register a callback and
// are told once when draining starts.
type Drain struct {
	draining atomic.Bool
	mu       sync.Mutex
	next     uint64
	fns      map[uint64]func()
}

// NewDrain returns a signal that is not draining.
func NewDrain() *Drain { return &Drain{fns: map[uint64]func(){}} }

// Draining reports whether Start was called.
func (d *Drain) Draining() bool { return d.draining.Load() }

// Register adds fn; it runs at once when already draining.
func (d *Drain) Register(fn func()) func() {
	d.mu.Lock()
	if d.draining.Load() {
		d.mu.Unlock()
		fn()
		return func() {}
	}
	id := d.next
	d.next++
	d.fns[id] = fn
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		delete(d.fns, id)
		d.mu.Unlock()
	}
}

// Start begins draining: every registered callback runs once.
func (d *Drain) Start() {
	d.mu.Lock()
	if d.draining.Swap(true) {
		d.mu.Unlock()
		return
	}
	fns := d.fns
	d.fns = map[uint64]func(){}
	d.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// tlsState is what a TLS transport exposes (*tls.Conn, the QUIC
// listener's connection).
type tlsState interface {
	ConnectionState() tls.ConnectionState
}

// PeerCertificate is the leaf certificate the client presented in the TLS
// handshake, nil without TLS or without a client certificate. It takes the
// TLS connection's lock and copies its state: call it when a rule needs it.
func (c *Conn) PeerCertificate() *x509.Certificate {
	if !c.TLS {
		return nil
	}
	if cs, ok := c.Conn.(tlsState); ok {
		if certs := cs.ConnectionState().PeerCertificates; len(certs) > 0 {
			return certs[0]
		}
	}
	return nil
}
