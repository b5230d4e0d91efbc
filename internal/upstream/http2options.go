package upstream

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
)

// UpstreamHTTP2Fields are the Http2ProtocolOptions fields herald applies to
// upstream connections (the HTTP/2 codec's Client); any other field set on
// a cluster is an error naming it. The flood limits (max_outbound_frames
// and the four others) apply to downstream connections only: x/net's
// client, which herald's upstream HTTP/2 is built on, has none to
// configure.
var UpstreamHTTP2Fields = []string{
	"max_concurrent_streams", "initial_stream_window_size", "initial_connection_window_size",
	"hpack_table_size", "allow_connect", "connection_keepalive",
	"override_stream_error_on_invalid_http_message", "stream_error_on_invalid_http_messaging",
}

// HTTP2CodecOptions returns the cluster's http2_protocol_options translated
// for the HTTP/2 codec (http2.ClientOptions.HTTP2, set by pools.go), or nil without them.
// Built once with the cluster; do not modify.
func (c *Cluster) HTTP2CodecOptions() *hhttp.HTTP2Options { return c.http.http2Codec }

// parseHTTP2 checks the cluster's http2_protocol_options (wherever they
// came from) against UpstreamHTTP2Fields and translates them once.
func (o *httpOptions) parseHTTP2(c *clusterv3.Cluster, path string) configerr.List {
	if o.http2 == nil {
		return nil
	}
	o.http2Codec = HTTP2OptionsFromProto(o.http2)
	return configerr.CheckFields(o.http2, http2Path(c, path), UpstreamHTTP2Fields...)
}

// http2Path is the config path of the http2_protocol_options parseHTTPOptions
// picked: inside the typed HttpProtocolOptions when present (they win over
// the deprecated cluster field, as in Envoy).
func http2Path(c *clusterv3.Cluster, path string) string {
	a := c.GetTypedExtensionProtocolOptions()[HTTPProtocolOptionsKey]
	var hpo httpv3.HttpProtocolOptions
	if a == nil || anypb.UnmarshalTo(a, &hpo, protoUnmarshal) != nil {
		return path + ".http2_protocol_options"
	}
	kp := path + ".typed_extension_protocol_options[\"" + HTTPProtocolOptionsKey + "\"]"
	switch {
	case hpo.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil:
		return kp + ".explicit_http_config.http2_protocol_options"
	case hpo.GetUseDownstreamProtocolConfig().GetHttp2ProtocolOptions() != nil:
		return kp + ".use_downstream_protocol_config.http2_protocol_options"
	case hpo.GetAutoConfig().GetHttp2ProtocolOptions() != nil:
		return kp + ".auto_config.http2_protocol_options"
	}
	return path + ".http2_protocol_options"
}

// HTTP2OptionsFromProto translates http2_protocol_options for the HTTP/2
// codec, leaving unset fields zero (Envoy's defaults, applied by the codec)
// except interval_jitter, whose default of 15% is filled in here. It checks
// nothing: callers reject the fields they do not apply
// (configerr.CheckFields); the loader has run the proto's validation.
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#config-core-v3-http2protocoloptions
func HTTP2OptionsFromProto(p *corev3.Http2ProtocolOptions) *hhttp.HTTP2Options {
	if p == nil {
		return nil
	}
	o := &hhttp.HTTP2Options{
		MaxConcurrentStreams:                         p.GetMaxConcurrentStreams().GetValue(),
		InitialStreamWindowSize:                      p.GetInitialStreamWindowSize().GetValue(),
		InitialConnectionWindowSize:                  p.GetInitialConnectionWindowSize().GetValue(),
		AllowConnect:                                 p.GetAllowConnect(),
		MaxOutboundFrames:                            p.GetMaxOutboundFrames().GetValue(),
		MaxOutboundControlFrames:                     p.GetMaxOutboundControlFrames().GetValue(),
		MaxInboundWindowUpdateFramesPerDataFrameSent: p.GetMaxInboundWindowUpdateFramesPerDataFrameSent().GetValue(),
		// Envoy's initializeAndValidateOptions (source/common/http/utility.cc):
		// the override wins, else stream_error_on_invalid_http_messaging.
		StreamErrorOnInvalidHTTPMessage: p.GetStreamErrorOnInvalidHttpMessaging(),
	}
	if w := p.GetHpackTableSize(); w != nil {
		o.HpackTableSize = hhttp.OptionalUint32{Value: w.GetValue(), Set: true}
	}
	if w := p.GetMaxConsecutiveInboundFramesWithEmptyPayload(); w != nil {
		o.MaxConsecutiveInboundFramesWithEmptyPayload = hhttp.OptionalUint32{Value: w.GetValue(), Set: true}
	}
	if w := p.GetMaxInboundPriorityFramesPerStream(); w != nil {
		o.MaxInboundPriorityFramesPerStream = hhttp.OptionalUint32{Value: w.GetValue(), Set: true}
	}
	if v := p.GetOverrideStreamErrorOnInvalidHttpMessage(); v != nil {
		o.StreamErrorOnInvalidHTTPMessage = v.GetValue()
	}
	if ka := p.GetConnectionKeepalive(); ka != nil {
		o.Keepalive = hhttp.KeepaliveOptions{
			Interval: ka.GetInterval().AsDuration(),
			Timeout:  ka.GetTimeout().AsDuration(),
			// KeepaliveSettings.interval_jitter: "If this is not
			// specified, the default is 15%."
			IntervalJitterPercent:  15,
			ConnectionIdleInterval: ka.GetConnectionIdleInterval().AsDuration(),
		}
		if j := ka.GetIntervalJitter(); j != nil {
			o.Keepalive.IntervalJitterPercent = j.GetValue()
		}
	}
	return o
}
