package http2

import (
	"context"
	"errors"
	"fmt"
	nethttp "net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	xhttp2 "golang.org/x/net/http2"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// ClientOptions configure a Client. Zero fields take Envoy's defaults.
type ClientOptions struct {
	// HTTP2 holds the cluster's http2_protocol_options; nil means Envoy's
	// defaults. MaxConcurrentStreams caps the streams herald opens on one
	// connection; the peer's SETTINGS_MAX_CONCURRENT_STREAMS may lower it
	// further. Envoy: "If the limit is reached, Envoy may queue requests or
	// establish additional connections"; herald opens another connection.
	HTTP2 *hhttp.HTTP2Options
	// IdleTimeout closes a connection that has carried no stream for this
	// long. Zero means no limit. Envoy: cluster
	// common_http_protocol_options.idle_timeout, default 1 h (applied by the
	// caller).
	IdleTimeout time.Duration
	// MaxResponseHeadersBytes bounds a response header list (sent to the
	// peer as SETTINGS_MAX_HEADER_LIST_SIZE). Zero means 60 KiB, Envoy's
	// max_response_headers_kb default.
	MaxResponseHeadersBytes int
	// MaxRequestsPerConnection caps the streams one connection carries
	// over its life: the stream that reaches it takes the connection out
	// of the pool, and the connection closes when its last stream ends.
	// Zero means no limit. Envoy: cluster max_requests_per_connection
	// (common_http_protocol_options.max_requests_per_connection); the
	// connection pool drains a client whose remaining streams reach zero
	// (ConnPoolImplBase::attachStreamToClient, source/common/conn_pool/
	// conn_pool_base.cc).
	MaxRequestsPerConnection uint32
	// OnConnect, when set, is called once for every connection the client
	// starts HTTP/2 on (Envoy's upstream_cx_http2_total).
	OnConnect func()
	// OnMaxRequests, when set, is called once for every connection that
	// reaches MaxRequestsPerConnection (Envoy's upstream_cx_max_requests).
	OnMaxRequests func()
}

// Client multiplexes upstream requests over HTTP/2 connections, prior
// knowledge (h2c) or on whatever net.Conn the dialer returns (TLS later).
// It keeps its own pool keyed by a caller-chosen string (one key per
// upstream host): a stream goes on the first connection of its key with a
// free stream slot; a new connection is dialed when every connection is at
// its stream limit or has received GOAWAY. Concurrent requests for a key
// share one dial in flight.
//
// It is built on xhttp2.ClientConn rather than xhttp2.Transport's pool:
// Transport keys its pool by URL host and dials through one function per
// Transport, while herald's cluster layer chooses the host, owns the dialer
// (connect timeout, stats) and needs the key to name a host, not an
// authority.
type Client struct {
	// Immutable after NewClient.
	t            *xhttp2.Transport
	maxStreams   int32
	opts         ClientOptions
	idleInterval time.Duration // connection_keepalive.connection_idle_interval
	pingTimeout  time.Duration // connection_keepalive.timeout

	hosts  sync.Map // string → *hostPool
	closed atomic.Bool
	// draining is set by Drain: connections dialed afterwards serve one
	// stream each and are not pooled.
	draining atomic.Bool
}

// hostPool holds the connections of one key.
type hostPool struct {
	idleInterval time.Duration // immutable: the Client's
	mu           sync.Mutex
	conns        []*poolConn // guarded by mu
	dialing      *dialCall   // guarded by mu; non-nil while a dial is in flight
}

type dialCall struct {
	done chan struct{}
	err  error // written before done is closed
}

// poolConn is one upstream connection.
type poolConn struct {
	cc *xhttp2.ClientConn
	// lastUsed is when the last stream left the connection (Unix ns), kept
	// only with connection_idle_interval.
	lastUsed atomic.Int64
	// active counts streams handed out and not yet closed.
	active atomic.Int32
	// streams counts the streams handed out over the connection's life,
	// for MaxRequestsPerConnection. Guarded by hostPool.mu.
	streams uint32
	// spare counts x/net stream reservations that streams closed before
	// using; the next stream on this connection uses one instead of
	// reserving again. Guarded by hostPool.mu.
	spare int32
	// draining: the connection left its pool (Drain) and closes when its
	// last stream ends; shut makes that close happen once.
	draining atomic.Bool
	shut     atomic.Bool
}

// ConnectError is returned by NewStream when no connection could be
// established: Envoy's upstream connection failure (response flag UF).
type ConnectError struct {
	Err error
}

func (e *ConnectError) Error() string { return "http2: upstream connect: " + e.Err.Error() }

func (e *ConnectError) Unwrap() error { return e.Err }

// ErrClientClosed is returned by NewStream after Close.
var ErrClientClosed = errors.New("http2: client closed")

// NewClient builds a Client from opts. Of http2_protocol_options the
// client applies max_concurrent_streams, the window sizes,
// hpack_table_size (0 becomes 1: no entry fits, as x/net cannot advertise
// 0), and connection_keepalive: interval and timeout become x/net's
// ReadIdleTimeout and PingTimeout (a PING after interval without frames
// received, the connection closed when its ACK does not arrive within
// timeout; x/net has no jitter), and connection_idle_interval PINGs a
// connection idle that long when it takes a new stream, closing it when
// the PING fails within timeout (Envoy's ClientConnectionImpl::newStream).
// allow_connect changes nothing on a client: extended CONNECT is sent
// whenever the peer advertises it. The flood limits are server-side in
// herald: x/net's client has none to configure.
func NewClient(opts ClientOptions) (*Client, error) {
	streams, streamWin, connWin, err := http2Settings(opts.HTTP2)
	if err != nil {
		return nil, err
	}
	var ka hhttp.KeepaliveOptions
	hpackTable := uint32(defaultHpackTableSize)
	if o := opts.HTTP2; o != nil {
		ka = o.Keepalive
		hpackTable = max(o.HpackTableSize.Or(defaultHpackTableSize), 1)
	}
	maxHeaders := opts.MaxResponseHeadersBytes
	if maxHeaders <= 0 {
		maxHeaders = defaultMaxHeadersBytes
	}
	// x/net's client opens the connection window by its whole setting on
	// top of the 65535 bytes every connection starts with; Envoy's
	// initial_connection_window_size is the total, so subtract the initial
	// window (x/net's minimum for the setting is 65535 itself).
	const initialWindow = 65535
	connRecv := max(int(connWin)-initialWindow, initialWindow)
	// Window sizes reach x/net's client only through the net/http
	// Transport it is configured on; t1 is never used to send requests.
	t1 := &nethttp.Transport{
		DisableCompression: true,
		HTTP2: &nethttp.HTTP2Config{
			MaxReceiveBufferPerStream:     int(streamWin),
			MaxReceiveBufferPerConnection: connRecv,
			MaxDecoderHeaderTableSize:     int(hpackTable),
			MaxEncoderHeaderTableSize:     int(hpackTable),
		},
	}
	t, err := xhttp2.ConfigureTransports(t1)
	if err != nil {
		return nil, fmt.Errorf("http2: configure transport: %w", err)
	}
	t.AllowHTTP = true
	// x/net would otherwise add accept-encoding: gzip and decompress
	// transparently; a proxy forwards bytes as they are.
	t.DisableCompression = true
	t.IdleConnTimeout = opts.IdleTimeout
	t.MaxHeaderListSize = uint32(maxHeaders + hpackFieldOverhead*defaultMaxHeadersCount)
	if ka.Timeout > 0 {
		t.ReadIdleTimeout = ka.Interval
		t.PingTimeout = ka.Timeout
	}
	c := &Client{t: t, maxStreams: int32(streams), opts: opts}
	if ka.Timeout > 0 && ka.ConnectionIdleInterval > 0 {
		c.idleInterval, c.pingTimeout = ka.ConnectionIdleInterval, ka.Timeout
	}
	return c, nil
}

// NewStream returns a stream on a connection for key, dialing one with dial
// when none of key's connections can take another stream. ctx bounds the
// dial and the wait for another request's dial, and then the whole
// exchange. A dial failure is a *ConnectError.
func (c *Client) NewStream(ctx context.Context, key string, dial hhttp.Dialer) (hhttp.UpstreamStream, error) {
	hp, pc, err := c.acquire(ctx, key, dial)
	if err != nil {
		return nil, err
	}
	return newUpstreamStream(ctx, hp, pc), nil
}

func (c *Client) hostPool(key string) *hostPool {
	if v, ok := c.hosts.Load(key); ok {
		return v.(*hostPool)
	}
	v, _ := c.hosts.LoadOrStore(key, &hostPool{idleInterval: c.idleInterval})
	return v.(*hostPool)
}

// acquire returns a connection of key with one stream reserved for the
// caller.
func (c *Client) acquire(ctx context.Context, key string, dial hhttp.Dialer) (*hostPool, *poolConn, error) {
	hp := c.hostPool(key)
	for {
		if c.closed.Load() {
			return nil, nil, ErrClientClosed
		}
		hp.mu.Lock()
		if pc := hp.reserveLocked(c.maxStreams); pc != nil {
			spent := c.countStreamLocked(hp, pc)
			hp.mu.Unlock()
			if spent {
				c.opts.OnMaxRequests()
			}
			c.maybeProbe(pc)
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
			// serves the caller's stream only.
			pc.draining.Store(true)
		} else {
			hp.conns = append(hp.conns, pc)
		}
		// The dialer takes the first stream of its own connection, so a
		// peer that sends GOAWAY on every new connection cannot keep us
		// dialing in a loop.
		reserved := pc.cc.ReserveNewRequest()
		spent := false
		if reserved {
			pc.active.Add(1)
			spent = c.countStreamLocked(hp, pc)
		}
		hp.mu.Unlock()
		if spent {
			c.opts.OnMaxRequests()
		}
		if c.closed.Load() {
			// Close ran while we dialed; it may have missed pc.
			pc.cc.Close()
			return nil, nil, ErrClientClosed
		}
		if !reserved {
			if pc.draining.Load() {
				pc.closeDrained()
			}
			return nil, nil, errors.New("http2: new upstream connection refused its first stream (GOAWAY)")
		}
		return hp, pc, nil
	}
}

func (c *Client) dial(ctx context.Context, dial hhttp.Dialer) (*poolConn, error) {
	nc, err := dial(ctx)
	if err != nil {
		return nil, &ConnectError{Err: err}
	}
	cc, err := c.t.NewClientConn(nc)
	if err != nil {
		nc.Close()
		return nil, &ConnectError{Err: err}
	}
	if c.opts.OnConnect != nil {
		c.opts.OnConnect()
	}
	return &poolConn{cc: cc}, nil
}

// countStreamLocked counts a stream just reserved on pc against
// MaxRequestsPerConnection. It reports whether the stream was the
// connection's last: pc then leaves the pool and drains (release closes it
// with its last stream), and the caller calls OnMaxRequests when set.
// hp.mu is held.
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
	// connection idle before draining is set.
	pc.draining.Store(true)
	if i := slices.Index(hp.conns, pc); i >= 0 {
		hp.removeLocked(i)
	}
	return c.opts.OnMaxRequests != nil
}

// maybeProbe applies connection_idle_interval: a connection that carried no
// stream for that long is PINGed as it takes this one, and closed when the
// ACK does not come within the keepalive timeout. The stream is not held
// back, as in Envoy (ClientConnectionImpl::newStream sends the PING and
// proceeds).
func (c *Client) maybeProbe(pc *poolConn) {
	if c.idleInterval <= 0 || pc.active.Load() != 1 {
		return
	}
	last := pc.lastUsed.Load()
	if last == 0 || time.Since(time.Unix(0, last)) < c.idleInterval {
		return
	}
	pc.lastUsed.Store(time.Now().UnixNano())
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.pingTimeout)
		defer cancel()
		if err := pc.cc.Ping(ctx); err != nil {
			pc.cc.Close()
		}
	}()
}

// reserveLocked picks the first connection with a free stream slot and
// reserves it, dropping connections that are closed or going away.
func (hp *hostPool) reserveLocked(maxStreams int32) *poolConn {
	for i := 0; i < len(hp.conns); {
		pc := hp.conns[i]
		if pc.active.Load() < maxStreams {
			if pc.spare > 0 {
				pc.spare--
				pc.active.Add(1)
				return pc
			}
			if pc.cc.ReserveNewRequest() {
				pc.active.Add(1)
				return pc
			}
		}
		if st := pc.cc.State(); st.Closed || st.Closing {
			// GOAWAY received, closed, or idle-closed: in-flight streams
			// finish on it, new ones go elsewhere.
			hp.removeLocked(i)
			continue
		}
		i++
	}
	return nil
}

func (hp *hostPool) removeLocked(i int) {
	last := len(hp.conns) - 1
	hp.conns[i] = hp.conns[last]
	hp.conns[last] = nil
	hp.conns = hp.conns[:last]
}

// release ends a stream's hold on pc; unused says the stream never sent its
// request, so its x/net reservation is kept for the next stream.
func (hp *hostPool) release(pc *poolConn, unused bool) {
	if unused {
		hp.mu.Lock()
		pc.spare++
		hp.mu.Unlock()
	}
	if pc.active.Add(-1) != 0 {
		return
	}
	if pc.draining.Load() {
		pc.closeDrained()
		return
	}
	if hp.idleInterval > 0 {
		pc.lastUsed.Store(time.Now().UnixNano())
	}
}

// closeDrained closes a connection Drain retired, once.
func (pc *poolConn) closeDrained() {
	if !pc.shut.Swap(true) {
		pc.cc.Close()
	}
}

// Drain retires the client gracefully, as Envoy drains the connection
// pools of a removed or changed cluster
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/connection_pooling):
// every pooled connection leaves its pool, the idle ones close now and
// the busy ones when their last stream ends; a stream opened afterwards
// gets a connection of its own that closes when that stream ends (a
// request that picked the retired cluster just before it went). Close
// after Drain does not reach the connections Drain retired.
func (c *Client) Drain() {
	c.draining.Store(true)
	c.hosts.Range(func(_, v any) bool {
		hp := v.(*hostPool)
		hp.mu.Lock()
		conns := slices.Clone(hp.conns)
		clear(hp.conns)
		hp.conns = hp.conns[:0]
		hp.mu.Unlock()
		for _, pc := range conns {
			// Paired with release: it decrements active before reading
			// draining, this sets draining before reading active, so one
			// of the two sees the connection idle and closes it.
			pc.draining.Store(true)
			if pc.active.Load() == 0 {
				pc.closeDrained()
			}
		}
		return true
	})
}

// CloseIdle closes every connection that carries no stream.
func (c *Client) CloseIdle() {
	c.hosts.Range(func(_, v any) bool {
		hp := v.(*hostPool)
		hp.mu.Lock()
		for i := 0; i < len(hp.conns); {
			pc := hp.conns[i]
			if pc.active.Load() == 0 && pc.cc.State().StreamsActive == 0 {
				pc.cc.Close()
				hp.removeLocked(i)
				continue
			}
			i++
		}
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
			pc.cc.Close()
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
