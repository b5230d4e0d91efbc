package upstream

import (
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/registry"
)

// HTTPProtocol is the protocol a cluster speaks to its hosts.
type HTTPProtocol int

const (
	// HTTP1 is HTTP/1.1, Envoy's default for clusters.
	HTTP1 HTTPProtocol = iota
	// HTTP2 is HTTP/2 (h2c on a raw transport).
	HTTP2
	// UseDownstream speaks the downstream request's protocol
	// (use_downstream_protocol_config, or the deprecated
	// protocol_selection: USE_DOWNSTREAM_PROTOCOL).
	UseDownstream
	// Auto is auto_config without HTTP/3: each TLS connection offers ALPN
	// h2,http/1.1 and speaks what the server picked (Envoy's mixed
	// connection pool, source/common/http/mixed_conn_pool.cc); no ALPN
	// answer means HTTP/1.1.
	Auto
	// HTTP3 is HTTP/3 over QUIC (explicit_http_config
	// http3_protocol_options with the envoy.transport_sockets.quic
	// QuicUpstreamTransport).
	HTTP3
)

func (p HTTPProtocol) String() string {
	switch p {
	case HTTP1:
		return "HTTP/1.1"
	case HTTP2:
		return "HTTP/2"
	case UseDownstream:
		return "downstream protocol"
	case Auto:
		return "ALPN (h2, http/1.1)"
	case HTTP3:
		return "HTTP/3"
	}
	return "unknown"
}

// HTTPProtocolOptionsKey is the typed_extension_protocol_options key (and
// the type of its value) that carries a cluster's HTTP options.
const HTTPProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// Defaults from Envoy's docs.
const (
	// DefaultIdleTimeout: "If not specified, this defaults to 1 hour."
	DefaultIdleTimeout = time.Hour
)

// httpOptions is the interpreted protocol part of a cluster.
type httpOptions struct {
	protocol       HTTPProtocol
	idleTimeout    time.Duration
	maxRequests    uint32
	http1          *corev3.Http1ProtocolOptions
	http2          *corev3.Http2ProtocolOptions
	http2Codec     *hhttp.HTTP2Options          // http2 for the codec (http2options.go)
	http3          *corev3.Http3ProtocolOptions // HTTP3 only (dial_quic.go)
	hasExplicitOpt bool
	// auto_sni, auto_san_validation and override_auto_sni_header
	// (lowercase) of upstream_http_protocol_options (autosni.go).
	autoSNI, autoSAN bool
	sniHeader        string
}

// parseHTTPOptions reads typed_extension_protocol_options and the deprecated
// cluster fields it replaces. The typed options win when both are set, as in
// Envoy.
func parseHTTPOptions(c *clusterv3.Cluster, path string) (httpOptions, configerr.List) {
	o := httpOptions{protocol: HTTP1, idleTimeout: DefaultIdleTimeout}
	var errs configerr.List

	// Deprecated cluster-level fields.
	if c.GetHttp2ProtocolOptions() != nil {
		o.protocol = HTTP2
		o.http2 = c.GetHttp2ProtocolOptions()
	}
	if c.GetHttpProtocolOptions() != nil {
		o.http1 = c.GetHttpProtocolOptions()
	}
	if c.GetProtocolSelection() == clusterv3.Cluster_USE_DOWNSTREAM_PROTOCOL {
		o.protocol = UseDownstream
	}
	if n := c.GetMaxRequestsPerConnection(); n != nil {
		o.maxRequests = n.GetValue()
	}
	common := c.GetCommonHttpProtocolOptions()

	for key, a := range c.GetTypedExtensionProtocolOptions() {
		kp := path + ".typed_extension_protocol_options[\"" + key + "\"]"
		if key != HTTPProtocolOptionsKey || a.GetTypeUrl() != registry.TypeURLPrefix+HTTPProtocolOptionsKey {
			errs = append(errs, configerr.At(kp, "protocol options %q (type %q) are %s", key, a.GetTypeUrl(), configerr.NotSupported))
			continue
		}
		var hpo httpv3.HttpProtocolOptions
		if err := anypb.UnmarshalTo(a, &hpo, protoUnmarshal); err != nil {
			errs = append(errs, configerr.At(kp, "%v", err))
			continue
		}
		errs = append(errs, configerr.CheckFields(&hpo, kp, "common_http_protocol_options", "upstream_http_protocol_options",
			"explicit_http_config", "use_downstream_protocol_config", "auto_config")...)
		if u := hpo.GetUpstreamHttpProtocolOptions(); u != nil {
			errs = append(errs, configerr.CheckFields(u, kp+".upstream_http_protocol_options",
				"auto_sni", "auto_san_validation", "override_auto_sni_header")...)
			o.autoSNI, o.autoSAN = u.GetAutoSni(), u.GetAutoSanValidation()
			o.sniHeader = strings.ToLower(u.GetOverrideAutoSniHeader())
		}
		if hpo.GetCommonHttpProtocolOptions() != nil {
			common = hpo.GetCommonHttpProtocolOptions()
		}
		switch pc := hpo.GetUpstreamProtocolOptions().(type) {
		case *httpv3.HttpProtocolOptions_ExplicitHttpConfig_:
			switch p := pc.ExplicitHttpConfig.GetProtocolConfig().(type) {
			case *httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions:
				o.protocol, o.http1 = HTTP1, p.HttpProtocolOptions
			case *httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions:
				o.protocol, o.http2 = HTTP2, p.Http2ProtocolOptions
			case *httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http3ProtocolOptions:
				o.protocol, o.http3 = HTTP3, p.Http3ProtocolOptions
				errs = append(errs, checkHTTP3(c, p.Http3ProtocolOptions, kp+".explicit_http_config.http3_protocol_options", path)...)
			}
		case *httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig:
			d := pc.UseDownstreamProtocolConfig
			o.protocol, o.http1, o.http2 = UseDownstream, d.GetHttpProtocolOptions(), d.GetHttp2ProtocolOptions()
			if d.GetHttp3ProtocolOptions() != nil {
				errs = append(errs, configerr.At(kp+".use_downstream_protocol_config.http3_protocol_options", "HTTP/3 upstreams are %s", configerr.NotSupported))
			}
		case *httpv3.HttpProtocolOptions_AutoConfig:
			a := pc.AutoConfig
			o.protocol, o.http1, o.http2 = Auto, a.GetHttpProtocolOptions(), a.GetHttp2ProtocolOptions()
			errs = append(errs, checkAuto(c, a, kp+".auto_config", path)...)
		case nil:
			// Envoy requires one of the three; the proto validation reports it.
		}
		o.hasExplicitOpt = true
	}

	if common != nil {
		cp := path + ".common_http_protocol_options"
		if o.hasExplicitOpt {
			cp = path + ".typed_extension_protocol_options[\"" + HTTPProtocolOptionsKey + "\"].common_http_protocol_options"
		}
		errs = append(errs, configerr.CheckFields(common, cp, "idle_timeout", "max_requests_per_connection")...)
		if d := common.GetIdleTimeout(); d != nil {
			o.idleTimeout = d.AsDuration() // 0 disables the idle timeout.
		}
		if n := common.GetMaxRequestsPerConnection(); n != nil {
			o.maxRequests = n.GetValue()
		}
	}
	errs = append(errs, o.parseHTTP2(c, path)...)
	return o, errs
}
