package httpconnectionmanager

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/http/connmgr"
)

// commonFields are the common_http_protocol_options fields the connection
// manager applies to downstream connections
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#config-core-v3-httpprotocoloptions).
// Any other field set is an error naming it: max_connection_duration_jitter,
// and max_response_headers_kb, which Envoy accepts only on clusters.
var commonFields = []string{
	"idle_timeout", "max_headers_count",
	"max_stream_duration", "max_connection_duration",
	"max_requests_per_connection", "headers_with_underscores_action",
}

// buildCommonOptions translates common_http_protocol_options into cfg;
// path is the options' field path. Every value is Envoy's default when
// unset: 1 h idle timeout, 100 headers, no stream or connection duration
// limit, no request limit, ALLOW.
func buildCommonOptions(p *corev3.HttpProtocolOptions, path string, cfg *connmgr.Config) configerr.List {
	if v := p.GetMaxHeadersCount(); v != nil {
		cfg.MaxRequestHeadersCount = int(v.GetValue())
	}
	durationOr(p.GetIdleTimeout(), &cfg.IdleTimeout)
	durationOr(p.GetMaxStreamDuration(), &cfg.MaxStreamDuration)
	durationOr(p.GetMaxConnectionDuration(), &cfg.MaxConnectionDuration)
	// Envoy: "If not specified, there is no limit"; 0 is no limit too
	// (ConnectionManagerImpl::newStream checks maxRequestsPerConnection() > 0).
	cfg.MaxRequestsPerConnection = p.GetMaxRequestsPerConnection().GetValue()
	switch a := p.GetHeadersWithUnderscoresAction(); a {
	case corev3.HttpProtocolOptions_ALLOW:
		cfg.HeadersWithUnderscores = connmgr.AllowUnderscores
	case corev3.HttpProtocolOptions_REJECT_REQUEST:
		cfg.HeadersWithUnderscores = connmgr.RejectUnderscores
	case corev3.HttpProtocolOptions_DROP_HEADER:
		cfg.HeadersWithUnderscores = connmgr.DropUnderscores
	default:
		return configerr.List{configerr.At(path+".headers_with_underscores_action", "unknown value %d", int32(a))}
	}
	return nil
}
