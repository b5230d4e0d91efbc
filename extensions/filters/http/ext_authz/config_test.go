package extauthz

import (
	"testing"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream"
)

func TestRegistered(t *testing.T) {
	if e, ok := httpfilter.Registry.ByTypeURL(registry.TypeURL(&extauthzv3.ExtAuthz{})); !ok || e.Name != Name {
		t.Fatalf("ExtAuthz registered as %v, %v; want %s", e, ok, Name)
	}
	if _, ok := httpfilter.PerRouteRegistry.ByTypeURL(registry.TypeURL(&extauthzv3.ExtAuthzPerRoute{})); !ok {
		t.Errorf("ExtAuthzPerRoute is not registered")
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		wantErr string
	}{
		{name: "grpc", config: grpcConfig("127.0.0.1:1", "failure_mode_allow: true\nstatus_on_error: {code: ServiceUnavailable}\nwith_request_body: {max_request_bytes: 10, allow_partial_message: true}")},
		{name: "envoy grpc", config: "grpc_service: {envoy_grpc: {cluster_name: authz}}\ntransport_api_version: V3"},
		{
			name: "http",
			config: `http_service:
  server_uri: {uri: "http://authz", cluster: authz, timeout: 1s}
  path_prefix: /check
  authorization_request:
    allowed_headers: {patterns: [{exact: x-a}]}
    headers_to_add: [{key: x-from, value: herald}]
  authorization_response:
    allowed_upstream_headers: {patterns: [{prefix: x-auth-}]}
    allowed_upstream_headers_to_append: {patterns: [{exact: x-app}]}
    allowed_client_headers: {patterns: [{exact: x-c}]}
    allowed_client_headers_on_success: {patterns: [{exact: x-s}]}`,
		},
		{name: "no service", config: "failure_mode_allow: true", wantErr: ": one of grpc_service or http_service is required"},
		{name: "v2 refused", config: grpcConfig("127.0.0.1:1", "transport_api_version: V2"), wantErr: ".transport_api_version: only V3"},
		{name: "metadata namespaces refused", config: grpcConfig("127.0.0.1:1", "metadata_context_namespaces: [a]"), wantErr: ".metadata_context_namespaces: metadata_context_namespaces is not supported by herald yet (#8)"},
		{name: "shadow_mode refused", config: grpcConfig("127.0.0.1:1", "shadow_mode: true"), wantErr: ".shadow_mode: shadow_mode is not supported by herald yet (#8)"},
		{name: "charging cluster stats refused", config: grpcConfig("127.0.0.1:1", "charge_cluster_response_stats: true"), wantErr: ".charge_cluster_response_stats: charge_cluster_response_stats: true is not supported"},
		{name: "not charging cluster stats", config: grpcConfig("127.0.0.1:1", "charge_cluster_response_stats: false")},
		{
			name:    "duplicate allowed_headers",
			config:  "allowed_headers: {patterns: [{exact: a}]}\nhttp_service: {server_uri: {uri: u, cluster: c, timeout: 1s}, authorization_request: {allowed_headers: {patterns: [{exact: b}]}}}",
			wantErr: ".allowed_headers: Invalid duplicate configuration for allowed_headers.",
		},
		{
			name:    "dynamic metadata from headers refused",
			config:  "http_service: {server_uri: {uri: u, cluster: c, timeout: 1s}, authorization_response: {dynamic_metadata_from_headers: {patterns: [{exact: b}]}}}",
			wantErr: ".http_service.authorization_response.dynamic_metadata_from_headers: dynamic_metadata_from_headers is not supported by herald yet (#8)",
		},
		{
			name:    "command operator refused",
			config:  "http_service: {server_uri: {uri: u, cluster: c, timeout: 1s}, authorization_request: {headers_to_add: [{key: a, value: '%REQ(x)%'}]}}",
			wantErr: ".http_service.authorization_request.headers_to_add[0].value: command operators in header values are not supported by herald yet",
		},
		{
			name:    "path prefix and override",
			config:  "http_service: {server_uri: {uri: u, cluster: c, timeout: 1s}, path_prefix: /a, path_override: /b}",
			wantErr: ".http_service: only one of path_prefix or path_override may be set",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := httpfiltertest.Parse(t, tc.config, &extauthzv3.ExtAuthz{})
			store := stats.NewStore()
			ctx := httpfiltertest.BuildContext(Name, store)
			mgr := upstream.NewManager(store)
			t.Cleanup(mgr.Close)
			ctx.Clusters = mgr
			_, err := Build(cfg, ctx)
			httpfiltertest.CheckBuildErr(t, err, tc.wantErr)
		})
	}
}

func TestBuildPerRoute(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		want    PerRoute
		wantErr string
	}{
		{name: "disabled", config: "disabled: true", want: PerRoute{disabled: true}},
		{
			name:   "check settings",
			config: "check_settings: {context_extensions: {k: v}, with_request_body: {max_request_bytes: 5, pack_as_bytes: true}}",
			want:   PerRoute{checkSettings: true, contextExtensions: map[string]string{"k": "v"}, body: bodySettings{on: true, max: 5, packAsBytes: true}},
		},
		{name: "per-route service refused", config: "check_settings: {grpc_service: {envoy_grpc: {cluster_name: x}}}", wantErr: ".check_settings.grpc_service: grpc_service is not supported by herald yet (#8)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := httpfiltertest.Parse(t, tc.config, &extauthzv3.ExtAuthzPerRoute{})
			ctx := httpfiltertest.BuildContext("", stats.NewStore())
			got, err := BuildPerRoute(cfg, ctx)
			httpfiltertest.CheckBuildErr(t, err, tc.wantErr)
			if err != nil {
				return
			}
			if diff := cmp.Diff(tc.want, *got.(*PerRoute), cmp.AllowUnexported(PerRoute{}, bodySettings{})); diff != "" {
				t.Errorf("PerRoute (-want +got):\n%s", diff)
			}
		})
	}
}
