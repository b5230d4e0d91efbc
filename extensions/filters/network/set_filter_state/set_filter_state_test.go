package setfilterstate

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/netfilter"
	"github.com/herald-proxy/herald/internal/streaminfo"
	"github.com/herald-proxy/herald/internal/upstream"
)

func TestOnNewConnection(t *testing.T) {
	keys := []string{upstream.FilterStateUpstreamServerName, network.FilterStateTCPProxyCluster, "my.key"}
	tests := []struct {
		name string
		yaml string
		sni  string
		// metadata is the connection's dynamic metadata, as the
		// proxy_protocol listener filter leaves it.
		metadata map[string]*structpb.Struct
		want     map[string]any // filter state of keys; absent = unset
	}{
		{
			name: "client SNI becomes the upstream SNI",
			yaml: `
on_new_connection:
- object_key: envoy.network.upstream_server_name
  format_string: { text_format_source: { inline_string: "%REQUESTED_SERVER_NAME%" } }
`,
			sni:  "a.example",
			want: map[string]any{upstream.FilterStateUpstreamServerName: "a.example"},
		},
		{
			// Text formats print "-" for an operator without a value.
			name: "no SNI formats as a dash",
			yaml: `
on_new_connection:
- object_key: envoy.network.upstream_server_name
  format_string: { text_format_source: { inline_string: "%REQUESTED_SERVER_NAME%" } }
`,
			want: map[string]any{upstream.FilterStateUpstreamServerName: "-"},
		},
		{
			// omit_empty_values makes it empty, skip_if_empty skips it,
			// so the second value (the fallback) is the one kept.
			name: "skip_if_empty falls back to the next value",
			yaml: `
on_new_connection:
- object_key: envoy.tcp_proxy.cluster
  format_string: { text_format: "fallback" }
- object_key: envoy.tcp_proxy.cluster
  format_string: { text_format: "%REQUESTED_SERVER_NAME%", omit_empty_values: true }
  skip_if_empty: true
`,
			want: map[string]any{network.FilterStateTCPProxyCluster: "fallback"},
		},
		{
			name: "later values replace earlier ones",
			yaml: `
on_new_connection:
- object_key: envoy.tcp_proxy.cluster
  format_string: { text_format: "fallback" }
- object_key: envoy.tcp_proxy.cluster
  format_string: { text_format: "%REQUESTED_SERVER_NAME%", omit_empty_values: true }
  skip_if_empty: true
`,
			sni:  "db.example",
			want: map[string]any{network.FilterStateTCPProxyCluster: "db.example"},
		},
		{
			name: "generic string with several operators",
			yaml: `
on_new_connection:
- object_key: my.key
  factory_key: envoy.string
  format_string: { text_format: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%/%REQUESTED_SERVER_NAME%" }
`,
			sni:  "x.example",
			want: map[string]any{"my.key": "192.0.2.7/x.example"},
		},
		{
			// Envoy formats against the connection's StreamInfo, which
			// holds the listener filters' dynamic metadata (e.g. a
			// proxy_protocol TLV naming the cluster).
			name: "dynamic metadata from listener filters",
			yaml: `
on_new_connection:
- object_key: envoy.tcp_proxy.cluster
  format_string: { text_format: "%DYNAMIC_METADATA(envoy.filters.listener.proxy_protocol:cluster)%" }
`,
			metadata: map[string]*structpb.Struct{"envoy.filters.listener.proxy_protocol": {
				Fields: map[string]*structpb.Value{"cluster": structpb.NewStringValue("tenant-a")}}},
			want: map[string]any{network.FilterStateTCPProxyCluster: "tenant-a"},
		},
		{
			name: "no values set nothing",
			yaml: `{}`,
			sni:  "a.example",
			want: map[string]any{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Build(parseConfig(t, tc.yaml), netfilter.BuildContext{Path: sfsPath})
			if err != nil {
				t.Fatal(err)
			}
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			c := network.NewConn(context.Background(), a, nil)
			c.ServerName = tc.sni
			c.Remote = netip.MustParseAddrPort("192.0.2.7:5555")
			if tc.metadata != nil {
				c.SetFilterState(streaminfo.FilterStateDynamicMetadata, tc.metadata)
			}
			if !f.(netfilter.ConnectionFilter).OnNewConnection(c) {
				t.Fatal("OnNewConnection refused the connection")
			}
			got := map[string]any{}
			for _, k := range keys {
				if v := c.FilterState(k); v != nil {
					got[k] = v
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("filter state (-want +got):\n%s", diff)
			}
		})
	}
}
