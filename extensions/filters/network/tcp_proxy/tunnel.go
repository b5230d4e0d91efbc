package tcpproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
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

// maxTunnelResponseHead bounds an HTTP/1.1 response head: Envoy's
// max_response_headers_kb default (60 KiB).
const maxTunnelResponseHead = 60 << 10

// openTunnel opens the tunnel of one connect attempt to host h: an HTTP/2
// stream or an HTTP/1.1 connection carrying CONNECT (or POST), as Envoy's
// HttpConnPool picks the codec by the cluster's protocol
// (source/common/tcp_proxy/upstream.cc). A failed dial, a reset, or a
// response that does not open the tunnel is an error; resp is the response
// head when one arrived. The wait for the response is bounded by the
// idle timeout (Envoy starts the idle timer with the connection, "so that
// if no response is received from the upstream, the downstream connection
// will time out").
func (f *Filter) openTunnel(c *network.Conn, cl *upstream.Cluster, h *upstream.Host, info *streaminfo.Info) (up upstreamConn, resp *hhttp.Headers, err error) {
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
	if h2 {
		up, resp, err = f.openH2(c, cl, h, req, deadline)
	} else {
		up, resp, err = openH1(c, cl, h, req, deadline)
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
	return &countedTunnel{upstreamConn: up, cl: cl, h: h}, resp, nil
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

// openH2 sends the tunnel request as an HTTP/2 stream on a pooled
// connection of the host. Envoy: a CONNECT tunnel opens only on a 200
// (Http2Upstream::isValidResponse).
func (f *Filter) openH2(c *network.Conn, cl *upstream.Cluster, h *upstream.Host, req *hhttp.Headers, deadline time.Time) (upstreamConn, *hhttp.Headers, error) {
	h2, err := h.HTTP2()
	if err != nil {
		return nil, nil, err
	}
	// The host's default pool (key ""), where the router's streams to
	// the cluster go too: Envoy's tunnels take the cluster's HTTP
	// connection pool.
	s, err := h2.NewStream(c.Ctx, "", func(ctx context.Context) (net.Conn, error) { return cl.Dial(ctx, h) })
	if err != nil {
		return nil, nil, err
	}
	rd, _ := s.(interface{ SetReadDeadline(time.Time) error })
	if rd != nil && !deadline.IsZero() {
		rd.SetReadDeadline(deadline)
	}
	if err := s.WriteHeaders(req, false); err != nil {
		s.Close(err)
		return nil, nil, err
	}
	resp := &hhttp.Headers{}
	end, err := s.ReadHeaders(resp)
	if err != nil {
		s.Close(err)
		return nil, nil, err
	}
	if st := resp.StatusCode(); st != 200 || end {
		// Envoy resets the stream (resetEncoder) when the response is
		// not a 200 or ends the stream at once.
		s.Close(errTunnelReset)
		if st == 200 {
			return nil, resp, errors.New("tcp_proxy: tunnel response ended the stream")
		}
		return nil, resp, &tunnelRefusedError{status: st}
	}
	if rd != nil {
		rd.SetReadDeadline(time.Time{})
	}
	return &h2Tunnel{s: s}, resp, nil
}

// h2Tunnel is an established HTTP/2 tunnel: Write sends DATA, CloseWrite
// END_STREAM, Read returns the response's DATA. Reads and writes come from
// the pipe's two goroutines (the stream allows one of each).
type h2Tunnel struct {
	s                 hhttp.UpstreamStream
	readDone, written atomic.Bool
	// trailers are the response trailers, set by the reader at EOF and
	// read once the pipe is done.
	trailers *hhttp.Headers
}

// Read implements io.Reader.
func (t *h2Tunnel) Read(p []byte) (int, error) {
	n, err := t.s.ReadBody(p)
	if err == io.EOF {
		t.readDone.Store(true)
		if tr := t.s.Trailers(); tr != nil {
			t.trailers = tr.Clone()
		}
	}
	return n, err
}

// Write implements io.Writer; it blocks while HTTP/2 flow control holds
// the data, which stops the pipe reading downstream (back-pressure).
func (t *h2Tunnel) Write(p []byte) (int, error) {
	if err := t.s.WriteData(p, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseWrite ends the request stream (END_STREAM): Envoy maps a downstream
// half-close to end of stream on HTTP/2 tunnels (HttpUpstream::encodeData).
func (t *h2Tunnel) CloseWrite() error {
	t.written.Store(true)
	return t.s.WriteData(nil, true)
}

// Close implements io.Closer: a tunnel that has not ended both ways is
// reset (RST_STREAM), as Envoy's resetEncoder.
func (t *h2Tunnel) Close() error {
	if t.readDone.Load() && t.written.Load() {
		t.s.Close(nil)
	} else {
		t.s.Close(errTunnelReset)
	}
	return nil
}

// openH1 dials the host and performs the HTTP/1.1 handshake itself:
// herald's HTTP/1.1 client codec does not switch a connection to raw bytes
// after a 2xx answer to CONNECT, so the request head is written and the
// response head read here, and the connection then carries the tunnel.
// Envoy: any 2xx opens an HTTP/1.1 tunnel and its Content-Length or
// Transfer-Encoding are ignored (Http1Upstream::isValidResponse, RFC 9110
// §9.3.6); herald treats a 2xx to POST the same way: the bytes after the
// head are the tunnel.
func openH1(c *network.Conn, cl *upstream.Cluster, h *upstream.Host, req *hhttp.Headers, deadline time.Time) (upstreamConn, *hhttp.Headers, error) {
	nc, err := cl.Dial(c.Ctx, h)
	if err != nil {
		return nil, nil, err
	}
	if !deadline.IsZero() {
		nc.SetDeadline(deadline)
	}
	if _, err := nc.Write(appendH1Request(nil, req)); err != nil {
		nc.Close()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(nc, 4<<10)
	resp, err := readH1ResponseHead(br)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	if st := resp.StatusCode(); st < 200 || st > 299 {
		nc.Close()
		return nil, resp, &tunnelRefusedError{status: st}
	}
	nc.SetDeadline(time.Time{})
	return &h1Tunnel{conn: nc, r: br}, resp, nil
}

// appendH1Request appends the request head: "CONNECT authority HTTP/1.1"
// (or "POST path HTTP/1.1"), host from :authority, then the other fields.
// No framing header: the body is the raw tunnel until half-close, as
// Envoy's HTTP/1.1 encoder sends CONNECT and TCP-tunneling requests
// without chunk encoding. Values were checked by requestHeaders.
func appendH1Request(dst []byte, req *hhttp.Headers) []byte {
	target := req.Path()
	if req.Method() == "CONNECT" {
		target = req.Authority()
	}
	dst = append(dst, req.Method()...)
	dst = append(dst, ' ')
	dst = append(dst, target...)
	dst = append(dst, " HTTP/1.1\r\nhost: "...)
	dst = append(dst, req.Authority()...)
	dst = append(dst, "\r\n"...)
	for _, f := range req.Fields {
		if strings.HasPrefix(f.Name, ":") {
			continue
		}
		dst = append(dst, f.Name...)
		dst = append(dst, ": "...)
		dst = append(dst, f.Value...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// readH1ResponseHead reads a response head into Headers (":status" first,
// names lowercased), skipping 1xx interim responses; the head may not
// exceed maxTunnelResponseHead.
func readH1ResponseHead(br *bufio.Reader) (*hhttp.Headers, error) {
	budget := maxTunnelResponseHead
	line := func() (string, error) {
		var b []byte
		for {
			chunk, err := br.ReadSlice('\n')
			b = append(b, chunk...)
			if len(b) > budget {
				return "", errors.New("tcp_proxy: tunnel response head too large")
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return "", fmt.Errorf("tcp_proxy: tunnel response head: %w", err)
			}
			budget -= len(b)
			return strings.TrimRight(string(b), "\r\n"), nil
		}
	}
	for {
		status, err := line()
		if err != nil {
			return nil, err
		}
		code, ok := parseH1StatusLine(status)
		if !ok {
			return nil, fmt.Errorf("tcp_proxy: tunnel response: bad status line %q", status)
		}
		h := &hhttp.Headers{}
		h.SetStatus(code)
		for {
			l, err := line()
			if err != nil {
				return nil, err
			}
			if l == "" {
				break
			}
			name, value, ok := strings.Cut(l, ":")
			if !ok || name == "" || strings.ContainsAny(name, " \t") {
				return nil, fmt.Errorf("tcp_proxy: tunnel response: bad header line %q", l)
			}
			h.Add(strings.ToLower(name), strings.Trim(value, " \t"))
		}
		if code >= 200 {
			return h, nil
		}
	}
}

// parseH1StatusLine parses "HTTP/1.x NNN reason".
func parseH1StatusLine(s string) (int, bool) {
	if !strings.HasPrefix(s, "HTTP/1.") || len(s) < len("HTTP/1.x NNN") || s[8] != ' ' {
		return 0, false
	}
	code, err := strconv.Atoi(s[9:12])
	if err != nil || code < 100 || code > 999 || (len(s) > 12 && s[12] != ' ') {
		return 0, false
	}
	return code, true
}

// h1Tunnel is an established HTTP/1.1 tunnel: the connection's bytes, the
// first ones from the reader that held the response head.
type h1Tunnel struct {
	conn io.ReadWriteCloser
	r    *bufio.Reader
}

// Read implements io.Reader.
func (t *h1Tunnel) Read(p []byte) (int, error) { return t.r.Read(p) }

// Write implements io.Writer.
func (t *h1Tunnel) Write(p []byte) (int, error) { return t.conn.Write(p) }

// CloseWrite half-closes the connection. Envoy closes an HTTP/1.1 tunnel's
// connection after flushing when downstream half-closes (its HTTP/1.1
// codec has no half-closed stream, upstream.cc); herald sends a FIN
// instead, so the upstream's answer still reaches the client.
func (t *h1Tunnel) CloseWrite() error {
	if cw, ok := t.conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return t.conn.Close()
}

// Close implements io.Closer.
func (t *h1Tunnel) Close() error { return t.conn.Close() }

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

// trailers returns the response trailers of an HTTP/2 tunnel once the
// pipe is done, nil otherwise.
func (t *countedTunnel) trailers() *hhttp.Headers {
	if h2, ok := t.upstreamConn.(*h2Tunnel); ok {
		return h2.trailers
	}
	return nil
}

var (
	_ closeWriter = (*h2Tunnel)(nil)
	_ closeWriter = (*h1Tunnel)(nil)
	_ closeWriter = (*countedTunnel)(nil)
)
