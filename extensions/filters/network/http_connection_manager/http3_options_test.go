package httpconnectionmanager_test

import (
	"strings"
	"testing"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/google/go-cmp/cmp"

	httpconnectionmanager "github.com/herald-proxy/herald/extensions/filters/network/http_connection_manager"
	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
)

// TestHTTP3Options: http3_protocol_options reach the HTTP/3 codec; the
// listener-level quic_protocol_options fields Envoy ignores here are
// accepted.
func TestHTTP3Options(t *testing.T) {
	tests := []struct {
		name string
		h3   string
		want *hhttp.HTTP3Options
	}{
		{name: "unset", h3: "", want: nil},
		{name: "empty", h3: "http3_protocol_options: {}\n", want: &hhttp.HTTP3Options{}},
		{
			name: "applied_fields",
			h3:   "http3_protocol_options: { allow_extended_connect: true, override_stream_error_on_invalid_http_message: true }\n",
			want: &hhttp.HTTP3Options{AllowExtendedConnect: true, StreamErrorOnInvalidHTTPMessage: true},
		},
		{
			// Envoy reads these from the listener's quic_options, not here.
			name: "quic_protocol_options_accepted",
			h3: `http3_protocol_options:
  quic_protocol_options: { max_concurrent_streams: 7, initial_stream_window_size: 65536, initial_connection_window_size: 65536, idle_network_timeout: 30s }
`,
			want: &hhttp.HTTP3Options{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := httpconnectionmanager.Build(parse(t, "stat_prefix: s\ncodec_type: HTTP3\n"+tc.h3+routeToBackend+router), buildContext(t))
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			got := f.(*httpconnectionmanager.Filter).Config().HTTP3
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("HTTP3 (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHTTP3OptionsRefused: what quic-go cannot do is refused by name, with
// the reason, at its line in the file.
func TestHTTP3OptionsRefused(t *testing.T) {
	tests := []struct {
		name    string
		h3      string // the http3_protocol_options line of the listener below
		wantErr string
	}{
		{
			name:    "allow_metadata",
			h3:      "http3_protocol_options: { allow_metadata: true }",
			wantErr: "hcm.yaml:8:67: " + hcmPath + ".http3_protocol_options.allow_metadata: allow_metadata is not supported by herald yet (quic-go's HTTP/3 server has no METADATA frames)",
		},
		{
			name:    "disable_qpack",
			h3:      "http3_protocol_options: { disable_qpack: true }",
			wantErr: hcmPath + ".http3_protocol_options.disable_qpack: disable_qpack is not supported by herald yet (quic-go's QPACK settings are fixed)",
		},
		{
			name:    "connection_keepalive",
			h3:      "http3_protocol_options: { quic_protocol_options: { connection_keepalive: { max_interval: 10s } } }",
			wantErr: hcmPath + ".http3_protocol_options.quic_protocol_options.connection_keepalive: connection_keepalive is not supported by herald yet (quic-go sets keep-alive",
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
                        ` + tc.h3 + ` }
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
