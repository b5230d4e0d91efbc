package upstream

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/herald-proxy/herald/internal/tlsx"
)

// TLSOptions are the per-request transport socket options of a cluster
// with upstream_http_protocol_options auto_sni or auto_san_validation
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#envoy-v3-api-msg-config-core-v3-upstreamhttpprotocoloptions).
// Connections made with different options are never shared: Envoy hashes
// the transport socket options into the connection pool key; PoolKey is
// herald's.
type TLSOptions struct {
	// ServerName is the SNI to send ("" keeps the context's sni).
	ServerName string
	// VerifyName is the name the server certificate must have as a SAN
	// ("" adds no check).
	VerifyName string
	// ALPN replaces the cluster's default ALPN on this connection (see
	// tlsx.HandshakeOptions.ALPNFallback); not part of PoolKey, since
	// each protocol has its own pools.
	ALPN string
}

// PoolKey is the key separating connections by o; "" for the zero
// options (the cluster's default pools).
func (o TLSOptions) PoolKey() string {
	if o.ServerName == "" && o.VerifyName == "" {
		return ""
	}
	return o.ServerName + "|" + o.VerifyName
}

// AutoSNI reports whether requests to c carry TLSOptions: auto_sni or
// auto_san_validation is set and the cluster speaks TLS. Without it the
// router never calls TLSOptionsFor.
func (c *Cluster) AutoSNI() bool {
	return c.transport != nil && (c.http.autoSNI || c.http.autoSAN)
}

// AutoSNIHeader is override_auto_sni_header, lowercase ("" when unset).
func (c *Cluster) AutoSNIHeader() string { return c.http.sniHeader }

// TLSOptionsFor returns the options for a request whose host
// (:authority after the route's host rewrites) is authority and whose
// override_auto_sni_header value is override ("" when absent), as
// Envoy's router (Filter::decodeHeaders, source/common/router/router.cc):
// a non-empty override wins; the port is dropped (Http::Utility::
// parseAuthority); an IP address is never sent as SNI but is still the
// SAN to verify with auto_san_validation.
func (c *Cluster) TLSOptionsFor(authority, override string) TLSOptions {
	if override != "" {
		authority = override
	}
	host, isIP := parseAuthority(authority)
	var o TLSOptions
	if host == "" {
		return o
	}
	if c.http.autoSNI && !isIP {
		o.ServerName = host
	}
	if c.http.autoSAN {
		o.VerifyName = host
	}
	return o
}

// parseAuthority is Envoy's Http::Utility::parseAuthority: the host
// without a valid port, brackets removed from an IPv6 literal, and
// whether it is an IP address.
func parseAuthority(a string) (host string, isIP bool) {
	host = a
	if i := strings.LastIndexByte(a, ':'); i >= 0 && !strings.HasSuffix(a, "]") {
		if p, err := strconv.ParseUint(a[i+1:], 10, 64); err == nil && p <= 65535 {
			host = a[:i]
		}
	}
	ip := host
	if len(ip) >= 2 && ip[0] == '[' && ip[len(ip)-1] == ']' {
		ip = ip[1 : len(ip)-1]
	}
	if _, err := netip.ParseAddr(ip); err == nil {
		return ip, true
	}
	return host, false
}

// DialTLS is Dial with per-request TLS options (TLSOptionsFor); the zero
// options dial as Dial.
func (c *Cluster) DialTLS(ctx context.Context, h *Host, o TLSOptions) (net.Conn, error) {
	if o != (TLSOptions{}) && c.transport != nil {
		ctx = tlsx.WithHandshakeOptions(ctx, &tlsx.HandshakeOptions{ServerName: o.ServerName, VerifyName: o.VerifyName, ALPNFallback: o.ALPN})
	}
	return c.Dial(ctx, h)
}
