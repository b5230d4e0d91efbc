package upstream

import (
	"context"
	"errors"
	"github.com/herald-proxy/herald/internal/network/sockio"
	"io"
	"net"
	"sync/atomic"
	"syscall"
)

// DialFunc opens a connection; net.Dialer.DialContext is one. Tests inject
// their own.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Dial opens a TCP connection to h, bounded by the cluster's connect_timeout,
// with TCP_NODELAY and the cluster's TCP keepalive options. It counts, as
// Envoy's connection pools do, upstream_cx_total and upstream_cx_active when
// the attempt starts (and the host's cx_total/cx_active), then on failure
// upstream_cx_connect_fail (+ upstream_cx_connect_timeout when the timeout
// fired) and upstream_cx_destroy, on success upstream_cx_connect_ms. The
// returned connection counts upstream_cx_rx/tx_bytes_total with one atomic
// add per Read/Write and, on its first Close, upstream_cx_destroy with
// _local or _remote (remote when a Read saw the peer close) and the
// cx_active decrements.
//
// Circuit breakers: the connection counts against the cluster's
// max_connections for as long as it lives (the router decides beforehand
// whether it may dial; see ResourceManager). A host's first connection
// brings its connection pool to life, which counts against
// max_connection_pools until the host's last connection closes; over that
// limit Dial counts upstream_cx_pool_overflow and fails with
// ErrPoolOverflow without connecting.
func (c *Cluster) Dial(ctx context.Context, h *Host) (net.Conn, error) {
	s := c.Stats
	rm := c.resources[PriorityDefault]
	if h.Stats.CxActive.Add(1) == 1 && !rm.ConnectionPools.TryAcquire() {
		rm.Overflow.UpstreamCxPoolOverflow.Inc()
		if h.Stats.CxActive.Add(-1) != 0 {
			// Another connection of the host started meanwhile without
			// taking the pool: it owns the pool now.
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
	conn, err := c.dial(dctx, "tcp", h.Address())
	if err == nil && c.transport != nil {
		conn, err = c.secure(dctx, conn)
	}
	timedOut := err != nil && errors.Is(dctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
	cancel()
	if err != nil {
		s.UpstreamCxConnectFail.Inc()
		h.Stats.CxConnectFail.Add(1)
		s.UpstreamCxDestroy.Inc()
		if timedOut {
			// Envoy closes the attempt itself on timeout (local close); a
			// refused or unreachable connect is reported as a remote close.
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
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		if c.keepAlive != nil {
			_ = tc.SetKeepAliveConfig(*c.keepAlive)
		}
	}
	return &upstreamConn{Conn: sockio.Wrap(conn), c: c, h: h, rm: rm}, nil
}

// ErrPoolOverflow is Dial's error when the cluster's max_connection_pools
// circuit breaker refuses a new connection pool for a host.
var ErrPoolOverflow = errors.New("upstream: connection pool overflow (max_connection_pools)")

// releaseConn gives back a connection's circuit breaker resources: the
// connection, and the host's pool with its last connection; and wakes
// requests waiting for a connection.
func releaseConn(rm *ResourceManager, h *Host) {
	rm.Connections.Dec()
	if h.Stats.CxActive.Add(-1) == 0 {
		rm.ConnectionPools.Dec()
	}
	rm.ConnectionReleased()
}

// upstreamConn counts bytes and the connection's end.
type upstreamConn struct {
	net.Conn
	c      *Cluster
	h      *Host
	rm     *ResourceManager
	closed atomic.Bool
	remote atomic.Bool
}

// Read implements net.Conn.
func (u *upstreamConn) Read(p []byte) (int, error) {
	n, err := u.Conn.Read(p)
	if n > 0 {
		u.c.Stats.UpstreamCxRxBytesTotal.Add(uint64(n))
	}
	if err != nil && (err == io.EOF || errors.Is(err, syscall.ECONNRESET)) {
		u.remote.Store(true)
	}
	return n, err
}

// Write implements net.Conn.
func (u *upstreamConn) Write(p []byte) (int, error) {
	n, err := u.Conn.Write(p)
	if n > 0 {
		u.c.Stats.UpstreamCxTxBytesTotal.Add(uint64(n))
	}
	if err != nil && (errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)) {
		u.remote.Store(true)
	}
	return n, err
}

// Close implements net.Conn; only the first call counts.
func (u *upstreamConn) Close() error {
	err := u.Conn.Close()
	if u.closed.CompareAndSwap(false, true) {
		s := u.c.Stats
		s.UpstreamCxDestroy.Inc()
		if u.remote.Load() {
			s.UpstreamCxDestroyRemote.Inc()
		} else {
			s.UpstreamCxDestroyLocal.Inc()
		}
		s.UpstreamCxActive.Dec()
		releaseConn(u.rm, u.h)
	}
	return err
}

// CloseWrite half-closes the connection (tcp_proxy) when the transport
// supports it.
func (u *upstreamConn) CloseWrite() error {
	if cw, ok := u.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// Host returns the host the connection goes to.
func (u *upstreamConn) Host() *Host { return u.h }

var _ net.Conn = (*upstreamConn)(nil)

// defaultDial is a net.Dialer with Go's defaults; the timeout comes from the
// context.
func defaultDial() DialFunc {
	d := &net.Dialer{KeepAlive: -1}
	return d.DialContext
}
