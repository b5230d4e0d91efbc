package upstream

import (
	"io"
	"sync"
	"time"
)

// IdlePool holds a host's idle exclusive connections (HTTP/1.1 today) for
// reuse, newest first. It runs no goroutines: a connection idle longer than
// the cluster's idle timeout is closed when the pool is next used, and
// Prune closes them on demand.
//
// Envoy: common_http_protocol_options.idle_timeout, "the idle timeout for
// upstream connection pool connections ... defaults to 1 hour"
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#envoy-v3-api-field-config-core-v3-httpprotocoloptions-idle-timeout).
type IdlePool struct {
	// Set once before use:
	timeout time.Duration // 0: no idle timeout
	max     int
	now     func() time.Time

	mu     sync.Mutex
	conns  []idleConn // oldest first; Get takes from the end
	closed bool
	// subs are the per-TLSOptions pools of an auto_sni cluster (Sub).
	subs map[string]*IdlePool
}

type idleConn struct {
	c     io.Closer
	since time.Time
}

func (p *IdlePool) init(timeout time.Duration, max int, now func() time.Time) {
	p.timeout, p.max, p.now = timeout, max, now
}

// Get returns the most recently idled connection, or nil when there is none
// fresh enough. Connections past the idle timeout are closed.
func (p *IdlePool) Get() io.Closer {
	p.mu.Lock()
	if len(p.conns) == 0 {
		p.mu.Unlock()
		return nil
	}
	n := len(p.conns) - 1
	ic := p.conns[n]
	if p.expired(ic, p.now()) {
		// Newest is expired, so all are: close them all.
		stale := p.conns
		p.conns = nil
		p.mu.Unlock()
		closeAll(stale)
		return nil
	}
	p.conns[n] = idleConn{}
	p.conns = p.conns[:n]
	p.mu.Unlock()
	return ic.c
}

// Put returns c to the pool. It reports false, keeping nothing, when the pool
// is closed (the host left the cluster) or full; the caller closes c then.
func (p *IdlePool) Put(c io.Closer) bool {
	now := p.now()
	p.mu.Lock()
	if p.closed || (p.max > 0 && len(p.conns) >= p.max && !p.expiredLocked(now)) {
		p.mu.Unlock()
		return false
	}
	stale := p.pruneLocked(now)
	p.conns = append(p.conns, idleConn{c: c, since: now})
	p.mu.Unlock()
	closeAll(stale)
	return true
}

// Len returns the number of pooled connections.
func (p *IdlePool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Prune closes connections past the idle timeout, in sub-pools too.
func (p *IdlePool) Prune() {
	now := p.now()
	p.mu.Lock()
	stale := p.pruneLocked(now)
	subs := p.subList()
	p.mu.Unlock()
	closeAll(stale)
	for _, s := range subs {
		s.Prune()
	}
}

// CloseAll closes every pooled connection, its sub-pools' too, and makes
// later Puts fail.
func (p *IdlePool) CloseAll() {
	p.mu.Lock()
	p.closed = true
	stale := p.conns
	p.conns = nil
	subs := p.subList()
	p.mu.Unlock()
	closeAll(stale)
	for _, s := range subs {
		s.CloseAll()
	}
}

// Sub returns the pool of connections made with the TLSOptions whose
// PoolKey is key, created on first use with p's settings; "" is p itself.
// A connection made for one SNI is never reused for another (Envoy keys
// its pools by the transport socket options). Sub-pools live as long as
// p; CloseAll and Prune reach them.
func (p *IdlePool) Sub(key string) *IdlePool {
	if key == "" {
		return p
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.subs[key]
	if s == nil {
		s = &IdlePool{closed: p.closed}
		s.init(p.timeout, p.max, p.now)
		if p.subs == nil {
			p.subs = make(map[string]*IdlePool)
		}
		p.subs[key] = s
	}
	return s
}

// subList copies p.subs; p.mu is held.
func (p *IdlePool) subList() []*IdlePool {
	if len(p.subs) == 0 {
		return nil
	}
	out := make([]*IdlePool, 0, len(p.subs))
	for _, s := range p.subs {
		out = append(out, s)
	}
	return out
}

func (p *IdlePool) expired(ic idleConn, now time.Time) bool {
	return p.timeout > 0 && now.Sub(ic.since) >= p.timeout
}

func (p *IdlePool) expiredLocked(now time.Time) bool {
	return len(p.conns) > 0 && p.expired(p.conns[0], now)
}

// pruneLocked removes expired connections (a prefix, since the slice is
// ordered by idle time) and returns them for closing outside the lock.
func (p *IdlePool) pruneLocked(now time.Time) []idleConn {
	i := 0
	for i < len(p.conns) && p.expired(p.conns[i], now) {
		i++
	}
	if i == 0 {
		return nil
	}
	stale := make([]idleConn, i)
	copy(stale, p.conns[:i])
	n := copy(p.conns, p.conns[i:])
	clear(p.conns[n:])
	p.conns = p.conns[:n]
	return stale
}

func closeAll(cs []idleConn) {
	for _, ic := range cs {
		_ = ic.c.Close()
	}
}
