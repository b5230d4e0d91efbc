package snapshot_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/herald-proxy/herald/internal/bootstrap"
	hlistener "github.com/herald-proxy/herald/internal/listener"
	"github.com/herald-proxy/herald/internal/snapshot"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream"
)

// quicSocket is a QUIC transport socket with the test certificate; extra
// are QuicDownstreamTransport fields in flow style ("enable_resumption: false, ").
func quicSocket(extra string) string {
	return "      transport_socket:\n        name: envoy.transport_sockets.quic\n" +
		"        typed_config: { \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.quic.v3.QuicDownstreamTransport, " + extra +
		"downstream_tls_context: { common_tls_context: { tls_certificates: [ { certificate_chain: { inline_string: " + certPEM + " }, private_key: { inline_string: " + keyPEM + " } } ] } } }\n"
}

const hcmHTTP3 = `
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: in
          codec_type: HTTP3
          route_config: { virtual_hosts: [ { name: v, domains: ["*"], routes: [ { match: { prefix: "/" }, direct_response: { status: 200 } } ] } ] }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }`

// udpListener is a bootstrap with one listener on a UDP address (protocol
// is "UDP" or "TCP"); extra are listener fields, chains its filter chains.
func udpListener(protocol, extra, chains string) string {
	return `static_resources:
  clusters:
  - name: c
    load_assignment: { cluster_name: c, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } } } ] } ] }
  listeners:
  - name: l
    address: { socket_address: { protocol: ` + protocol + `, address: 127.0.0.1, port_value: 0 } }
` + extra + chains
}

const quicOptions = "    udp_listener_config: { quic_options: {} }\n"

func TestBuildQUICListeners(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		wantQUIC *hlistener.QUICOptions
		wantErr  string
	}{
		{name: "defaults are Envoy's", yaml: udpListener("UDP", quicOptions, "    filter_chains:\n    -"+quicSocket("")[5:]+"      filters:"+hcmHTTP3+"\n"),
			wantQUIC: hlistener.DefaultQUICOptions()},
		{name: "quic_options applied",
			yaml: udpListener("UDP", "    udp_listener_config: { quic_options: { idle_timeout: 7s, crypto_handshake_timeout: 9s, quic_protocol_options: { max_concurrent_streams: 7, initial_stream_window_size: 65536, initial_connection_window_size: 131072 } } }\n",
				"    filter_chains:\n    -"+quicSocket("enable_resumption: false, ")[5:]+"      filters:"+hcmHTTP3+"\n"),
			wantQUIC: &hlistener.QUICOptions{IdleTimeout: 7 * time.Second, HandshakeTimeout: 9 * time.Second, MaxConcurrentStreams: 7, StreamWindow: 65536, ConnectionWindow: 131072}},
		{name: "UDP without quic_options", yaml: udpListener("UDP", "", "    filter_chains:\n    -"+quicSocket("")[5:]+"      filters:"+hcmHTTP3+"\n"),
			wantErr: "static_resources.listeners[0].udp_listener_config.quic_options: UDP listeners without quic_options (udp_proxy) are not supported by herald yet"},
		{name: "unsupported quic_options field named", yaml: udpListener("UDP", "    udp_listener_config: { quic_options: { reject_new_connections: true } }\n", "    filter_chains:\n    -"+quicSocket("")[5:]+"      filters:"+hcmHTTP3+"\n"),
			wantErr: "udp_listener_config.quic_options.reject_new_connections: reject_new_connections is not supported by herald"},
		{name: "unsupported quic_protocol_options field named", yaml: udpListener("UDP", "    udp_listener_config: { quic_options: { quic_protocol_options: { max_packet_length: 1200 } } }\n", "    filter_chains:\n    -"+quicSocket("")[5:]+"      filters:"+hcmHTTP3+"\n"),
			wantErr: "quic_options.quic_protocol_options.max_packet_length: max_packet_length is not supported by herald"},
		{name: "QUIC listener chain without the QUIC socket", yaml: udpListener("UDP", quicOptions, "    filter_chains:\n    - filters:"+hcmHTTP3+"\n"),
			wantErr: "static_resources.listeners[0].filter_chains[0].transport_socket: a QUIC listener's filter chain needs transport_socket envoy.transport_sockets.quic"},
		{name: "QUIC listener with a non-HTTP/3 codec", yaml: udpListener("UDP", quicOptions, "    filter_chains:\n    -"+quicSocket("")[5:]+"      filters:"+hcm+"\n"),
			wantErr: "static_resources.listeners[0].filter_chains[0]: Non-HTTP/3 codec configured on QUIC listener"},
		{name: "QUIC listener with tcp_proxy", yaml: udpListener("UDP", quicOptions, "    filter_chains:\n    -"+quicSocket("")[5:]+"      filters:"+tcp+"\n"),
			wantErr: "static_resources.listeners[0].filter_chains[0].filters: a QUIC listener's filter chain must end with envoy.filters.network.http_connection_manager"},
		{name: "QUIC listener with listener filters", yaml: udpListener("UDP", quicOptions+tlsInspector, "    filter_chains:\n    -"+quicSocket("")[5:]+"      filters:"+hcmHTTP3+"\n"),
			wantErr: "static_resources.listeners[0].listener_filters: listener filters on QUIC listeners are not supported by herald"},
		{name: "HTTP3 codec on a TCP listener", yaml: udpListener("TCP", "", "    filter_chains:\n    - filters:"+hcmHTTP3+"\n"),
			wantErr: "static_resources.listeners[0].filter_chains[0]: HTTP/3 codec configured on non-QUIC listener"},
		{name: "QUIC socket on a TCP listener", yaml: udpListener("TCP", "", "    filter_chains:\n    -"+quicSocket("")[5:]+"      filters:"+hcm+"\n"),
			wantErr: "static_resources.listeners[0].filter_chains[0].transport_socket: envoy.transport_sockets.quic needs a QUIC listener"},
		{name: "udp_listener_config on a TCP listener", yaml: udpListener("TCP", quicOptions, "    filter_chains:\n    - filters:"+hcm+"\n"),
			wantErr: "static_resources.listeners[0].udp_listener_config: udp_listener_config needs a UDP address"},
		{name: "enable_early_data without resumption", yaml: udpListener("UDP", quicOptions, "    filter_chains:\n    -"+quicSocket("enable_early_data: true, enable_resumption: false, ")[5:]+"      filters:"+hcmHTTP3+"\n"),
			wantErr: "transport_socket.typed_config.enable_early_data: enable_early_data requires enable_resumption"},
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
			l := snap.Listeners[0]
			if l.Network != "udp" {
				t.Errorf("Network = %q, want udp", l.Network)
			}
			if diff := cmp.Diff(tc.wantQUIC, l.QUIC, cmpopts.IgnoreUnexported(hlistener.QUICOptions{})); diff != "" {
				t.Errorf("QUIC options (-want +got):\n%s", diff)
			}
		})
	}
}
