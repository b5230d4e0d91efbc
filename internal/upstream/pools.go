package upstream

import (
	"sync"
	"sync/atomic"

	"github.com/herald-proxy/herald/internal/http/codec/http2"
	"github.com/herald-proxy/herald/internal/http/codec/http3"
)

// muxPools are a host's multiplexed connection pools: its HTTP/2 and
// HTTP/3 clients, each made on first use with the cluster's options and
// keyed inside by the auto_sni pool key (TLSOptions.PoolKey, "" for the
// default pool). Every user of the cluster shares them: the router, async
// clients and mirrors, tcp_proxy tunnels. Active health checks keep their
// own connections, as Envoy's do.
//
// Envoy: connection pools belong to the cluster manager, per cluster and
// host; a listener or route update leaves them alone, and a removed or
// changed cluster (or a host leaving it) drains them: existing streams
// finish, idle connections close
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/connection_pooling).
type muxPools struct {
	// Set once under mu, read without it on the request path.
	h2 atomic.Pointer[http2.Client]
	h3 atomic.Pointer[http3.Client]

	mu sync.Mutex
	// retired: the host left its cluster or the cluster stopped; a client
	// made afterwards starts drained. Guarded by mu.
	retired bool

	// alpn: what an auto_config host's connections negotiated (alpn.go).
	alpn alpnOutcomes
}

// HTTP2 returns the host's HTTP/2 client, built on first use with the
// cluster's http2_protocol_options (HTTP2CodecOptions),
// common_http_protocol_options.idle_timeout and max_requests_per_connection
// (a connection that carried that many streams takes no more and closes
// after its last, counting upstream_cx_max_requests); each new connection
// counts upstream_cx_http2_total (upstream_cx_total and the rest are
// counted by the dialer: Dial, DialTLS). Streams go on connections of
// the key given to NewStream: the request's TLSOptions.PoolKey ("" for
// the default pool). The error is only for options the codec refuses.
// After the host or its cluster retired, the client is draining: each
// new stream gets a connection that closes when the stream ends.
func (h *Host) HTTP2() (*http2.Client, error) {
	if c := h.pools.h2.Load(); c != nil {
		return c, nil
	}
	p := &h.pools
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.h2.Load(); c != nil {
		return c, nil
	}
	cl := h.cluster
	opts := http2.ClientOptions{
		HTTP2:                    cl.http.http2Codec,
		IdleTimeout:              cl.http.idleTimeout,
		MaxRequestsPerConnection: cl.http.maxRequests,
	}
	if s := cl.Stats; s != nil {
		opts.OnConnect, opts.OnMaxRequests = s.UpstreamCxHTTP2Total.Inc, s.UpstreamCxMaxRequests.Inc
	}
	c, err := http2.NewClient(opts)
	if err != nil {
		return nil, err
	}
	if p.retired {
		c.Drain()
	}
	p.h2.Store(c)
	return c, nil
}

// HTTP3 returns the host's HTTP/3 client, built on first use with the
// cluster's idle_timeout and max_requests_per_connection; keys, retirement
// and stats as HTTP2, with upstream_cx_http3_total for each new connection.
func (h *Host) HTTP3() *http3.Client {
	if c := h.pools.h3.Load(); c != nil {
		return c
	}
	p := &h.pools
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.h3.Load(); c != nil {
		return c
	}
	cl := h.cluster
	opts := http3.ClientOptions{IdleTimeout: cl.http.idleTimeout, MaxRequestsPerConnection: cl.http.maxRequests}
	if s := cl.Stats; s != nil {
		opts.OnConnect, opts.OnMaxRequests = s.UpstreamCxHTTP3Total.Inc, s.UpstreamCxMaxRequests.Inc
	}
	c := http3.NewClient(opts)
	if p.retired {
		c.Drain()
	}
	p.h3.Store(c)
	return c
}

// retirePools drains the host's HTTP/2 and HTTP/3 clients (idle
// connections close now, busy ones when their last stream ends) and its
// HTTP/1.1 idle pool (closed; connections in use close when returned).
func (h *Host) retirePools() {
	h.idle.CloseAll()
	p := &h.pools
	p.mu.Lock()
	p.retired = true
	h2, h3 := p.h2.Load(), p.h3.Load()
	p.mu.Unlock()
	if h2 != nil {
		h2.Drain()
	}
	if h3 != nil {
		h3.Drain()
	}
}
