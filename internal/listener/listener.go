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
	"time"

	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/netfilter"
	"github.com/herald-proxy/herald/internal/stats"
)

// FilterChain is a built filter chain: connection filters then a terminal.
// Immutable after Build.
type FilterChain struct {
	Name     string
	Filters  []netfilter.ConnectionFilter
	Terminal netfilter.Terminal
}

// Config is a built listener. Immutable.
type Config struct {
	Name string
	// Network is "tcp" (UDP listeners come with HTTP/3).
	Network string
	// Address is the configured address ("0.0.0.0:10000", "[::1]:0").
	Address string
	// Chains are the filter chains; filter_chain_match is not interpreted
	// yet, so there is one chain (or a default chain).
	Chains []*FilterChain
	// Default is default_filter_chain, or nil.
	Default *FilterChain
	// BufferLimit is per_connection_buffer_limit_bytes (Envoy default 1 MiB).
	BufferLimit int
	// Inbound is false for listeners with traffic_direction OUTBOUND
	// (/drain_listeners?inboundonly skips them).
	Inbound bool
}

// Listener is one running listener: a bound socket and the config its new
// connections use.
type Listener struct {
	cfg   *Config
	ln    net.Listener
	bound netip.AddrPort
	// statPrefix is "listener.<bound address>.".
	statPrefix string
	drain      *network.Drain
	stats      listenerStats

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
	closed bool
}

type listenerStats struct {
	cxTotal          *stats.Counter
	cxActive         *stats.Gauge
	cxDestroy        *stats.Counter
	cxLength         *stats.Histogram
	noFilterChain    *stats.Counter
	cxOverflow       *stats.Counter
	globalCxOverflow *stats.Counter
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
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, tcpNetwork(cfg.Address), cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", cfg.Name, err)
	}
	l := &Listener{cfg: cfg, ln: ln, drain: network.NewDrain(), conns: map[net.Conn]struct{}{}}
	l.bound = network.AddrPortOf(ln.Addr())
	l.statPrefix = StatPrefix(l.bound)
	sc := store.Scope(l.statPrefix)
	l.stats = listenerStats{
		cxTotal:       sc.Counter("downstream_cx_total"),
		cxActive:      sc.Gauge("downstream_cx_active"),
		cxDestroy:     sc.Counter("downstream_cx_destroy"),
		cxLength:      sc.Histogram("downstream_cx_length_ms", stats.Milliseconds),
		noFilterChain: sc.Counter("no_filter_chain_match"),
		cxOverflow:    sc.Counter("downstream_cx_overflow"),
	}
	l.wg.Add(1)
	go l.acceptLoop(ctx)
	return l, nil
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

// Name returns the listener's name.
func (l *Listener) Name() string { return l.cfg.Name }

// Config returns the listener's config.
func (l *Listener) Config() *Config { return l.cfg }

// Bound returns the address the socket is bound to (port 0 resolved).
func (l *Listener) Bound() netip.AddrPort { return l.bound }

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
			slog.Warn("accept failed", "listener", l.cfg.Name, "error", err)
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
		l.conns[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.serve(ctx, c)
	}
}

func (l *Listener) serve(ctx context.Context, c net.Conn) {
	start := time.Now()
	l.stats.cxTotal.Inc()
	l.stats.cxActive.Inc()
	defer func() {
		if r := recover(); r != nil {
			// Peer input must never take the process down (STYLE §5).
			slog.Error("connection panic", "listener", l.cfg.Name, "panic", r)
		}
		c.Close()
		l.stats.cxActive.Dec()
		l.stats.cxDestroy.Inc()
		l.stats.cxLength.Record(uint64(time.Since(start).Milliseconds()))
		l.mu.Lock()
		delete(l.conns, c)
		l.mu.Unlock()
		l.wg.Done()
	}()
	nc := network.NewConn(ctx, c, l.drain)
	nc.ListenerName = l.cfg.Name
	nc.StatPrefix = l.statPrefix
	if l.cfg.BufferLimit > 0 {
		nc.BufferLimit = l.cfg.BufferLimit
	}
	fc := l.pickChain(nc)
	if fc == nil {
		l.stats.noFilterChain.Inc()
		return
	}
	for _, f := range fc.Filters {
		if !f.OnNewConnection(nc) {
			return
		}
	}
	fc.Terminal.ServeConn(nc)
}

// pickChain selects the filter chain for a connection.
// TODO(#5): filter_chain_match (destination, SNI, ALPN, source...).
func (l *Listener) pickChain(*network.Conn) *FilterChain {
	if len(l.cfg.Chains) > 0 {
		return l.cfg.Chains[0]
	}
	return l.cfg.Default
}

// StopAccepting closes the socket; open connections go on.
func (l *Listener) StopAccepting() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.ln.Close()
}

// Drain tells open connections to finish: HTTP/1.1 closes after the
// current response (idle ones at once), HTTP/2 sends GOAWAY.
func (l *Listener) Drain() { l.drain.Start() }

// Draining reports whether Drain was called.
func (l *Listener) Draining() bool { return l.drain.Draining() }

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
	l.mu.Lock()
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
}
