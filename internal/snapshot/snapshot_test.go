package snapshot_test

import (
	"context"
	"strings"
	"testing"

	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/snapshot"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream"

	_ "github.com/herald-proxy/herald/extensions/all"
)

const hcm = `
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: in
          route_config: { virtual_hosts: [ { name: v, domains: ["*"], routes: [ { match: { prefix: "/" }, direct_response: { status: 200 } } ] } ] }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }`

const tcp = `
      - name: envoy.filters.network.tcp_proxy
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: c }`

func listener(extra, chains string) string {
	return `static_resources:
  clusters:
  - name: c
    load_assignment: { cluster_name: c, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } } } ] } ] }
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
` + extra + chains
}

func TestBuildListeners(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{name: "http connection manager", yaml: listener("", "    filter_chains:\n    - filters:"+hcm+"\n")},
		{name: "tcp proxy", yaml: listener("", "    filter_chains:\n    - filters:"+tcp+"\n")},
		{name: "terminal filter not last", yaml: listener("", "    filter_chains:\n    - filters:"+tcp+hcm+"\n"),
			wantErr: "static_resources.listeners[0].filter_chains[0].filters[0]: terminal filter envoy.filters.network.tcp_proxy must be the last filter of its chain"},
		{name: "two chains need filter_chain_match", yaml: listener("", "    filter_chains:\n    - filters:"+tcp+"\n    - filters:"+tcp+"\n"),
			wantErr: "static_resources.listeners[0].filter_chains: more than one filter chain needs filter_chain_match"},
		{name: "listener filters refused with their issue", yaml: listener("    listener_filters:\n    - name: envoy.filters.listener.tls_inspector\n      typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }\n", "    filter_chains:\n    - filters:"+tcp+"\n"),
			wantErr: "static_resources.listeners[0].listener_filters: listener_filters is not supported by herald yet (#5)"},
		{name: "unknown network filter named", yaml: listener("", "    filter_chains:\n    - filters:\n      - name: envoy.filters.network.redis_proxy\n        typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy, stat_prefix: r, settings: { op_timeout: 1s } }\n"),
			wantErr: `static_resources.listeners[0].filter_chains[0].filters[0].typed_config: network filter "envoy.filters.network.redis_proxy"`},
		{name: "TLS transport socket refused", yaml: listener("", "    filter_chains:\n    - transport_socket:\n        name: envoy.transport_sockets.tls\n        typed_config: { \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext }\n      filters:"+tcp+"\n"),
			wantErr: `transport socket "envoy.transport_sockets.tls" is not supported by herald yet (#5)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := bootstrap.Load(bootstrap.Options{YAML: tc.yaml})
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			store := stats.NewStore()
			mgr := upstream.NewManager(store)
			defer mgr.Close()
			if err := mgr.Apply(context.Background(), cfg.Bootstrap.GetStaticResources().GetClusters(), func(int) string { return "c" }); err != nil {
				t.Fatalf("clusters: %v", err)
			}
			snap, err := snapshot.Build(cfg.Bootstrap, snapshot.Deps{Stats: store, Clusters: mgr})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v\nwant it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(snap.Listeners) != 1 || snap.Listeners[0].Chains[0].Terminal == nil {
				t.Fatalf("built %+v", snap.Listeners)
			}
		})
	}
}
