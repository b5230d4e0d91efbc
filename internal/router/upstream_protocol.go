package router

import (
	"context"
	"errors"
	"net"

	"github.com/quic-go/quic-go"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/codec/http1"
	"github.com/herald-proxy/herald/internal/upstream"
)

// Upstream protocol selection of auto_config clusters
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/upstreams/http/v3/http_protocol_options.proto#envoy-v3-api-msg-extensions-upstreams-http-v3-httpprotocoloptions-autohttpconfig):
// every TLS connection offers ALPN h2,http/1.1 and speaks what the server
// chose, as Envoy's mixed connection pool (source/common/http/
// mixed_conn_pool.cc) does per connection. Envoy's per-host pool then
// holds connections of the negotiated protocol, so later requests go to
// them; herald remembers the outcome on the host, per auto_sni pool
// (upstream.Host.NegotiatedHTTP, kept across listener and route reloads),
// and sends later requests straight to the HTTP/2 client or the HTTP/1.1
// idle pool.

// errALPNChanged is the dial error of an HTTP/2 connection attempt whose
// TLS handshake no longer settled h2: the host now speaks HTTP/1.1, and
// the request goes to the HTTP/1.1 pool instead.
var errALPNChanged = errors.New("router: upstream no longer negotiates h2")

// connectByProtocol opens the stream of a cluster that does not speak
// HTTP/1.1 only (connect calls it first). It reports whether it settled
// the attempt (f.up set, or err); false leaves it to connect's HTTP/1.1
// path.
func (f *Filter) connectByProtocol() (bool, error) {
	switch f.cluster.HTTPProtocol() {
	case upstream.HTTP2:
		cl, host, opts := f.cluster, f.host, f.tlsOpts
		return true, f.connectH2(func(ctx context.Context) (net.Conn, error) {
			return cl.DialTLS(ctx, host, opts)
		})
	case upstream.Auto:
		if f.host.NegotiatedHTTP(f.poolKey) != upstream.HTTP2 {
			// Unknown yet, or HTTP/1.1: the HTTP/1.1 path dials with
			// ALPN h2,http/1.1 and adoptNegotiated looks at the result.
			return false, nil
		}
		err := f.connectAutoH2()
		if errors.Is(err, errALPNChanged) {
			return false, nil
		}
		return true, err
	case upstream.HTTP3:
		return true, f.connectH3()
	case upstream.UseDownstream:
		if p := f.cb.StreamInfo().Protocol; f.cluster.DownstreamHTTP2(p == "HTTP/2" || p == "HTTP/3") {
			cl, host, opts := f.cluster, f.host, f.tlsOpts
			opts.ALPN = "h2" // the HTTP/2 pool's ALPN fallback
			return true, f.connectH2(func(ctx context.Context) (net.Conn, error) {
				return cl.DialTLS(ctx, host, opts)
			})
		}
	case upstream.HTTP1:
	}
	return false, nil
}

// connectH3 opens a stream on the host's HTTP/3 client
// (upstream.Host.HTTP3), which dials the host over QUIC
// (upstream.Cluster.DialQUIC) when it has no usable connection. As for
// HTTP/2 the stream counts against max_requests; the connection against
// max_connections while it lives.
func (f *Filter) connectH3() error {
	if !f.acquireRequest() {
		return errOverflow
	}
	cl, host, opts := f.cluster, f.host, f.tlsOpts
	return f.attachStream(host.HTTP3().NewStream(f.cb.Context(), f.poolKey, func(ctx context.Context) (*quic.Conn, error) {
		return cl.DialQUIC(ctx, host, opts)
	}))
}

// connectH2 opens a stream on the host's HTTP/2 client (upstream.Host.HTTP2)
// in the pool of f.poolKey (auto_sni: a pool per SNI); dial makes a
// connection when none of the pool's can take the stream. The stream
// counts against max_requests.
func (f *Filter) connectH2(dial hhttp.Dialer) error {
	h2, err := f.host.HTTP2()
	if err != nil {
		return err
	}
	if !f.acquireRequest() {
		return errOverflow
	}
	return f.attachStream(h2.NewStream(f.cb.Context(), f.poolKey, dial))
}

// attachStream makes s, a new stream on a multiplexed connection, the
// attempt's upstream; on err it gives back the request acquireRequest took.
func (f *Filter) attachStream(s hhttp.UpstreamStream, err error) error {
	if err != nil {
		f.releaseRequest()
		return err
	}
	f.up = s
	f.reused = false
	return nil
}

// connectAutoH2 opens a stream on the HTTP/2 client for a host known to
// negotiate h2. A new connection that settles on anything else is parked
// in the host's HTTP/1.1 idle pool, the cache updated, and errALPNChanged
// returned.
func (f *Filter) connectAutoH2() error {
	cl, host, opts, pool := f.cluster, f.host, f.tlsOpts, f.poolKey
	return f.connectH2(func(ctx context.Context) (net.Conn, error) {
		nc, err := cl.DialTLS(ctx, host, opts)
		if err != nil {
			return nil, err
		}
		if upstream.NegotiatedProtocol(nc) != upstream.HTTP2 {
			host.SetNegotiatedHTTP(pool, upstream.HTTP1)
			// An HTTP/1.1 connection all the same: Envoy's mixed pool
			// makes an HTTP/1.1 ActiveClient for it, which counts
			// upstream_cx_http1_total (http1/conn_pool.cc).
			cl.Stats.UpstreamCxHTTP1Total.Inc()
			if !host.Idle().Sub(pool).Put(&h1Conn{nc: nc, cc: http1.NewClientConn(nc)}) {
				nc.Close()
			}
			return nil, errALPNChanged
		}
		return nc, nil
	})
}

// adoptNegotiated runs after connect's HTTP/1.1 path dialed pc for an
// auto_config cluster: it records what the connection negotiated and, when
// that is h2, hands the connection to the HTTP/2 client and opens the
// stream there. It reports whether it settled the attempt (f.up set, or
// err).
func (f *Filter) adoptNegotiated(pc *h1Conn) (bool, error) {
	if f.cluster.HTTPProtocol() != upstream.Auto || f.reused {
		return false, nil
	}
	p := upstream.NegotiatedProtocol(pc.nc)
	f.host.SetNegotiatedHTTP(f.poolKey, p)
	if p != upstream.HTTP2 {
		f.cluster.Stats.UpstreamCxHTTP1Total.Inc()
		return false, nil
	}
	h2, err := f.host.HTTP2()
	if err != nil {
		pc.Close()
		return true, err
	}
	if !f.acquireRequest() {
		pc.Close()
		return true, errOverflow
	}
	nc, used := pc.nc, false
	// The dial runs on this goroutine inside NewStream, or not at all when
	// a connection of another request got there first.
	s, err := h2.NewStream(f.cb.Context(), f.poolKey, func(context.Context) (net.Conn, error) {
		used = true
		return nc, nil
	})
	if !used {
		nc.Close()
	}
	return true, f.attachStream(s, err)
}
