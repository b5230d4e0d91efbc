package http3

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	quichttp3 "github.com/quic-go/quic-go/http3"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// Dialer opens a QUIC connection to an upstream host: TLS 1.3 with ALPN
// h3 (the cluster's envoy.transport_sockets.quic QuicUpstreamTransport).
// Unlike hhttp.Dialer it returns the QUIC connection itself: QUIC runs over
// UDP, and streams are QUIC's, not a byte stream's.
type Dialer func(ctx context.Context) (*quic.Conn, error)

// ClientOptions configure a Client. Zero fields take Envoy's defaults.
type ClientOptions struct {
	// MaxResponseHeadersBytes bounds a response header section (sent to
	// the peer as SETTINGS_MAX_FIELD_SECTION_SIZE). Zero means 60 KiB,
	// Envoy's max_response_headers_kb default.
	MaxResponseHeadersBytes int
	// IdleTimeout closes a connection that has carried no stream for this
	// long. Zero means no limit. Envoy: cluster
	// common_http_protocol_options.idle_timeout, default 1 h (applied by
	// the caller). QUIC keep-alive PINGs keep an unused connection open,
	// so without it only the peer ends one.
	IdleTimeout time.Duration
	// MaxRequestsPerConnection caps the streams one connection carries
	// over its life: the stream that reaches it takes the connection out
	// of the pool, and the connection closes when its last stream ends.
	// Zero means no limit. Envoy: cluster max_requests_per_connection; the
	// connection pool drains a client whose remaining streams reach zero
	// (ConnPoolImplBase::attachStreamToClient, source/common/conn_pool/
	// conn_pool_base.cc).
	MaxRequestsPerConnection uint32
	// OnConnect, when set, is called once for every connection the client
	// starts HTTP/3 on (Envoy's upstream_cx_http3_total).
	OnConnect func()
	// OnMaxRequests, when set, is called once for every connection that
	// reaches MaxRequestsPerConnection (Envoy's upstream_cx_max_requests).
	OnMaxRequests func()
}

// defaultMaxHeadersBytes is Envoy's max_response_headers_kb default.
const defaultMaxHeadersBytes = 60 << 10

// Client sends upstream requests over HTTP/3 connections, the upstream
// half of herald's HTTP/3 codec (Envoy: "HTTP/3 upstream",
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/http3#http3-upstream).
// Like the HTTP/2 client it keeps its own pool keyed by a caller-chosen
// string (one key per upstream host and TLS options): requests of a key
// share its live connection, as streams; a connection is dialed when the
// key has none that can take a request, and concurrent requests share one
// dial in flight. QUIC's own stream limit (the server's MAX_STREAMS)
// queues a request until a stream is free.
//
// It is built on quic-go's http3.ClientConn rather than http3.Transport's
// pool: Transport keys connections by authority and dials by name, while
// herald's cluster layer chooses the host and owns the dialer (connect
// timeout, circuit breakers, stats).
type Client struct {
	// Immutable after NewClient.
	t    *quichttp3.Transport
	idle time.Duration
	opts ClientOptions

	hosts  sync.Map // string → *hostPool
	closed atomic.Bool
	// draining is set by Drain: connections dialed afterwards serve one
	// stream each and are not pooled.
	draining atomic.Bool
}

// hostPool holds the connections of one key.
type hostPool struct {
	mu      sync.Mutex
	conns   []*poolConn // guarded by mu
	dialing *dialCall   // guarded by mu; non-nil while a dial is in flight
}

type dialCall struct {
	done chan struct{}
	err  error // written before done is closed
}

// poolConn is one upstream QUIC connection.
type poolConn struct {
	qc *quic.Conn
	cc *quichttp3.ClientConn
	// active counts streams handed out and not yet closed.
	active atomic.Int32
	// streams counts the streams handed out over the connection's life,
	// for MaxRequestsPerConnection. Guarded by hostPool.mu.
	streams uint32
	// unusable is set when a request could not open a stream on the
	// connection (GOAWAY received, or the connection failed); in-flight
	// streams finish on it, new ones go to another connection.
	unusable atomic.Bool
	// idleTimer closes the connection IdleTimeout after its last stream;
	// guarded by hostPool.mu.
	idleTimer *time.Timer
}

// usable reports whether a new request may go on pc.
func (pc *poolConn) usable() bool {
	return !pc.unusable.Load() && pc.qc.Context().Err() == nil
}

// ConnectError is returned by NewStream when no connection could be
// established: Envoy's upstream connection failure (response flag UF).
type ConnectError struct {
	Err error
}

func (e *ConnectError) Error() string { return "http3: upstream connect: " + e.Err.Error() }

func (e *ConnectError) Unwrap() error { return e.Err }

// ErrClientClosed is returned by NewStream after Close.
var ErrClientClosed = errors.New("http3: client closed")

// NewClient builds a Client from opts.
func NewClient(opts ClientOptions) *Client {
	maxHeaders := opts.MaxResponseHeadersBytes
	if maxHeaders <= 0 {
		maxHeaders = defaultMaxHeadersBytes
	}
	return &Client{idle: opts.IdleTimeout, opts: opts, t: &quichttp3.Transport{
		// quic-go would otherwise add accept-encoding: gzip and
		// decompress; a proxy forwards bytes as they are.
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxHeaders,
	}}
}

// NewStream returns a stream on a connection for key, dialing one with dial
// when key has no usable connection. ctx bounds the dial and the wait for
// another request's dial, and then the whole exchange. A dial failure is a
// *ConnectError.
func (c *Client) NewStream(ctx context.Context, key string, dial Dialer) (hhttp.UpstreamStream, error) {
	hp, pc, err := c.acquire(ctx, key, dial)
	if err != nil {
		return nil, err
	}
	return newUpstreamStream(ctx, c, hp, pc), nil
}

func (c *Client) hostPool(key string) *hostPool {
	if v, ok := c.hosts.Load(key); ok {
		return v.(*hostPool)
	}
	v, _ := c.hosts.LoadOrStore(key, &hostPool{})
	return v.(*hostPool)
}

// acquire returns a usable connection of key with one stream counted for
// the caller.
func (c *Client) acquire(ctx context.Context, key string, dial Dialer) (*hostPool, *poolConn, error) {
	hp := c.hostPool(key)
	for {
		if c.closed.Load() {
			return nil, nil, ErrClientClosed
		}
		hp.mu.Lock()
		if pc := hp.pickLocked(); pc != nil {
			pc.active.Add(1)
			if pc.idleTimer != nil {
				pc.idleTimer.Stop()
				pc.idleTimer = nil
			}
			spent := c.countStreamLocked(hp, pc)
			hp.mu.Unlock()
			if spent {
				c.opts.OnMaxRequests()
			}
			return hp, pc, nil
		}
		if d := hp.dialing; d != nil {
			hp.mu.Unlock()
			select {
			case <-d.done:
				if d.err != nil {
					return nil, nil, d.err
				}
				continue
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
		}
		d := &dialCall{done: make(chan struct{})}
		hp.dialing = d
		hp.mu.Unlock()

		pc, err := c.dial(ctx, dial)
		hp.mu.Lock()
		hp.dialing = nil
		d.err = err
		close(d.done)
		if err != nil {
			hp.mu.Unlock()
			return nil, nil, err
		}
		if c.draining.Load() {
			// Drain ran before or while we dialed: the connection
			// serves the caller's stream only (release closes it).
			pc.unusable.Store(true)
		} else {
			hp.conns = append(hp.conns, pc)
		}
		// The dialer takes the first stream of its own connection.
		pc.active.Add(1)
		spent := c.countStreamLocked(hp, pc)
		hp.mu.Unlock()
		if spent {
			c.opts.OnMaxRequests()
		}
		if c.closed.Load() {
			// Close ran while we dialed; it may have missed pc.
			pc.close()
			return nil, nil, ErrClientClosed
		}
		return hp, pc, nil
	}
}

func (c *Client) dial(ctx context.Context, dial Dialer) (*poolConn, error) {
	qc, err := dial(ctx)
	if err != nil {
		return nil, &ConnectError{Err: err}
	}
	if c.opts.OnConnect != nil {
		c.opts.OnConnect()
	}
	return &poolConn{qc: qc, cc: c.t.NewClientConn(qc)}, nil
}

// countStreamLocked counts a stream just taken on pc against
// MaxRequestsPerConnection. It reports whether the stream was the
// connection's last: pc then leaves the pool and is unusable (release
// closes it with its last stream), and the caller calls OnMaxRequests when
// set. hp.mu is held.
func (c *Client) countStreamLocked(hp *hostPool, pc *poolConn) bool {
	limit := c.opts.MaxRequestsPerConnection
	if limit == 0 {
		return false
	}
	pc.streams++
	if pc.streams < limit {
		return false
	}
	// The caller's stream holds active, so release cannot see the
	// connection idle before unusable is set.
	pc.unusable.Store(true)
	if i := slices.Index(hp.conns, pc); i >= 0 {
		hp.removeLocked(i)
	}
	return c.opts.OnMaxRequests != nil
}

// pickLocked returns the first usable connection, dropping the others
// (their in-flight streams finish on them).
func (hp *hostPool) pickLocked() *poolConn {
	for i := 0; i < len(hp.conns); {
		pc := hp.conns[i]
		if pc.usable() {
			return pc
		}
		if pc.active.Load() == 0 {
			pc.close()
		}
		hp.removeLocked(i)
	}
	return nil
}

func (hp *hostPool) removeLocked(i int) {
	last := len(hp.conns) - 1
	hp.conns[i] = hp.conns[last]
	hp.conns[last] = nil
	hp.conns = hp.conns[:last]
}

// release ends a stream's hold on pc. The last stream of an unusable
// connection closes it; of a usable one, starts its idle timer.
func (c *Client) release(hp *hostPool, pc *poolConn) {
	if pc.active.Add(-1) != 0 {
		return
	}
	if pc.unusable.Load() {
		// Removed from the pool (or about to be): nothing else will use
		// it.
		pc.close()
		return
	}
	if c.idle <= 0 {
		return
	}
	hp.mu.Lock()
	defer hp.mu.Unlock()
	if pc.active.Load() != 0 || pc.idleTimer != nil {
		return
	}
	pc.idleTimer = time.AfterFunc(c.idle, func() {
		hp.mu.Lock()
		defer hp.mu.Unlock()
		if pc.active.Load() != 0 {
			// Taken again while the timer fired.
			return
		}
		pc.idleTimer = nil
		for i, p := range hp.conns {
			if p == pc {
				hp.removeLocked(i)
				break
			}
		}
		pc.close()
	})
}

// close closes the connection with H3_NO_ERROR.
func (pc *poolConn) close() {
	_ = pc.qc.CloseWithError(errCodeNoError, "")
}

// CloseIdle closes every connection that carries no stream.
func (c *Client) CloseIdle() {
	c.hosts.Range(func(_, v any) bool {
		hp := v.(*hostPool)
		hp.mu.Lock()
		for i := 0; i < len(hp.conns); {
			pc := hp.conns[i]
			if pc.active.Load() == 0 {
				pc.close()
				hp.removeLocked(i)
				continue
			}
			i++
		}
		hp.mu.Unlock()
		return true
	})
}

// Drain retires the client gracefully, as Envoy drains the connection
// pools of a removed or changed cluster
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/connection_pooling):
// every pooled connection leaves its pool, the idle ones close now and
// the busy ones when their last stream ends; a stream opened afterwards
// gets a connection of its own that closes when that stream ends. Close
// after Drain does not reach the connections Drain retired.
func (c *Client) Drain() {
	c.draining.Store(true)
	c.hosts.Range(func(_, v any) bool {
		hp := v.(*hostPool)
		hp.mu.Lock()
		for _, pc := range hp.conns {
			if pc.idleTimer != nil {
				pc.idleTimer.Stop()
				pc.idleTimer = nil
			}
			// Paired with release: it decrements active before reading
			// unusable, this sets unusable before reading active, so one
			// of the two sees the connection idle and closes it.
			pc.unusable.Store(true)
			if pc.active.Load() == 0 {
				pc.close()
			}
		}
		clear(hp.conns)
		hp.conns = hp.conns[:0]
		hp.mu.Unlock()
		return true
	})
}

// Close closes every connection, aborting streams in flight; NewStream
// fails with ErrClientClosed afterwards.
func (c *Client) Close() error {
	c.closed.Store(true)
	c.hosts.Range(func(_, v any) bool {
		hp := v.(*hostPool)
		hp.mu.Lock()
		for _, pc := range hp.conns {
			pc.close()
		}
		clear(hp.conns)
		hp.conns = hp.conns[:0]
		hp.mu.Unlock()
		return true
	})
	return nil
}

// connCount reports how many pooled connections key has (for tests).
func (c *Client) connCount(key string) int {
	hp := c.hostPool(key)
	hp.mu.Lock()
	defer hp.mu.Unlock()
	return len(hp.conns)
}
