package snapshot_test

import (
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/herald-proxy/herald/internal/snapshot"
)

// listenerJSON parses a Listener from protojson; the test listeners are
// small enough to read inline.
func listenerJSON(t *testing.T, js string) *listenerv3.Listener {
	t.Helper()
	l := &listenerv3.Listener{}
	if err := protojson.Unmarshal([]byte(js), l); err != nil {
		t.Fatalf("parse %s: %v", js, err)
	}
	return l
}

// chain is a filter chain JSON with a name and a tcp_proxy to cluster.
func chain(name, cluster string) string {
	return `{"name": "` + name + `", "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix": "t", "cluster": "` + cluster + `"}}]}`
}

// chainOnPort is chain with a destination_port match.
func chainOnPort(name, cluster, port string) string {
	return `{"name": "` + name + `", "filter_chain_match": {"destination_port": ` + port + `}, "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix": "t", "cluster": "` + cluster + `"}}]}`
}

const addr = `"address": {"socket_address": {"address": "127.0.0.1", "port_value": 10000}}`

func TestFilterChainOnlyChange(t *testing.T) {
	prev := `{"name": "l", ` + addr + `, "filter_chains": [` + chain("a", "one") + `]}`
	tests := []struct {
		name string
		next string
		want bool
	}{
		{name: "chain changed", next: `{"name": "l", ` + addr + `, "filter_chains": [` + chain("a", "two") + `]}`, want: true},
		{name: "chain added", next: `{"name": "l", ` + addr + `, "filter_chains": [` + chain("a", "one") + `, ` + chainOnPort("b", "two", "1") + `]}`, want: true},
		{name: "default chain added", next: `{"name": "l", ` + addr + `, "filter_chains": [` + chain("a", "one") + `], "default_filter_chain": ` + chain("d", "two") + `}`, want: true},
		{name: "identical", next: prev, want: true},
		// Envoy: a listener with no filter_chains (only a default chain)
		// is always updated whole (supportUpdateFilterChain).
		{name: "only a default chain", next: `{"name": "l", ` + addr + `, "default_filter_chain": ` + chain("a", "one") + `}`, want: false},
		{name: "address changed", next: `{"name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10001}}, "filter_chains": [` + chain("a", "one") + `]}`, want: false},
		// Envoy's doc: listener metadata must reach the new chains, so the
		// whole listener drains.
		{name: "metadata changed", next: `{"name": "l", ` + addr + `, "metadata": {"filter_metadata": {"x": {"k": "v"}}}, "filter_chains": [` + chain("a", "one") + `]}`, want: false},
		{name: "listener filter added", next: `{"name": "l", ` + addr + `, "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}], "filter_chains": [` + chain("a", "one") + `]}`, want: false},
		{name: "buffer limit changed", next: `{"name": "l", ` + addr + `, "per_connection_buffer_limit_bytes": 1024, "filter_chains": [` + chain("a", "one") + `]}`, want: false},
		{name: "listener_filters_timeout changed", next: `{"name": "l", ` + addr + `, "listener_filters_timeout": "1s", "filter_chains": [` + chain("a", "one") + `]}`, want: false},
		{name: "drain_type changed", next: `{"name": "l", ` + addr + `, "drain_type": "MODIFY_ONLY", "filter_chains": [` + chain("a", "one") + `]}`, want: false},
		{name: "use_original_dst set", next: `{"name": "l", ` + addr + `, "use_original_dst": true, "filter_chains": [` + chain("a", "one") + `]}`, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := snapshot.FilterChainOnlyChange(listenerJSON(t, prev), listenerJSON(t, tc.next))
			if got != tc.want {
				t.Errorf("FilterChainOnlyChange = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDiffFilterChains(t *testing.T) {
	tests := []struct {
		name       string
		prev, next string // the listeners' chain fields
		want       []int
	}{
		{
			name: "unchanged chain kept, changed chain not",
			prev: `"filter_chains": [` + chainOnPort("a", "one", "1") + `, ` + chainOnPort("b", "two", "2") + `]`,
			next: `"filter_chains": [` + chainOnPort("a", "one", "1") + `, ` + chainOnPort("b", "three", "2") + `]`,
			want: []int{0, -1},
		},
		{
			name: "reordered chains are kept",
			prev: `"filter_chains": [` + chainOnPort("a", "one", "1") + `, ` + chainOnPort("b", "two", "2") + `]`,
			next: `"filter_chains": [` + chainOnPort("b", "two", "2") + `, ` + chainOnPort("a", "one", "1") + `]`,
			want: []int{1, 0},
		},
		{
			// Envoy compares the whole FilterChain message: the name too.
			name: "renamed chain is a new chain",
			prev: `"filter_chains": [` + chain("a", "one") + `]`,
			next: `"filter_chains": [` + chain("renamed", "one") + `]`,
			want: []int{-1},
		},
		{
			name: "added chain is new, removed chain is drained",
			prev: `"filter_chains": [` + chainOnPort("a", "one", "1") + `, ` + chainOnPort("b", "two", "2") + `]`,
			next: `"filter_chains": [` + chainOnPort("b", "two", "2") + `, ` + chainOnPort("c", "three", "3") + `]`,
			want: []int{1, -1},
		},
		{
			name: "default chain kept",
			prev: `"filter_chains": [` + chainOnPort("a", "one", "1") + `], "default_filter_chain": ` + chain("d", "two"),
			next: `"filter_chains": [` + chainOnPort("a", "x", "1") + `], "default_filter_chain": ` + chain("d", "two"),
			want: []int{-1, 1},
		},
		{
			name: "default chain changed",
			prev: `"filter_chains": [` + chainOnPort("a", "one", "1") + `], "default_filter_chain": ` + chain("d", "two"),
			next: `"filter_chains": [` + chainOnPort("a", "one", "1") + `], "default_filter_chain": ` + chain("d", "three"),
			want: []int{0, -1},
		},
		{
			// Envoy's diffFilterChain: the default chain survives only as
			// the default chain, not when it becomes a filter chain.
			name: "default chain moved into filter_chains",
			prev: `"filter_chains": [` + chainOnPort("a", "one", "1") + `], "default_filter_chain": ` + chain("d", "two"),
			next: `"filter_chains": [` + chainOnPort("a", "one", "1") + `, ` + chain("d", "two") + `]`,
			want: []int{0, -1},
		},
		{
			name: "filter_chain_match changed",
			prev: `"filter_chains": [` + chainOnPort("a", "one", "1") + `]`,
			next: `"filter_chains": [` + chainOnPort("a", "one", "2") + `]`,
			want: []int{-1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prev := listenerJSON(t, `{"name": "l", `+addr+`, `+tc.prev+`}`)
			next := listenerJSON(t, `{"name": "l", `+addr+`, `+tc.next+`}`)
			got := snapshot.DiffFilterChains(prev, next)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("DiffFilterChains (-want +got):\n%s", diff)
			}
		})
	}
}
