package tcpproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/codec/http1"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/streaminfo"
	"github.com/herald-proxy/herald/internal/upstream"
)

// upstreamConn is what the pipe copies to and from: a raw TCP connection
// or an established tunnel. CloseWrite (when implemented) forwards a
// downstream half-close.
type upstreamConn = io.ReadWriteCloser

// tunnelRefusedError is an attempt the upstream answered with a status
// that does not open the tunnel.
type tunnelRefusedError struct{ status int }

func (e *tunnelRefusedError) Error() string {
	return "tcp_proxy: tunnel refused: upstream answered " + strconv.Itoa(e.status)
}

// errTunnelReset closes a tunnel stream that did not end cleanly both ways.
var errTunnelReset = errors.New("tcp_proxy: tunnel closed before both directions ended")

// openTunnel opens the tunnel of one connect attempt to host h: an HTTP/2
// stream or an HTTP/1.1 connection carrying CONNECT (or POST), as Envoy's
// HttpConnPool picks the codec by the cluster's protocol
// (source/common/tcp_proxy/upstream.cc). Both go through the codec's
// hhttp.UpstreamStream: WriteHeaders, ReadHeaders, then the bodies both
// ways are the tunnel. A failed dial, a reset, or a response that does
// not open the tunnel is an error; resp is the response head when one
// arrived. The wait for the response is bounded by the idle timeout
// (Envoy starts the idle timer with the connection, "so that if no
// response is received from the upstream, the downstream connection will
// time out"). opts carry the upstream SNI from filter state.
func (f *Filter) openTunnel(c *network.Conn, cl *upstream.Cluster, h *upstream.Host, info *streaminfo.Info, opts upstream.TLSOptions) (up upstreamConn, resp *hhttp.Headers, err error) {
	h2 := cl.HTTPProtocol() == upstream.HTTP2
	req, err := f.tunnel.requestHeaders(info, clusterSecure(cl), h2)
	if err != nil {
		return nil, nil, err
	}
	var deadline time.Time
	if f.idleTimeout > 0 {
		deadline = time.Now().Add(f.idleTimeout)
	}
	// Envoy's HTTP connection pools count a stream per tunnel
	// (upstream_rq_total, upstream_rq_active).
	cl.Stats.UpstreamRqTotal.Inc()
	h.Stats.RqTotal.Add(1)
	var s hhttp.UpstreamStream
	var setDeadline func(time.Time)
	if h2 {
		s, setDeadline, err = newH2Stream(c, cl, h, opts)
	} else {
		s, setDeadline, err = newH1Stream(c, cl, h, opts, f.tunnel.usePost)
	}
	if err == nil {
		resp, err = handshake(s, req, h2, deadline, setDeadline)
	}
	if err != nil {
		var refused *tunnelRefusedError
		if errors.As(err, &refused) {
			// Envoy reports a refused tunnel as a pool failure
			// (RemoteConnectionFailure) and the host's outlier detector
			// sees LocalOriginConnectFailed.
			h.RecordLocalOrigin(upstream.LocalOriginConnectFailed)
		}
		return nil, resp, err
	}
	cl.Stats.UpstreamRqActive.Inc()
	h.Stats.RqActive.Add(1)
	return &countedTunnel{upstreamConn: &streamTunnel{s: s}, cl: cl, h: h}, resp, nil
}

// clusterSecure reports whether the cluster's transport socket is TLS
// (Envoy's implementsSecureTransport), for :scheme with use_post.
func clusterSecure(cl *upstream.Cluster) bool {
	ts := cl.Config().GetTransportSocket()
	if ts == nil {
		return false
	}
	return ts.GetName() == "envoy.transport_sockets.tls" ||
		strings.HasSuffix(ts.GetTypedConfig().GetTypeUrl(), ".UpstreamTlsContext")
}

// newH2Stream opens a stream on a pooled HTTP/2 connection of the host:
// the pool of opts' key (the default one, "", without an SNI override),
// where the router's streams to the cluster go too — Envoy's tunnels take
// the cluster's HTTP connection pool, keyed by the transport socket
// options as the router's auto_sni ones are.
func newH2Stream(c *network.Conn, cl *upstream.Cluster, h *upstream.Host, opts upstream.TLSOptions) (hhttp.UpstreamStream, func(time.Time), error) {
	h2, err := h.HTTP2()
	if err != nil {
		return nil, nil, err
	}
	s, err := h2.NewStream(c.Ctx, opts.PoolKey(), func(ctx context.Context) (net.Conn, error) { return cl.DialTLS(ctx, h, opts) })
	if err != nil {
		return nil, nil, err
	}
	setDeadline := func(time.Time) {}
	if rd, ok := s.(interface{ SetReadDeadline(time.Time) error }); ok {
		setDeadline = func(t time.Time) { _ = rd.SetReadDeadline(t) }
	}
	return s, setDeadline, nil
}

// newH1Stream dials the host for an HTTP/1.1 tunnel: one connection per
// tunnel, never reused. The codec sends a CONNECT unframed and makes a 2xx
// response's body the raw connection (any 2xx opens an HTTP/1.1 tunnel,
// Envoy's Http1Upstream::isValidResponse, RFC 9110 §9.3.6);
// EnableTCPTunneling makes a use_post POST the same.
func newH1Stream(c *network.Conn, cl *upstream.Cluster, h *upstream.Host, opts upstream.TLSOptions, post bool) (hhttp.UpstreamStream, func(time.Time), error) {
	nc, err := cl.DialTLS(c.Ctx, h, opts)
	if err != nil {
		return nil, nil, err
	}
	// Envoy's tunnel takes an HTTP/1.1 connection of the cluster's pool,
	// whose ActiveClient counts upstream_cx_http1_total
	// (source/common/http/http1/conn_pool.cc); HTTP/2 tunnels count
	// upstream_cx_http2_total through the host's client (Host.HTTP2).
	cl.Stats.UpstreamCxHTTP1Total.Inc()
	cc := http1.NewClientConn(nc)
	if post {
		cc.EnableTCPTunneling()
	}
	return cc, func(t time.Time) { _ = nc.SetDeadline(t) }, nil
}

// handshake sends the tunnel request on s and reads the response head
// before deadline (zero: none). Envoy: an HTTP/2 tunnel opens only on a
// 200 (Http2Upstream::isValidResponse), an HTTP/1.1 one on any 2xx; any
// other response, or one that ends the stream at once, resets the stream
// (resetEncoder). On error s is closed.
func handshake(s hhttp.UpstreamStream, req *hhttp.Headers, h2 bool, deadline time.Time, setDeadline func(time.Time)) (*hhttp.Headers, error) {
	if !deadline.IsZero() {
		setDeadline(deadline)
	}
	if err := s.WriteHeaders(req, false); err != nil {
		s.Close(err)
		return nil, err
	}
	resp := &hhttp.Headers{}
	end, err := s.ReadHeaders(resp)
	if err != nil {
		s.Close(err)
		return nil, err
	}
	st := resp.StatusCode()
	ok := st == 200
	if !h2 {
		ok = st >= 200 && st <= 299
	}
	if !ok || end {
		s.Close(errTunnelReset)
		if ok {
			return resp, errors.New("tcp_proxy: tunnel response ended the stream")
		}
		return resp, &tunnelRefusedError{status: st}
	}
	if !deadline.IsZero() {
		setDeadline(time.Time{})
	}
	return resp, nil
}

// streamTunnel is an established tunnel over an HTTP stream, HTTP/2 or
// HTTP/1.1: Write sends body data, CloseWrite ends the request (HTTP/2
// END_STREAM, an HTTP/1.1 FIN), Read returns the response body. Reads
// and writes come from the pipe's two goroutines (the stream allows one
// of each).
type streamTunnel struct {
	s                         hhttp.UpstreamStream
	readDone, written, closed atomic.Bool
	// trailers are the response trailers, set by the reader at EOF and
	// read once the pipe is done (HTTP/2 only).
	trailers *hhttp.Headers
}

// Read implements io.Reader.
func (t *streamTunnel) Read(p []byte) (int, error) {
	n, err := t.s.ReadBody(p)
	if err == io.EOF {
		t.readDone.Store(true)
		if tr := t.s.Trailers(); tr != nil {
			t.trailers = tr.Clone()
		}
	}
	return n, err
}

// Write implements io.Writer; it blocks while HTTP/2 flow control (or the
// TCP window) holds the data, which stops the pipe reading downstream
// (back-pressure).
func (t *streamTunnel) Write(p []byte) (int, error) {
	if err := t.s.WriteData(p, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseWrite ends the request: Envoy maps a downstream half-close to end
// of stream on HTTP/2 tunnels (HttpUpstream::encodeData). Envoy closes an
// HTTP/1.1 tunnel's connection after flushing instead (its HTTP/1.1 codec
// has no half-closed stream); herald's codec sends a FIN, so the
// upstream's answer still reaches the client.
func (t *streamTunnel) CloseWrite() error {
	t.written.Store(true)
	return t.s.WriteData(nil, true)
}

// Close implements io.Closer, once: a tunnel that has not ended both ways
// is reset (RST_STREAM, or the HTTP/1.1 connection closed), as Envoy's
// resetEncoder. The pipe may call it from both goroutines and the idle
// timer.
func (t *streamTunnel) Close() error {
	if !t.closed.CompareAndSwap(false, true) {
		return nil
	}
	if t.readDone.Load() && t.written.Load() {
		t.s.Close(nil)
	} else {
		t.s.Close(errTunnelReset)
	}
	return nil
}

// countedTunnel ends the tunnel's upstream_rq_active on its first Close.
type countedTunnel struct {
	upstreamConn
	cl     *upstream.Cluster
	h      *upstream.Host
	closed atomic.Bool
}

// CloseWrite forwards a half-close.
func (t *countedTunnel) CloseWrite() error {
	return t.upstreamConn.(closeWriter).CloseWrite()
}

// Close implements io.Closer.
func (t *countedTunnel) Close() error {
	err := t.upstreamConn.Close()
	if t.closed.CompareAndSwap(false, true) {
		t.cl.Stats.UpstreamRqActive.Dec()
		t.h.Stats.RqActive.Add(-1)
	}
	return err
}

// trailers returns the response trailers of the tunnel once the pipe is
// done, nil when there were none.
func (t *countedTunnel) trailers() *hhttp.Headers {
	if st, ok := t.upstreamConn.(*streamTunnel); ok {
		return st.trailers
	}
	return nil
}

var (
	_ closeWriter = (*streamTunnel)(nil)
	_ closeWriter = (*countedTunnel)(nil)
)
