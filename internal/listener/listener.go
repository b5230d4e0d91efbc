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
	conns    map[net.Conn]*generation // every open connection, with its generation
	wg       sync.WaitGroup           // the accept loop and every connection
	closed   bool                     // the socket is closed
	serving  bool                     // Serve was called
	stop     chan struct{}            // closed by CloseAll: drain timers end
	stopOnce sync.Once
}

// generation is one config of a listener and what was built for it per
// listener (transport sockets, drain signal). Connections keep the
// generation they were accepted under until they end.
type generation struct {
	cfg *Config
	// sockets[i] is the transport socket for chain index i (nil for
	// raw_buffer chains).
	sockets []transportsocket.DownstreamSocket
	drain   *network.Drain

	// Guarded by Listener.mu:
	active  int           // open connections of this generation
	retired bool          // replaced by Update or drained for removal
	done    chan struct{} // closed when retired and active == 0
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
	l := &Listener{ln: ln, ctx: ctx, conns: map[net.Conn]*generation{}, stop: make(chan struct{})}
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
	l.cur.Store(l.newGeneration(cfg))
	return l, nil
}

// newGeneration prepares cfg for this listener: chain indexes and one
// transport socket per TLS chain.
func (l *Listener) newGeneration(cfg *Config) *generation {
	g := &generation{cfg: cfg, drain: network.NewDrain(), done: make(chan struct{})}
	for i, fc := range cfg.chains() {
		fc.index = i
		var sock transportsocket.DownstreamSocket
		if fc.Transport != nil {
			sock = fc.Transport.ForListener(l.scope)
		}
		g.sockets = append(g.sockets, sock)
	}
	return g
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

// Update makes cfg the listener's config: connections accepted from now on
// use it, with no gap in accepting since the socket stays bound; the
// connections accepted under the previous config are told to drain (HTTP/1.1
// answers their next response with connection: close and closes idle ones,
// HTTP/2 sends GOAWAY) and closed when drainTime has passed. The returned
// channel is closed when the previous config's last connection has ended.
// cfg must be able to run on the bound socket (Config.SameSocket: same
// address, same protocol); Update does not rebind and panics otherwise.
//
// Envoy: "when a listener is updated, an entirely new listener is created
// (if the listener's address is unchanged, the new one uses the same listen
// socket)" and the old one drains for --drain-time-s
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/lds#config-listeners-lds).
func (l *Listener) Update(cfg *Config, drainTime time.Duration) <-chan struct{} {
	if cfg.SocketNetwork() != l.network {
		// A caller bug: a TCP socket must never serve a QUIC config (or
		// the reverse).
		panic(fmt.Sprintf("listener %s: Update from a %s socket to a %s config", cfg.Name, l.network, cfg.SocketNetwork()))
	}
	g := l.newGeneration(cfg)
	l.mu.Lock()
	old := l.cur.Swap(g)
	l.mu.Unlock()
	return l.retire(old, drainTime)
}

// retire drains generation g and closes what is left of it after
// drainTime (never when drainTime is 0 or less: the connections end on
// their own). It returns g.done.
func (l *Listener) retire(g *generation, drainTime time.Duration) <-chan struct{} {
	l.mu.Lock()
	if !g.retired {
		g.retired = true
		if g.active == 0 {
			close(g.done)
		}
	}
	l.mu.Unlock()
	g.drain.Start()
	if drainTime > 0 {
		go func() {
			t := time.NewTimer(drainTime)
			defer t.Stop()
			select {
			case <-g.done:
			case <-l.stop:
			case <-t.C:
				l.closeGeneration(g)
			}
		}()
	}
	return g.done
}

// closeGeneration closes every open connection of g.
func (l *Listener) closeGeneration(g *generation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c, cg := range l.conns {
		if cg == g {
			c.Close()
		}
	}
}

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
		l.conns[c] = g
		g.active++
		l.wg.Add(1)
		l.mu.Unlock()
		go l.serve(ctx, g, c)
	}
}

func (l *Listener) serve(ctx context.Context, g *generation, c net.Conn) {
	cfg := g.cfg
	start := time.Now()
	l.stats.cxTotal.Inc()
	l.stats.cxActive.Inc()
	nc := network.NewConn(ctx, c, g.drain)
	if qc, ok := c.(*quicConn); ok {
		qc.describe(nc)
	}
	defer func() {
		if r := recover(); r != nil {
			// Peer input must never take the process down (STYLE §5).
			slog.Error("connection panic", "listener", cfg.Name, "panic", r)
		}
		c.Close()
		nc.Closed()
		l.stats.cxActive.Dec()
		l.stats.cxDestroy.Inc()
		l.stats.cxLength.Record(uint64(time.Since(start).Milliseconds()))
		l.mu.Lock()
		delete(l.conns, c)
		g.active--
		if g.active == 0 && g.retired {
			close(g.done)
		}
		l.mu.Unlock()
		l.wg.Done()
	}()
	nc.ListenerName = cfg.Name
	nc.StatPrefix = l.statPrefix
	if cfg.BufferLimit > 0 {
		nc.BufferLimit = cfg.BufferLimit
	}
	if len(cfg.ListenerFilters) > 0 && !l.runListenerFilters(cfg, nc) {
		return
	}
	if nc.TransportProtocol == "" {
		// Envoy (ActiveTcpSocket::newConnection): "raw_buffer" when no
		// listener filter detected a transport protocol.
		nc.TransportProtocol = rawBuffer
	}
	fc := cfg.pickChain(nc)
	if fc == nil {
		l.stats.noFilterChain.Inc()
		return
	}
	if sock := g.sockets[fc.index]; sock != nil {
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
			return
		}
		nc.Conn = sc
		nc.TLS = true
		nc.ALPN = neg.ALPN
		if neg.ServerName != "" {
			nc.ServerName = strings.ToLower(neg.ServerName)
		}
	}
	for _, f := range fc.Filters {
		if !f.OnNewConnection(nc) {
			return
		}
	}
	fc.Terminal.ServeConn(nc)
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

// Drain tells every open connection, whatever config it was accepted under,
// to finish: HTTP/1.1 closes after the current response (idle ones at
// once), HTTP/2 sends GOAWAY. Connections accepted afterwards drain too.
func (l *Listener) Drain() {
	l.mu.Lock()
	gens := l.generationsLocked()
	l.mu.Unlock()
	for _, g := range gens {
		g.drain.Start()
	}
}

// Remove is a listener's end in a configuration update: it stops accepting,
// drains its connections and closes what is left after drainTime
// (Envoy: "When a listener is removed, the old listener will be placed into
// a draining state ... for some period of time before the listener is
// removed and any remaining connections are closed"). The returned channel
// is closed when the last connection has ended.
func (l *Listener) Remove(drainTime time.Duration) <-chan struct{} {
	l.StopAccepting()
	l.mu.Lock()
	gens := l.generationsLocked()
	l.mu.Unlock()
	done := make(chan struct{})
	var chans []<-chan struct{}
	for _, g := range gens {
		chans = append(chans, l.retire(g, drainTime))
	}
	go func() {
		for _, c := range chans {
			<-c
		}
		close(done)
	}()
	return done
}

// generationsLocked returns the current generation and every older one
// that still has connections.
func (l *Listener) generationsLocked() []*generation {
	cur := l.cur.Load()
	gens := []*generation{cur}
	seen := map[*generation]bool{cur: true}
	for _, g := range l.conns {
		if !seen[g] {
			seen[g] = true
			gens = append(gens, g)
		}
	}
	return gens
}

// Draining reports whether the current config drains (Drain or Remove was
// called).
func (l *Listener) Draining() bool { return l.cur.Load().drain.Draining() }

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
