package httpconnectionmanager

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/upstream"
)

// http2Fields are the http2_protocol_options fields the downstream HTTP/2
// codec applies
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#config-core-v3-http2protocoloptions):
// what clusters accept plus the flood limits. Any other field set is an
// error naming it (allow_metadata, custom_settings_parameters,
// max_metadata_size, enable_huffman_encoding, use_oghttp2_codec,
// max_header_field_size_kb, disallow_obs_text).
var http2Fields = append([]string{
	"max_outbound_frames", "max_outbound_control_frames",
	"max_consecutive_inbound_frames_with_empty_payload",
	"max_inbound_priority_frames_per_stream",
	"max_inbound_window_update_frames_per_data_frame_sent",
}, upstream.UpstreamHTTP2Fields...)

// http2Options translates the HCM's http2_protocol_options for the codec;
// nil when unset. connection_keepalive.connection_idle_interval only
// matters on upstream connections, as in Envoy.
func http2Options(p *corev3.Http2ProtocolOptions) *hhttp.HTTP2Options {
	return upstream.HTTP2OptionsFromProto(p)
}
