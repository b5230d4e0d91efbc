package http1

// EnableTCPTunneling makes the next request a TCP tunnel whatever its
// method, as a CONNECT is (upgrade.go): sent without framing, its payload
// raw and held until the response, its end a half-close, and a 2xx
// response's body the raw bytes until the upstream closes. tcp_proxy's
// tunneling_config with use_post uses it for its POST.
//
// Envoy's RequestEncoderImpl::enableTcpTunneling (called by tcp_proxy's
// HttpUpstream::setRequestEncoder, source/common/tcp_proxy/upstream.cc)
// only closes the connection at the end of the request; its POST body is
// chunked and its response framed as usual. herald frames a POST tunnel
// as a CONNECT instead (raw both ways). Call it before WriteHeaders; Reset
// clears it.
func (cc *ClientConn) EnableTCPTunneling() { cc.tcpTunnel = true }
