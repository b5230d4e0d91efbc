package router

import (
	"errors"
	"net"
	"net/netip"
	"syscall"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/codec/http1"
)

// Helpers of the forwarding engine: failure texts, the values header
// formatters read (HeaderValueContext) and the pooled connection type.

// connectFailureReason renders a dial error as Envoy's transport failure
// reason ("delayed connect error: Connection refused").
func connectFailureReason(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "connection timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "delayed connect error: Connection refused"
	}
	return "delayed connect error: " + err.Error()
}

// detailsToken turns a reason into the response_code_details form (spaces
// become underscores, as Envoy's StringUtil::replaceAllEmptySpace).
func detailsToken(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == ' ' || c == '\t' {
			b[i] = '_'
		}
	}
	return string(b)
}

// --- HeaderValueContext ---

// DownstreamRemoteAddress implements HeaderValueContext.
func (f *Filter) DownstreamRemoteAddress() netip.AddrPort { return f.cb.DownstreamRemoteAddress() }

// DownstreamDirectRemoteAddress implements HeaderValueContext.
func (f *Filter) DownstreamDirectRemoteAddress() netip.AddrPort {
	return f.cb.DownstreamDirectRemoteAddress()
}

// DownstreamLocalAddress implements HeaderValueContext.
func (f *Filter) DownstreamLocalAddress() netip.AddrPort {
	return f.cb.StreamInfo().DownstreamLocalAddress
}

// Protocol implements HeaderValueContext.
func (f *Filter) Protocol() string { return f.cb.StreamInfo().Protocol }

// UpstreamHost implements HeaderValueContext.
func (f *Filter) UpstreamHost() string { return f.cb.StreamInfo().UpstreamHost }

// RequestHeaders implements HeaderValueContext.
func (f *Filter) RequestHeaders() *hhttp.Headers { return f.cb.StreamInfo().RequestHeaders }

// h1Conn is a pooled HTTP/1.1 upstream connection.
type h1Conn struct {
	nc net.Conn
	cc *http1.ClientConn
	// requests counts the requests the connection carried, for
	// max_requests_per_connection.
	requests uint32
}

// Close implements io.Closer for the idle pool.
func (c *h1Conn) Close() error { return c.nc.Close() }
