package upstream

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// TestClusterHTTP2Options: a cluster's http2_protocol_options, from the
// deprecated field or the typed HttpProtocolOptions, reach the codec
// translated; fields the upstream codec does not apply are refused by name
// at their path.
func TestClusterHTTP2Options(t *testing.T) {
	typed := func(cfg string) string {
		return `
- name: a
  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      ` + cfg + "\n"
	}
	const typedPath = `static_resources.clusters[0].typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]`
	tests := []struct {
		name    string
		yaml    string
		want    *hhttp.HTTP2Options
		wantErr string
	}{
		{name: "http1", yaml: `- {name: a}`},
		{
			name: "deprecated_field",
			yaml: `- {name: a, http2_protocol_options: {max_concurrent_streams: 10, hpack_table_size: 0, allow_connect: true}}`,
			want: &hhttp.HTTP2Options{MaxConcurrentStreams: 10, HpackTableSize: hhttp.OptionalUint32{Set: true}, AllowConnect: true},
		},
		{
			name: "explicit_keepalive",
			yaml: typed(`explicit_http_config: {http2_protocol_options: {connection_keepalive: {interval: 10s, timeout: 2s, connection_idle_interval: 60s}}}`),
			want: &hhttp.HTTP2Options{Keepalive: hhttp.KeepaliveOptions{
				Interval: 10 * time.Second, Timeout: 2 * time.Second, IntervalJitterPercent: 15, ConnectionIdleInterval: time.Minute,
			}},
		},
		{
			name: "use_downstream_stream_error",
			yaml: typed(`use_downstream_protocol_config: {http2_protocol_options: {override_stream_error_on_invalid_http_message: true}}`),
			want: &hhttp.HTTP2Options{StreamErrorOnInvalidHTTPMessage: true},
		},
		{
			// Flood limits are applied downstream only.
			name:    "flood_limit_refused",
			yaml:    `- {name: a, http2_protocol_options: {max_outbound_frames: 100}}`,
			wantErr: "static_resources.clusters[0].http2_protocol_options.max_outbound_frames: not supported by herald yet",
		},
		{
			name:    "typed_metadata_refused",
			yaml:    typed(`explicit_http_config: {http2_protocol_options: {allow_metadata: true}}`),
			wantErr: typedPath + ".explicit_http_config.http2_protocol_options.allow_metadata: not supported by herald yet",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newTestManager(t)
			err := m.Apply(context.Background(), parseClusters(t, tc.yaml), prefix)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Apply error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, m.Cluster("a").HTTP2CodecOptions()); diff != "" {
				t.Errorf("HTTP2CodecOptions (-want +got):\n%s", diff)
			}
		})
	}
}
