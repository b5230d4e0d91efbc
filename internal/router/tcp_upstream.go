package router

import (
	"net"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// tcpUpstream is the upstream stream of a terminated CONNECT (Envoy's
// TcpUpstream, router/upstream_codec_filter and
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/upgrades#connect-support):
// a TCP connection to the host, opened through the cluster's transport
// socket. The request headers are not sent; the request body is written as
// raw bytes and its end half-closes the connection; the response is a
// synthesized 200 once the connection is up, then every byte the upstream
// sends, until it closes. The write half (decode side) and the read half
// (response goroutine) may run on two goroutines, as net.Conn allows.
type tcpUpstream struct {
	c net.Conn
}

var (
	_ hhttp.UpstreamStream = (*tcpUpstream)(nil)
	_ readDeadliner        = (*tcpUpstream)(nil)
)

// WriteHeaders implements hhttp.UpstreamStream: Envoy strips the CONNECT
// request's headers; only its end of stream matters.
func (u *tcpUpstream) WriteHeaders(_ *hhttp.Headers, endStream bool) error {
	if endStream {
		return u.closeWrite()
	}
	return nil
}

// WriteData implements hhttp.UpstreamStream.
func (u *tcpUpstream) WriteData(p []byte, endStream bool) error {
	if len(p) > 0 {
		if _, err := u.c.Write(p); err != nil {
			return err
		}
	}
	if endStream {
		return u.closeWrite()
	}
	return nil
}

// WriteTrailers implements hhttp.UpstreamStream: trailers cannot cross a
// TCP connection; they only end the request.
func (u *tcpUpstream) WriteTrailers(*hhttp.Headers) error { return u.closeWrite() }

func (u *tcpUpstream) closeWrite() error {
	if cw, ok := u.c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadHeaders implements hhttp.UpstreamStream: Envoy synthesizes a 200
// once the connection is established (TcpUpstream::encodeHeaders).
func (u *tcpUpstream) ReadHeaders(h *hhttp.Headers) (bool, error) {
	h.Reset()
	h.Add(hhttp.Status, "200")
	return false, nil
}

// ReadBody implements hhttp.UpstreamStream: io.EOF when the upstream
// closes its side.
func (u *tcpUpstream) ReadBody(p []byte) (int, error) { return u.c.Read(p) }

// Trailers implements hhttp.UpstreamStream.
func (u *tcpUpstream) Trailers() *hhttp.Headers { return nil }

// Close implements hhttp.UpstreamStream: the connection is never reused.
func (u *tcpUpstream) Close(error) { _ = u.c.Close() }

// SetReadDeadline bounds the response read (the route timeout).
func (u *tcpUpstream) SetReadDeadline(t time.Time) error { return u.c.SetReadDeadline(t) }

// dialTCP opens the TCP connection of a terminated CONNECT, within the
// cluster's max_requests.
func (f *Filter) dialTCP() error {
	if !f.acquireRequest() {
		return errOverflow
	}
	c, err := f.cluster.DialTLS(f.cb.Context(), f.host, f.tlsOpts)
	if err != nil {
		f.releaseRequest()
		return err
	}
	f.tcp = c
	f.up = &tcpUpstream{c: c}
	f.reused = false
	return nil
}
