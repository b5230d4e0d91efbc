package httpconnectionmanager_test

import (
	"strings"
	"testing"
	"time"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/google/go-cmp/cmp"

	httpconnectionmanager "github.com/herald-proxy/herald/extensions/filters/network/http_connection_manager"
	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
)

// TestHTTP2Options: the http2_protocol_options the downstream codec
// applies reach it translated, unset fields left to the codec's defaults.
func TestHTTP2Options(t *testing.T) {
	set := func(v uint32) hhttp.OptionalUint32 { return hhttp.OptionalUint32{Value: v, Set: true} }
	tests := []struct {
		name string
		h2   string
		want *hhttp.HTTP2Options
	}{
		{name: "unset", h2: "", want: nil},
		{
			name: "every_applied_field",
			h2: `
http2_protocol_options:
  hpack_table_size: 0
  allow_connect: true
  max_outbound_frames: 500
  max_outbound_control_frames: 50
  max_consecutive_inbound_frames_with_empty_payload: 0
  max_inbound_priority_frames_per_stream: 7
  max_inbound_window_update_frames_per_data_frame_sent: 2
  override_stream_error_on_invalid_http_message: true
  connection_keepalive: { interval: 30s, timeout: 5s, interval_jitter: { value: 5 } }
`,
			want: &hhttp.HTTP2Options{
				HpackTableSize:           set(0),
				AllowConnect:             true,
				MaxOutboundFrames:        500,
				MaxOutboundControlFrames: 50,
				MaxConsecutiveInboundFramesWithEmptyPayload:  set(0),
				MaxInboundPriorityFramesPerStream:            set(7),
				MaxInboundWindowUpdateFramesPerDataFrameSent: 2,
				StreamErrorOnInvalidHTTPMessage:              true,
				Keepalive:                                    hhttp.KeepaliveOptions{Interval: 30 * time.Second, Timeout: 5 * time.Second, IntervalJitterPercent: 5},
			},
		},
		{
			// interval_jitter defaults to 15%.
			name: "keepalive_default_jitter",
			h2:   "http2_protocol_options: { connection_keepalive: { timeout: 1s } }\n",
			want: &hhttp.HTTP2Options{Keepalive: hhttp.KeepaliveOptions{Timeout: time.Second, IntervalJitterPercent: 15}},
		},
		{
			// The deprecated field applies when the override is unset...
			name: "stream_error_deprecated_field",
			h2:   "http2_protocol_options: { stream_error_on_invalid_http_messaging: true }\n",
			want: &hhttp.HTTP2Options{StreamErrorOnInvalidHTTPMessage: true},
		},
		{
			// ...and the override wins over it (Envoy's
			// initializeAndValidateOptions).
			name: "stream_error_override_wins",
			h2:   "http2_protocol_options: { stream_error_on_invalid_http_messaging: true, override_stream_error_on_invalid_http_message: false }\n",
			want: &hhttp.HTTP2Options{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := httpconnectionmanager.Build(parse(t, "stat_prefix: s\n"+tc.h2+routeToBackend+router), buildContext(t))
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			got := f.(*httpconnectionmanager.Filter).Config().HTTP2
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("HTTP2 (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHTTP2OptionsRefused: the fields herald does not apply are refused by
// name, positioned at their line in the file.
func TestHTTP2OptionsRefused(t *testing.T) {
	tests := []struct {
		name    string
		h2      string // the http2_protocol_options line of the listener below
		wantErr string
	}{
		{
			name:    "allow_metadata",
			h2:      "http2_protocol_options: { allow_metadata: true }",
			wantErr: "hcm.yaml:8:67: " + hcmPath + ".http2_protocol_options.allow_metadata: allow_metadata is not supported by herald yet",
		},
		{
			name:    "custom_settings_parameters",
			h2:      "http2_protocol_options: { custom_settings_parameters: [ { identifier: 10, value: 1 } ] }",
			wantErr: "hcm.yaml:8:51: " + hcmPath + ".http2_protocol_options.custom_settings_parameters: custom_settings_parameters is not supported by herald yet",
		},
		{
			name:    "enable_huffman_encoding",
			h2:      "http2_protocol_options: { enable_huffman_encoding: false }",
			wantErr: "hcm.yaml:8:76: " + hcmPath + ".http2_protocol_options.enable_huffman_encoding: enable_huffman_encoding is not supported by herald yet",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := `static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: s, route_config: {}, http_filters: [ { name: envoy.filters.http.router } ],
                        ` + tc.h2 + ` }
`
			b, idx, err := bootstrap.Parse("hcm.yaml", []byte(doc))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			var cfg hcmv3.HttpConnectionManager
			if err := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&cfg); err != nil {
				t.Fatal(err)
			}
			_, berr := httpconnectionmanager.Build(&cfg, buildContext(t))
			if berr == nil {
				t.Fatalf("Build succeeded, want %q", tc.wantErr)
			}
			got := configerr.Collect(berr, hcmPath, idx).Error()
			if !strings.Contains(got, tc.wantErr) {
				t.Errorf("error:\n%s\nwant it to contain\n%s", got, tc.wantErr)
			}
		})
	}
}
