package httpconnectionmanager

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
)

// http3Fields are the http3_protocol_options fields herald accepts
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#config-core-v3-http3protocoloptions).
// allow_metadata, disable_qpack, disable_connection_flow_control_for_streams
// and disallow_obs_text are refused by name (http3Refused).
var http3Fields = []string{"quic_protocol_options", "override_stream_error_on_invalid_http_message", "allow_extended_connect"}

// http3Refused says why the http3_protocol_options herald cannot apply on
// quic-go's HTTP/3 server are refused.
var http3Refused = map[string]string{
	// Envoy's HTTP/3 codec counts METADATA as unsupported too; quic-go
	// has no METADATA frame.
	"allow_metadata": "quic-go's HTTP/3 server has no METADATA frames",
	// quic-go's QPACK encoder and decoder settings are fixed (static
	// table only, Huffman coding chosen by the encoder).
	"disable_qpack": "quic-go's QPACK settings are fixed",
	"disable_connection_flow_control_for_streams": "quic-go always applies connection flow control",
	"disallow_obs_text":                           "quic-go's header validation decides obs-text",
}

// http3QUICFields are the quic_protocol_options fields accepted in the
// connection manager's http3_protocol_options. Envoy's QUIC server session
// reads only connection_keepalive from there
// (source/common/quic/envoy_quic_server_session.cc
// EnvoyQuicServerSession::setHttp3Options); the transport settings
// (max_concurrent_streams, initial_stream_window_size,
// initial_connection_window_size, idle_network_timeout, ...) of downstream
// connections come from the listener's udp_listener_config.quic_options,
// which herald applies there (internal/snapshot quic.go). Here they are
// accepted and, as in Envoy, have no effect. connection_keepalive is
// refused: quic-go fixes a connection's keep-alive when its handshake
// starts, before the filter chain's connection manager is known.
var http3QUICFields = []string{
	"max_concurrent_streams", "initial_stream_window_size", "initial_connection_window_size",
	"num_timeouts_to_trigger_port_migration", "connection_options", "client_connection_options",
	"idle_network_timeout", "max_packet_length", "client_packet_writer", "connection_migration",
	"memory_reduction_timeout", "enable_scone",
}

// buildHTTP3Options checks the HCM's http3_protocol_options and returns
// what the HTTP/3 codec applies; nil when unset.
func buildHTTP3Options(p *corev3.Http3ProtocolOptions, path string) (*hhttp.HTTP3Options, configerr.List) {
	if p == nil {
		return nil, nil
	}
	errs := configerr.RejectUnlisted(p, path, http3Refused, http3Fields...)
	if q := p.GetQuicProtocolOptions(); q != nil {
		errs = append(errs, configerr.RejectUnlisted(q, path+".quic_protocol_options", map[string]string{
			"connection_keepalive": "quic-go sets keep-alive when the handshake starts; it is not configurable per connection manager",
		}, http3QUICFields...)...)
	}
	o := &hhttp.HTTP3Options{AllowExtendedConnect: p.GetAllowExtendedConnect()}
	// Envoy (Http3::Utility::initializeAndValidateOptions): the override
	// decides; unset, the HCM's stream_error_on_invalid_http_message would,
	// which herald leaves at its default, false.
	if v := p.GetOverrideStreamErrorOnInvalidHttpMessage(); v != nil {
		o.StreamErrorOnInvalidHTTPMessage = v.GetValue()
	}
	return o, errs
}
