package listener

import (
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/listenerfilter"
	"github.com/herald-proxy/herald/internal/network/sockio"
)

// peekInitial is the first read's buffer size; it grows up to the largest
// MaxReadBytes of the listener's filters.
const peekInitial = 1024

// runListenerFilters runs the listener filters on nc, reading the client's
// first bytes within listener_filters_timeout; the bytes read are replayed
// to whatever reads the connection next. It returns false when the
// connection must be closed (a filter said so, the peer went away, or the
// timeout fired without continue_on_listener_filters_timeout). Envoy:
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/listener/v3/listener.proto#envoy-v3-api-field-config-listener-v3-listener-listener-filters-timeout
func (l *Listener) runListenerFilters(cfg *Config, nc *network.Conn) bool {
	l.stats.preCxActive.Inc()
	defer l.stats.preCxActive.Dec()
	raw := nc.Conn
	if d := cfg.ListenerFiltersTimeout; d > 0 {
		_ = raw.SetReadDeadline(nc.Accepted.Add(d))
	}
	var buf []byte
	ok := true
	timedOut := false
filters:
	for _, f := range cfg.ListenerFilters {
		max := f.MaxReadBytes()
		consumer, consumes := f.(listenerfilter.Consumer)
		for {
			var st listenerfilter.Status
			if consumes {
				var n int
				st, n = consumer.OnDataConsume(nc, buf)
				if st == listenerfilter.Continue && n > 0 {
					// Drop the consumed prefix (proxy_protocol's header):
					// later filters and the transport never see it.
					buf = buf[min(n, len(buf)):]
				}
			} else {
				st = f.OnData(nc, buf)
			}
			switch st {
			case listenerfilter.Continue:
				continue filters
			case listenerfilter.Close:
				ok = false
				break filters
			}
			if len(buf) >= max {
				// A filter that asked for more than it declared: treat as done.
				continue filters
			}
			if cap(buf) == 0 {
				buf = make([]byte, 0, min(max, peekInitial))
			} else if len(buf) == cap(buf) {
				grown := make([]byte, len(buf), min(max, 2*cap(buf)))
				copy(grown, buf)
				buf = grown
			}
			n, err := raw.Read(buf[len(buf):min(cap(buf), max)])
			buf = buf[:len(buf)+n]
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					timedOut = true
					l.stats.preCxTimeout.Inc()
					ok = cfg.ContinueOnListenerFiltersTimeout
				} else {
					// Envoy closes a socket whose peer closed or failed
					// during listener filters.
					ok = false
				}
				break filters
			}
		}
	}
	if cfg.ListenerFiltersTimeout > 0 {
		_ = raw.SetReadDeadline(time.Time{})
	}
	if !ok {
		if timedOut {
			slog.Debug("listener filters timed out", "listener", cfg.Name, "remote", nc.Remote.String())
		}
		return false
	}
	if len(buf) > 0 {
		var under = raw
		if tc, isTCP := raw.(*net.TCPConn); isTCP {
			under = sockio.Wrap(tc)
		}
		nc.Conn = &replayConn{Conn: under, pending: buf}
	}
	return true
}

// replayConn returns the bytes listener filters read before reading from
// the socket. It passes CloseWrite (tcp_proxy's half-close) and
// sockio.PooledReader through.
type replayConn struct {
	net.Conn
	pending []byte
}

// Read implements net.Conn.
func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

// ReadPooled implements sockio.PooledReader.
func (r *replayConn) ReadPooled(src sockio.BufferSource) (int, error) {
	if len(r.pending) > 0 {
		n := copy(src.ReadBuffer(), r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	if pr, ok := r.Conn.(sockio.PooledReader); ok {
		return pr.ReadPooled(src)
	}
	return r.Conn.Read(src.ReadBuffer())
}

// CloseWrite half-closes the socket.
func (r *replayConn) CloseWrite() error {
	if cw, ok := r.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

var (
	_ sockio.PooledReader = (*replayConn)(nil)
	_ net.Conn            = (*replayConn)(nil)
)
