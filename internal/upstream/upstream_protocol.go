package upstream

import (
	"crypto/tls"
	"net"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"github.com/herald-proxy/herald/internal/configerr"
)

// ALPN protocol IDs (RFC 7301 registry).
const (
	alpnHTTP11 = "http/1.1"
	alpnH2     = "h2"
	alpnH3     = "h3"
)

// Transport sockets by config type, for the protocol checks below.
const (
	tlsSocketName  = "envoy.transport_sockets.tls"
	tlsSocketType  = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
	quicSocketName = "envoy.transport_sockets.quic"
	quicSocketType = "type.googleapis.com/envoy.extensions.transport_sockets.quic.v3.QuicUpstreamTransport"
)

// socketIs reports whether the cluster's transport_socket is the one named
// name with config type typeURL.
func socketIs(c *clusterv3.Cluster, name, typeURL string) bool {
	ts := c.GetTransportSocket()
	if ts == nil {
		return false
	}
	if tc := ts.GetTypedConfig(); tc != nil {
		return tc.GetTypeUrl() == typeURL
	}
	return ts.GetName() == name
}

// checkAuto checks auto_config (path) of cluster c (at clusterPath).
//
// Envoy: AutoHttpConfig "can only be used with transport sockets which
// support ALPN. Using a transport socket which does not support ALPN will
// result in configuration failure"
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/upstreams/http/v3/http_protocol_options.proto#envoy-v3-api-msg-extensions-upstreams-http-v3-httpprotocoloptions-autohttpconfig);
// ClusterImplBase reports "ALPN configured for cluster X which has a
// non-ALPN transport socket" (source/common/upstream/upstream_impl.cc).
// In herald the TLS socket is the one that speaks ALPN.
//
// HTTP/3 in auto_config needs Envoy's HTTP/3 connectivity grid
// (source/common/http/conn_pool_grid.cc: QUIC raced against TCP, with
// broken-HTTP/3 tracking) fed by the alternate protocols cache (alt-svc
// and HTTPS records, https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/http3#http3-upstream);
// herald has neither, so http3_protocol_options and
// alternate_protocols_cache_options are refused by name. Use
// explicit_http_config.http3_protocol_options for HTTP/3 upstreams.
func checkAuto(c *clusterv3.Cluster, a *httpv3.HttpProtocolOptions_AutoHttpConfig, path, clusterPath string) configerr.List {
	var errs configerr.List
	if a.GetHttp3ProtocolOptions() != nil {
		errs = append(errs, configerr.At(path+".http3_protocol_options",
			"HTTP/3 in auto_config is %s: it needs the alternate protocols cache and the HTTP/3 connectivity grid (use explicit_http_config.http3_protocol_options)", configerr.NotSupported))
	}
	if a.GetAlternateProtocolsCacheOptions() != nil {
		errs = append(errs, configerr.At(path+".alternate_protocols_cache_options",
			"the alternate protocols cache is %s", configerr.NotSupported))
	}
	if !socketIs(c, tlsSocketName, tlsSocketType) {
		errs = append(errs, configerr.At(clusterPath+".transport_socket",
			"ALPN configured for cluster %s which has a non-ALPN transport socket (auto_config needs envoy.transport_sockets.tls)", c.GetName()))
	}
	return errs
}

// quicFields are the quic_protocol_options an HTTP/3 upstream applies.
var quicFields = []string{"initial_stream_window_size", "initial_connection_window_size", "idle_network_timeout"}

// checkHTTP3 checks explicit_http_config.http3_protocol_options (path).
// Envoy: "HTTP3 requires a QuicUpstreamTransport transport socket"
// (source/common/upstream/upstream_impl.cc).
func checkHTTP3(c *clusterv3.Cluster, o *corev3.Http3ProtocolOptions, path, clusterPath string) configerr.List {
	errs := configerr.CheckFields(o, path, "quic_protocol_options")
	if q := o.GetQuicProtocolOptions(); q != nil {
		errs = append(errs, configerr.CheckFields(q, path+".quic_protocol_options", quicFields...)...)
	}
	if !socketIs(c, quicSocketName, quicSocketType) {
		errs = append(errs, configerr.At(clusterPath+".transport_socket",
			"HTTP3 requires a QuicUpstreamTransport transport socket (envoy.transport_sockets.quic) for cluster %s", c.GetName()))
	}
	return errs
}

// defaultALPN is what the cluster's TLS socket offers when its
// alpn_protocols is empty: the protocol the connection pool speaks, as
// Envoy's pools set the ALPN fallback; "h2,http/1.1" for auto_config
// (AutoHttpConfig: "the default ALPN for the cluster ... will be
// h2,http/1.1"); "h3" for HTTP/3.
func (o *httpOptions) defaultALPN() []string {
	switch o.protocol {
	case HTTP2:
		return []string{alpnH2}
	case Auto:
		return []string{alpnH2, alpnHTTP11}
	case HTTP3:
		return []string{alpnH3}
	case HTTP1, UseDownstream:
	}
	return []string{alpnHTTP11}
}

// DownstreamHTTP2 reports whether a request that arrived over HTTP/2 or
// HTTP/3 (downstreamMultiplexed) goes upstream over HTTP/2: a
// use_downstream_protocol_config cluster speaks the downstream's protocol,
// HTTP/3 downstreams getting HTTP/2 when the cluster has no HTTP/3
// (Envoy's ClusterInfoImpl::upstreamHttpProtocol). Over TLS the HTTP/2
// connections offer ALPN h2 (TLSOptions.ALPN) unless alpn_protocols is
// configured, as Envoy's HTTP/2 pool sets its ALPN fallback.
func (c *Cluster) DownstreamHTTP2(downstreamMultiplexed bool) bool {
	return downstreamMultiplexed && c.http.protocol == UseDownstream
}

// HTTP3Options returns the cluster's http3_protocol_options, or nil.
func (c *Cluster) HTTP3Options() *corev3.Http3ProtocolOptions { return c.http.http3 }

// NegotiatedProtocol is what a connection from Dial or DialTLS of an
// auto_config cluster speaks: HTTP2 when the TLS handshake settled ALPN
// h2, else HTTP1 — Envoy's mixed pool: "If an old TLS stack does not
// negotiate alpn, it likely does not support HTTP/2. Fail over to HTTP/1"
// (source/common/http/mixed_conn_pool.cc).
func NegotiatedProtocol(conn net.Conn) HTTPProtocol {
	if uc, ok := conn.(*upstreamConn); ok {
		conn = uc.Conn
	}
	if cs, ok := conn.(interface{ ConnectionState() tls.ConnectionState }); ok &&
		cs.ConnectionState().NegotiatedProtocol == alpnH2 {
		return HTTP2
	}
	return HTTP1
}
