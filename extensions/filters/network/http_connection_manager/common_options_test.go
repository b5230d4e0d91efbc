package httpconnectionmanager_test

import (
	"strings"
	"testing"
	"time"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	httpconnectionmanager "github.com/herald-proxy/herald/extensions/filters/network/http_connection_manager"
	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/http/connmgr"
)

// TestCommonHTTPProtocolOptions: common_http_protocol_options reach the
// connection manager; unset fields are Envoy's defaults.
func TestCommonHTTPProtocolOptions(t *testing.T) {
	type common struct {
		IdleTimeout              time.Duration
		MaxRequestHeadersCount   int
		MaxStreamDuration        time.Duration
		MaxConnectionDuration    time.Duration
		MaxRequestsPerConnection uint32
		HeadersWithUnderscores   connmgr.UnderscoresAction
	}
	defaults := common{IdleTimeout: time.Hour, MaxRequestHeadersCount: 100}
	with := func(f func(*common)) common {
		c := defaults
		f(&c)
		return c
	}
	tests := []struct {
		name   string
		common string // the common_http_protocol_options line
		want   common
	}{
		{name: "unset: Envoy's defaults", common: "", want: defaults},
		{name: "empty: Envoy's defaults", common: "common_http_protocol_options: {}", want: defaults},
		{
			name: "every field",
			common: `common_http_protocol_options: { idle_timeout: 30s, max_headers_count: 20, max_stream_duration: 2.5s,
  max_connection_duration: 600s, max_requests_per_connection: 1000, headers_with_underscores_action: REJECT_REQUEST }`,
			want: common{
				IdleTimeout: 30 * time.Second, MaxRequestHeadersCount: 20, MaxStreamDuration: 2500 * time.Millisecond,
				MaxConnectionDuration: 10 * time.Minute, MaxRequestsPerConnection: 1000, HeadersWithUnderscores: connmgr.RejectUnderscores,
			},
		},
		{
			name:   "DROP_HEADER",
			common: "common_http_protocol_options: { headers_with_underscores_action: DROP_HEADER }",
			want:   with(func(c *common) { c.HeadersWithUnderscores = connmgr.DropUnderscores }),
		},
		{
			name:   "ALLOW spelled out",
			common: "common_http_protocol_options: { headers_with_underscores_action: ALLOW }",
			want:   defaults,
		},
		{
			// Envoy: 0 disables the idle timeout; 0 requests is no limit.
			name:   "zeros",
			common: "common_http_protocol_options: { idle_timeout: 0s, max_requests_per_connection: 0, max_stream_duration: 0s }",
			want:   with(func(c *common) { c.IdleTimeout = 0 }),
		},
		{
			name:   "max_requests_per_connection 1 disables keep-alive",
			common: "common_http_protocol_options: { max_requests_per_connection: 1 }",
			want:   with(func(c *common) { c.MaxRequestsPerConnection = 1 }),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := httpconnectionmanager.Build(parse(t, "stat_prefix: s\n"+tc.common+"\n"+routeToBackend+router), buildContext(t))
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			c := f.(*httpconnectionmanager.Filter).Config()
			got := common{
				IdleTimeout: c.IdleTimeout, MaxRequestHeadersCount: c.MaxRequestHeadersCount,
				MaxStreamDuration: c.MaxStreamDuration, MaxConnectionDuration: c.MaxConnectionDuration,
				MaxRequestsPerConnection: c.MaxRequestsPerConnection, HeadersWithUnderscores: c.HeadersWithUnderscores,
			}
			if got != tc.want {
				t.Errorf("common options = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestCommonHTTPProtocolOptionsRefused: the fields herald does not apply
// downstream are refused by name, positioned at their line in the file;
// Envoy's own rules (negative durations) are reported by the loader.
func TestCommonHTTPProtocolOptionsRefused(t *testing.T) {
	tests := []struct {
		name    string
		common  string // the common_http_protocol_options line of the listener below
		wantErr string
	}{
		{
			name:    "max_connection_duration_jitter",
			common:  "common_http_protocol_options: { max_connection_duration: 1s, max_connection_duration_jitter: { value: 10 } }",
			wantErr: "hcm.yaml:8:86: " + hcmPath + ".common_http_protocol_options.max_connection_duration_jitter: max_connection_duration_jitter is not supported by herald yet",
		},
		{
			// Envoy: "only valid when configured on an upstream cluster".
			name:    "max_response_headers_kb",
			common:  "common_http_protocol_options: { max_response_headers_kb: 80 }",
			wantErr: "hcm.yaml:8:82: " + hcmPath + ".common_http_protocol_options.max_response_headers_kb: max_response_headers_kb is not supported by herald yet",
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
                        ` + tc.common + ` }
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
