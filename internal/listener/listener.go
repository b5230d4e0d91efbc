package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/listenerfilter"
	"github.com/herald-proxy/herald/internal/network/netfilter"
	"github.com/herald-proxy/herald/internal/network/sockio"
	"github.com/herald-proxy/herald/internal/network/transportsocket"
	"github.com/herald-proxy/herald/internal/stats"
)

// FilterChain is a built filter chain: a transport socket, connection
// filters, then a terminal. Immutable after Build.
type FilterChain struct {
	Name     string
	Filters  []netfilter.ConnectionFilter
	Terminal netfilter.Terminal
	// Transport is the chain's transport socket (TLS), nil for raw_buffer.
	Transport transportsocket.Downstream
	// TransportSocketConnectTimeout is transport_socket_connect_timeout;
	// 0 when unset (see Listener.handshakeDeadline).
	TransportSocketConnectTimeout time.Duration
	// index is the chain's position in Config.chains(), set by Start.
	index int
}

// Config is a built listener. Immutable.
type Config struct {
	Name string
	// Network is "tcp", or "udp" for a QUIC listener (HTTP/3).
	Network string
	// QUIC is udp_listener_config.quic_options of a "udp" listener (nil:
	// Envoy's defaults).
	QUIC *QUICOptions
	// Address is the configured address ("0.0.0.0:10000", "[::1]:0").
	Address string
	// Chains are the filter chains, in config order.
	Chains []*FilterChain
	// Default is default_filter_chain, or nil.
	Default *FilterChain
	// Matcher is the compiled filter_chain_match of Chains (with Default
	// as its fallback); nil selects Chains[0], else Default.
	Matcher *ChainMatcher
	// FilterChainMatcher is filter_chain_matcher; when set it selects the
	// chain and Matcher is unused.
	FilterChainMatcher *FilterChainMatcher
	// ListenerFilters run in order on each accepted connection before the
	// chain is matched.
	ListenerFilters []listenerfilter.Filter
	// ListenerFiltersTimeout is listener_filters_timeout (Envoy default
	// 15 s; 0 disables it).
	ListenerFiltersTimeout time.Duration
	// ContinueOnListenerFiltersTimeout is
	// continue_on_listener_filters_timeout: on timeout, match a chain with
	// what the filters learnt instead of closing.
	ContinueOnListenerFiltersTimeout bool
	// BufferLimit is per_connection_buffer_limit_bytes (Envoy default 1 MiB).
	BufferLimit int
	// Inbound is false for listeners with traffic_direction OUTBOUND
	// (/drain_listeners?inboundonly skips them).
	Inbound bool
	// UseOriginalDst is use_original_dst: a connection whose original
	// destination (restored by the original_dst listener filter) is
	// another listener's address is handed to that listener (Directory).
	UseOriginalDst bool
}

// SocketNetwork returns the protocol of the socket c binds: "udp" for a QUIC
// listener, else "tcp".
func (c *Config) SocketNetwork() string {
	if c.Network == "udp" {
		return "udp"
	}
	return "tcp"
}

// SameSocket reports whether a listener of config o can run on the socket
// bound for c: same address and same protocol (TCP or UDP). When it cannot,
// an update binds a new socket and the old one drains and is removed.
//
// Envoy (ListenerManagerImpl::setupSocketFactoryForListener): the existing
// socket is reused only if the listener has a compatible address (same
// addresses and same socket type); otherwise a new listen socket is created
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/lds#config-listeners-lds).
func (c *Config) SameSocket(o *Config) bool {
	return c.Address == o.Address && c.SocketNetwork() == o.SocketNetwork()
}

// Listener is one running listener: a bound socket and the config its new
// connections use. Its config can be replaced while it runs (Update): the
// socket stays bound, new connections take the new config at once, and the
// connections accepted under the old one drain.
type Listener struct {
	ln    net.Listener
	bound netip.AddrPort
	// network is the socket's protocol, "tcp" or "udp" (QUIC).
	network string
	// statPrefix is "listener.<bound address>.".
	statPrefix string
	stats      listenerStats
	scope      stats.Scope
	ctx        context.Context

	// cur is the generation new connections are accepted under. It is
	// read by the accept loop under mu (so that Update never races a
	// connection into a generation that already drains) and lock-free by
	// Config.
	cur atomic.Pointer[generation]

	mu       sync.Mutex
	conns    map[net.Conn]*chainState // every open connection, with the chain state it counts in
	wg       sync.WaitGroup           // the accept loop and every connection
	closed   bool                     // the socket is closed
	serving  bool                     // Serve was called
	stop     chan struct{}            // closed by CloseAll: drain timers end
	stopOnce sync.Once

	// dir finds the listener a use_original_dst connection is handed to;
	// set once before Serve (SetDirectory), nil when none.
	dir *atomic.Pointer[Directory]
}

type listenerStats struct {
	cxTotal          *stats.Counter
	cxActive         *stats.Gauge
	cxDestroy        *stats.Counter
	cxLength         *stats.Histogram
	noFilterChain    *stats.Counter
	cxOverflow       *stats.Counter
	globalCxOverflow *stats.Counter
	preCxTimeout     *stats.Counter
	preCxActive      *stats.Gauge
	transportTimeout *stats.Counter
}

// StatPrefix returns Envoy's listener stat prefix for a bound address:
// "listener.127.0.0.1_10000." ("listener.[__1]_10000." for IPv6).
func StatPrefix(a netip.AddrPort) string {
	host := a.Addr().String()
	if a.Addr().Is6() {
		host = "[" + strings.ReplaceAll(host, ":", "_") + "]"
	}
	return fmt.Sprintf("listener.%s_%d.", host, a.Port())
}

// Start binds cfg's address and begins accepting.
func Start(ctx context.Context, cfg *Config, store *stats.Store) (*Listener, error) {
	l, err := Bind(ctx, cfg, store)
	if err != nil {
		return nil, err
	}
	l.Serve()
	return l, nil
}

// Bind binds cfg's address without accepting yet: a configuration update
// binds every new socket first, so that a failing bind rejects the whole
// update (Close releases the socket), and calls Serve once the update
// commits. ctx is the server's: connections end when it is cancelled.
func Bind(ctx context.Context, cfg *Config, store *stats.Store) (*Listener, error) {
	var ln net.Listener
	var err error
	var ql *quicListener
	if cfg.Network == "udp" {
		ql, err = listenQUIC(ctx, cfg)
		ln = ql
	} else {
		var lc net.ListenConfig
		ln, err = lc.Listen(ctx, tcpNetwork(cfg.Address), cfg.Address)
	}
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", cfg.Name, err)
	}
	l := &Listener{ln: ln, ctx: ctx, conns: map[net.Conn]*chainState{}, stop: make(chan struct{})}
	if ql != nil {
		defer ql.setOwner(l)
	}
	l.bound = network.AddrPortOf(ln.Addr())
	l.network = cfg.SocketNetwork()
	l.statPrefix = StatPrefix(l.bound)
	sc := store.Scope(l.statPrefix)
	l.scope = sc
	l.stats = listenerStats{
		cxTotal:       sc.Counter("downstream_cx_total"),
		cxActive:      sc.Gauge("downstream_cx_active"),
		cxDestroy:     sc.Counter("downstream_cx_destroy"),
		cxLength:      sc.Histogram("downstream_cx_length_ms", stats.Milliseconds),
		noFilterChain: sc.Counter("no_filter_chain_match"),
		cxOverflow:    sc.Counter("downstream_cx_overflow"),
		// Envoy's listener stats
		// (https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/stats).
		preCxTimeout:     sc.Counter("downstream_pre_cx_timeout"),
		preCxActive:      sc.Gauge("downstream_pre_cx_active"),
		transportTimeout: sc.Counter("downstream_cx_transport_socket_connect_timeout"),
	}
	l.cur.Store(l.newGeneration(cfg, nil, nil))
	return l, nil
}

// Serve starts accepting on a listener from Bind. It is a no-op after the
// first call or after Close.
func (l *Listener) Serve() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.serving || l.closed {
		return
	}
	l.serving = true
	l.wg.Add(1)
	go l.acceptLoop(l.ctx)
}

// Close releases a listener that Bind returned and that was never served
// (a rejected update). For a serving listener it is CloseAll.
func (l *Listener) Close() { l.CloseAll() }

// tcpNetwork binds IPv4 addresses IPv4-only and IPv6 addresses IPv6-only, as
// Envoy does (0.0.0.0 is not dual-stack; use [::] with ipv4_compat for that).
func tcpNetwork(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "tcp"
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Is4() {
			return "tcp4"
		}
		return "tcp6"
	}
	return "tcp"
}

// Name returns the name of the listener's current config.
func (l *Listener) Name() string { return l.cur.Load().cfg.Name }

// Config returns the config new connections use.
func (l *Listener) Config() *Config { return l.cur.Load().cfg }

// Bound returns the address the socket is bound to (port 0 resolved).
func (l *Listener) Bound() netip.AddrPort { return l.bound }

// Network returns the socket's protocol: "tcp", or "udp" for a QUIC
// listener.
func (l *Listener) Network() string { return l.network }

// LocalAddr returns the bound address with its protocol: a *net.TCPAddr,
// or a *net.UDPAddr for a QUIC listener (what /listeners reports).
func (l *Listener) LocalAddr() net.Addr {
	if l.network == "udp" {
		return net.UDPAddrFromAddrPort(l.bound)
	}
	return net.TCPAddrFromAddrPort(l.bound)
}

func (l *Listener) acceptLoop(ctx context.Context) {
	defer l.wg.Done()
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary errors (EMFILE...): back off as net/http does.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			slog.Warn("accept failed", "listener", l.Name(), "error", err)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return
			}
			continue
		}
		delay = 0
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			continue
		}
		g := l.cur.Load()
		l.conns[c] = g.pending
		g.pending.active++
		l.wg.Add(1)
		l.mu.Unlock()
		go l.serve(ctx, g, c)
	}
}

func (l *Listener) serve(ctx context.Context, g *generation, c net.Conn) {
	nc := network.NewConn(ctx, c, g.pending.drain)
	if qc, ok := c.(*quicConn); ok {
		qc.describe(nc)
	}
	// A use_original_dst hand-off continues on the target listener, which
	// does not hand off again (Envoy passes
	// hand_off_restored_destination_connections = false).
	cur, handOff := l, true
	for cur != nil {
		cur, g = cur.serveConn(g, c, nc, handOff)
		handOff = false
	}
}

// serveConn runs nc, counted in l's generation g, from its listener filters
// on. It returns the listener (and its generation) the connection was
// handed off to, or nil when it ended here.
func (l *Listener) serveConn(g *generation, c net.Conn, nc *network.Conn, handOff bool) (next *Listener, ng *generation) {
	cfg := g.cfg
	// start is set once c counts in the listener's downstream_cx_* stats.
	var start time.Time
	defer func() {
		if r := recover(); r != nil {
			// Peer input must never take the process down (STYLE §5).
			slog.Error("connection panic", "listener", cfg.Name, "panic", r)
			next = nil
		}
		if !start.IsZero() {
			l.stats.cxActive.Dec()
			l.stats.cxDestroy.Inc()
			l.stats.cxLength.Record(uint64(time.Since(start).Milliseconds()))
		}
		if next == nil {
			c.Close()
			nc.Closed()
		}
		l.leave(c)
		l.wg.Done()
	}()
	nc.ListenerName = cfg.Name
	nc.StatPrefix = l.statPrefix
	if cfg.BufferLimit > 0 {
		nc.BufferLimit = cfg.BufferLimit
	}
	accepted := nc.Local
	if len(cfg.ListenerFilters) > 0 && !l.runListenerFilters(cfg, nc) {
		return nil, nil
	}
	if handOff && cfg.UseOriginalDst {
		if t := l.handOffTarget(accepted, nc.Local); t != nil {
			if tg := t.adopt(c); tg != nil {
				nc.SetDrain(tg.pending.drain)
				return t, tg
			}
		}
	}
	// A filter-chain-only update may have replaced the config while the
	// listener filters ran.
	g = g.latest()
	cfg = g.cfg
	if nc.TransportProtocol == "" {
		// Envoy (ActiveTcpSocket::newConnection): "raw_buffer" when no
		// listener filter detected a transport protocol.
		nc.TransportProtocol = rawBuffer
	}
	picked := cfg.pickChain(nc)
	if picked == nil {
		l.stats.noFilterChain.Inc()
		return nil, nil
	}
	// From here the connection belongs to its chain: it drains and closes
	// with it. A chain kept by a filter-chain-only update runs on the
	// chain built first (cs.fc), as Envoy keeps the FilterChainImpl.
	cs := l.join(c, g.chains[picked.index])
	if cs == nil {
		return nil, nil
	}
	// Envoy counts a connection in the listener's downstream_cx_* once it
	// has a filter chain (the ActiveTcpConnection constructor), not while
	// in its listener filters (downstream_pre_cx_active), nor when it is
	// handed off to another listener or matches no chain
	// (ActiveTcpListener::newConnection,
	// https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/stats).
	start = time.Now()
	l.stats.cxTotal.Inc()
	l.stats.cxActive.Inc()
	nc.SetDrain(cs.drain)
	fc := cs.fc
	if sock := cs.sock; sock != nil {
		raw := nc.Conn
		if tc, ok := raw.(*net.TCPConn); ok {
			// The TLS record layer reads and writes through sockio's raw
			// non-blocking calls, like plaintext connections do.
			raw = sockio.Wrap(tc)
		}
		sc, neg, err := sock.Handshake(raw, cfg.handshakeDeadline(fc, nc.Accepted))
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				l.stats.transportTimeout.Inc()
			}
			slog.Debug("transport socket handshake failed", "listener", cfg.Name, "remote", nc.Remote.String(), "error", err)
			return nil, nil
		}
		nc.Conn = sc
		nc.TLS = true
		nc.ALPN = neg.ALPN
		nc.LocalCertificate = neg.LocalCertificate
		if neg.ServerName != "" {
			nc.ServerName = strings.ToLower(neg.ServerName)
		}
	}
	for _, f := range fc.Filters {
		if !f.OnNewConnection(nc) {
			return nil, nil
		}
	}
	fc.Terminal.ServeConn(nc)
	return nil, nil
}

const rawBuffer = "raw_buffer"

// handshakeDeadline bounds a chain's transport socket handshake by
// transport_socket_connect_timeout, counted from accept. Envoy applies no
// bound when it is unset and relies on the network filters' idle timers,
// which run during the handshake there; herald's handshake runs before the
// network filters, so it is bounded by listener_filters_timeout instead
// (default 15 s; 0 leaves it unbounded).
func (c *Config) handshakeDeadline(fc *FilterChain, accepted time.Time) time.Time {
	d := fc.TransportSocketConnectTimeout
	if d == 0 {
		d = c.ListenerFiltersTimeout
	}
	if d == 0 {
		return time.Time{}
	}
	return accepted.Add(d)
}

// pickChain selects the filter chain for a connection.
func (c *Config) pickChain(nc *network.Conn) *FilterChain {
	if c.FilterChainMatcher != nil {
		return c.FilterChainMatcher.Match(nc)
	}
	if c.Matcher != nil {
		return c.Matcher.Match(nc)
	}
	if len(c.Chains) > 0 {
		return c.Chains[0]
	}
	return c.Default
}

// chains returns every chain of the config, the default last.
func (c *Config) chains() []*FilterChain {
	out := append([]*FilterChain(nil), c.Chains...)
	if c.Default != nil {
		out = append(out, c.Default)
	}
	return out
}

// StopAccepting closes the socket; open connections go on.
func (l *Listener) StopAccepting() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.ln.Close()
}

// ActiveConnections returns the number of open connections.
func (l *Listener) ActiveConnections() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// Wait blocks until every connection has ended or ctx is done; then it
// closes what is left.
func (l *Listener) Wait(ctx context.Context) {
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		l.CloseAll()
		<-done
	}
}

// CloseAll closes the socket and every open connection.
func (l *Listener) CloseAll() {
	l.StopAccepting()
	l.stopOnce.Do(func() { close(l.stop) })
	l.mu.Lock()
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
}
