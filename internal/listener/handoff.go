package listener

import (
	"net"
	"net/netip"
	"sync/atomic"
)

// Directory finds the running TCP listener for an address: where a
// use_original_dst listener hands a connection whose original destination
// is not its own address. Immutable; the server builds a new one when its
// listener set changes and publishes it through the pointer each listener
// was given (SetDirectory).
type Directory struct {
	byAddr map[netip.AddrPort]*Listener
}

// NewDirectory indexes the TCP listeners of ls by bound address.
func NewDirectory(ls []*Listener) *Directory {
	d := &Directory{byAddr: make(map[netip.AddrPort]*Listener, len(ls))}
	for _, l := range ls {
		if l.network == "tcp" {
			d.byAddr[l.bound] = l
		}
	}
	return d
}

// Lookup returns the listener for dst: the one bound to exactly dst, else
// the one bound to the wildcard address of dst's family on dst's port
// (0.0.0.0:port, [::]:port); nil when none, or when that listener no
// longer accepts.
//
// Envoy: ConnectionHandlerImpl::getBalancedHandlerByAddress ("If there is
// exact address match, return the corresponding listener. Otherwise, we
// need to look for the wild card match, i.e., 0.0.0.0:[address_port]. We
// do not return stopped listeners.").
func (d *Directory) Lookup(dst netip.AddrPort) *Listener {
	if d == nil {
		return nil
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	l := d.byAddr[dst]
	if l == nil {
		wildcard := netip.IPv4Unspecified()
		if dst.Addr().Is6() {
			wildcard = netip.IPv6Unspecified()
		}
		l = d.byAddr[netip.AddrPortFrom(wildcard, dst.Port())]
	}
	if l == nil || l.stopped() {
		return nil
	}
	return l
}

// SetDirectory gives l the directory its use_original_dst hand-off looks
// listeners up in. The server calls it once per listener, before Serve.
func (l *Listener) SetDirectory(d *atomic.Pointer[Directory]) { l.dir = d }

// stopped reports whether l no longer accepts (removed or shut down).
func (l *Listener) stopped() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// handOffTarget is where a connection of a use_original_dst listener goes
// once its listener filters ran: the listener of its restored local
// address, or nil to stay (no original destination was restored, it is
// this listener's own address, or no listener has it).
//
// Envoy: ActiveTcpSocket::newConnection hands the socket to that listener,
// which runs its own listener filters and filter chain match with hand-off
// disabled
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/listener/v3/listener.proto#envoy-v3-api-field-config-listener-v3-listener-use-original-dst).
func (l *Listener) handOffTarget(accepted, restored netip.AddrPort) *Listener {
	if restored == accepted || l.dir == nil {
		return nil
	}
	t := l.dir.Load().Lookup(restored)
	if t == l {
		// Envoy hands the socket to the same listener again (its
		// listener filters run twice); herald simply goes on.
		return nil
	}
	return t
}

// adopt counts c, handed off by another listener, as a connection of l's
// current generation. It returns nil when l no longer accepts.
func (l *Listener) adopt(c net.Conn) *generation {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	g := l.cur.Load()
	l.conns[c] = g.pending
	g.pending.active++
	l.wg.Add(1)
	return g
}
