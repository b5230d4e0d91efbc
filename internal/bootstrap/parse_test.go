package bootstrap

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-proxy/herald/internal/configerr"
)

// y joins lines into a YAML document, so that columns in the expected
// errors can be read off the test source.
func y(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

// TestParseErrors has one case per class of parse error, each asserting the
// exact text: file:line:col, field path, message and hint.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		in   string
		want string
	}{
		{
			name: "unknown enum value with suggestion",
			file: "envoy.yaml",
			in: y(
				"static_resources:",
				"  clusters:",
				"  - name: a",
				"    lb_policy: ROUND_ROBBIN",
			),
			want: `envoy.yaml:4:16: static_resources.clusters[0].lb_policy: unknown value "ROUND_ROBBIN" (did you mean ROUND_ROBIN?)`,
		},
		{
			name: "unknown enum value without a close name",
			file: "envoy.yaml",
			in:   y("static_resources: {clusters: [{name: a, lb_policy: FASTEST}]}"),
			want: `envoy.yaml:1:52: static_resources.clusters[0].lb_policy: unknown value "FASTEST"`,
		},
		{
			name: "unknown field with suggestion",
			file: "envoy.yaml",
			in: y(
				"static_resources:",
				"  clusters:",
				"  - name: a",
				"    lb_polcy: ROUND_ROBIN",
			),
			want: `envoy.yaml:4:5: static_resources.clusters[0].lb_polcy: unknown field "lb_polcy" in envoy.config.cluster.v3.Cluster (did you mean lb_policy?)`,
		},
		{
			name: "unknown field inside typed_config",
			file: "envoy.yaml",
			in: y(
				"static_resources:",
				"  listeners:",
				"  - filter_chains:",
				"    - filters:",
				"      - name: hcm",
				"        typed_config:",
				`          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`,
				"          stat_prefx: x",
			),
			want: `envoy.yaml:8:11: static_resources.listeners[0].filter_chains[0].filters[0].typed_config.stat_prefx: unknown field "stat_prefx" in envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager (did you mean stat_prefix?)`,
		},
		{
			name: "v2 field names its v3 replacement",
			file: "envoy.yaml",
			in: y(
				"static_resources:",
				"  clusters:",
				"  - name: a",
				"    tls_context: {}",
			),
			want: `envoy.yaml:4:5: static_resources.clusters[0].tls_context: v2 field "tls_context" was removed in the v3 API (use transport_socket: {name: envoy.transport_sockets.tls, typed_config: {"@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext, ...}})`,
		},
		{
			name: "v2 type URL names the v3 one",
			file: "envoy.yaml",
			in: y(
				"static_resources:",
				"  listeners:",
				"  - filter_chains:",
				"    - filters:",
				"      - name: tcp",
				"        typed_config:",
				`          "@type": type.googleapis.com/envoy.config.filter.network.tcp_proxy.v2.TcpProxy`,
			),
			want: `envoy.yaml:7:20: static_resources.listeners[0].filter_chains[0].filters[0].typed_config: v2 type "type.googleapis.com/envoy.config.filter.network.tcp_proxy.v2.TcpProxy" is not supported in the v3 API (use type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy)`,
		},
		{
			name: "v2 TLS context type URL",
			file: "envoy.yaml",
			in: y(
				"static_resources:",
				"  clusters:",
				"  - name: a",
				"    transport_socket:",
				"      name: envoy.transport_sockets.tls",
				"      typed_config:",
				`        "@type": type.googleapis.com/envoy.api.v2.auth.UpstreamTlsContext`,
			),
			want: `envoy.yaml:7:18: static_resources.clusters[0].transport_socket.typed_config: v2 type "type.googleapis.com/envoy.api.v2.auth.UpstreamTlsContext" is not supported in the v3 API (use type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext)`,
		},
		{
			name: "unknown type URL",
			file: "envoy.yaml",
			in: y(
				"static_resources:",
				"  clusters:",
				"  - name: a",
				"    transport_socket:",
				"      name: x",
				"      typed_config: {'@type': type.googleapis.com/acme.Nothing}",
			),
			want: `envoy.yaml:6:31: static_resources.clusters[0].transport_socket.typed_config: unknown type "type.googleapis.com/acme.Nothing"`,
		},
		{
			name: "missing @type",
			file: "envoy.yaml",
			in: y(
				"static_resources:",
				"  clusters:",
				"  - name: a",
				"    transport_socket:",
				"      name: x",
				"      typed_config:",
				"        sni: example.com",
			),
			want: `envoy.yaml:7:9: static_resources.clusters[0].transport_socket.typed_config: missing "@type" (add "@type: type.googleapis.com/<message>")`,
		},
		{
			name: "bad duration",
			file: "envoy.yaml",
			in:   y("static_resources: {clusters: [{name: a, connect_timeout: 5 seconds}]}"),
			want: `envoy.yaml:1:58: static_resources.clusters[0].connect_timeout: invalid duration "5 seconds" (seconds with an "s" suffix, e.g. "1.5s")`,
		},
		{
			name: "number where a string is expected",
			file: "envoy.yaml",
			in:   y("static_resources: {clusters: [{name: 1234}]}"),
			want: `envoy.yaml:1:38: static_resources.clusters[0].name: expected a string, got number 1234 (quote it: "1234")`,
		},
		{
			name: "integer out of range",
			file: "envoy.yaml",
			in:   y("static_resources: {clusters: [{name: a, per_connection_buffer_limit_bytes: 5000000000}]}"),
			want: `envoy.yaml:1:76: static_resources.clusters[0].per_connection_buffer_limit_bytes: value 5000000000 out of range for uint32`,
		},
		{
			name: "negative unsigned",
			file: "envoy.yaml",
			in:   y("admin: {address: {socket_address: {address: 127.0.0.1, port_value: -1}}}"),
			want: `envoy.yaml:1:68: admin.address.socket_address.port_value: value -1 out of range for uint32`,
		},
		{
			name: "scalar where a list is expected",
			file: "envoy.yaml",
			in:   y("static_resources: {clusters: backend}"),
			want: `envoy.yaml:1:30: static_resources.clusters: expected a list, got string "backend"`,
		},
		{
			name: "list where a message is expected",
			file: "envoy.yaml",
			in:   y("admin: [a]"),
			want: `envoy.yaml:1:8: admin: expected a mapping of envoy.config.bootstrap.v3.Admin fields, got a list`,
		},
		{
			name: "bool field",
			file: "envoy.yaml",
			in:   y("static_resources: {clusters: [{name: a, respect_dns_ttl: maybe}]}"),
			want: `envoy.yaml:1:58: static_resources.clusters[0].respect_dns_ttl: expected true or false, got string "maybe"`,
		},
		{
			name: "oneof set twice",
			file: "envoy.yaml",
			in:   y("static_resources: {clusters: [{name: a, type: STATIC, cluster_type: {name: x}}]}"),
			want: `envoy.yaml:1:55: static_resources.clusters[0].cluster_type: type is already set, and both belong to oneof cluster_discovery_type (set only one of type, cluster_type)`,
		},
		{
			name: "field set twice, also under its JSON name",
			file: "envoy.yaml",
			in:   y("static_resources: {clusters: [{connect_timeout: 1s, connectTimeout: 2s}]}"),
			want: `envoy.yaml:1:53: static_resources.clusters[0].connect_timeout: field set twice (first set at envoy.yaml:1:32)`,
		},
		{
			name: "YAML syntax error",
			file: "envoy.yaml",
			in:   y("static_resources:", "  clusters:", "  - name: a", "     type: STATIC"),
			want: `envoy.yaml:4: invalid YAML: mapping values are not allowed in this context`,
		},
		{
			name: "not a mapping",
			file: "envoy.yaml",
			in:   y("- a"),
			want: `envoy.yaml:1:1: expected a mapping of envoy.config.bootstrap.v3.Bootstrap fields, got a list`,
		},
		{
			name: "empty document",
			file: "envoy.yaml",
			in:   "",
			want: `envoy.yaml: config is empty`,
		},
		{
			name: "JSON file: YAML syntax is rejected like Envoy's JSON parser does",
			file: "envoy.json",
			in:   y("static_resources:", "  clusters: []"),
			want: `envoy.json:1:1: invalid JSON: invalid character 's' looking for beginning of value`,
		},
		{
			name: "JSON file with tabs and an error",
			file: "envoy.json",
			in:   "{\n\t\"static_resources\": {\n\t\t\"clusters\": [{\"name\": \"a\", \"type\": \"STATC\"}]\n\t}\n}\n",
			want: `envoy.json:3:38: static_resources.clusters[0].type: unknown value "STATC" (did you mean STATIC?)`,
		},
		{
			name: "every error of the file is reported, in file order",
			file: "envoy.yaml",
			in: y(
				"static_resources:",
				"  clusters:",
				"  - name: a",
				"    lb_policy: ROUND_ROBBIN",
				"    conect_timeout: 1s",
				"  - name: b",
				"    type: STATC",
			),
			want: strings.Join([]string{
				`envoy.yaml:4:16: static_resources.clusters[0].lb_policy: unknown value "ROUND_ROBBIN" (did you mean ROUND_ROBIN?)`,
				`envoy.yaml:5:5: static_resources.clusters[0].conect_timeout: unknown field "conect_timeout" in envoy.config.cluster.v3.Cluster (did you mean connect_timeout?)`,
				`envoy.yaml:7:11: static_resources.clusters[1].type: unknown value "STATC" (did you mean STATIC?)`,
			}, "\n"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse(tc.file, []byte(tc.in))
			if err == nil {
				t.Fatalf("Parse succeeded, want error %q", tc.want)
			}
			var l configerr.List
			if !errors.As(err, &l) {
				t.Fatalf("Parse error is %T, want configerr.List", err)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("Parse error:\n got: %s\nwant: %s", got, tc.want)
			}
		})
	}
}

// TestParseAccepts covers the spellings Envoy's loader accepts.
func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *bootstrapv3.Bootstrap
	}{
		{
			// Envoy parses JSON with case_insensitive_enum_parsing: a value
			// that is no exact name is retried in upper case.
			name: "enum in lower case",
			in:   y("static_resources: {clusters: [{name: a, lb_policy: least_request, type: Strict_DNS}]}"),
			want: &bootstrapv3.Bootstrap{StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{{
				Name: "a", LbPolicy: clusterv3.Cluster_LEAST_REQUEST,
				ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
			}}}},
		},
		{
			name: "enum as a number",
			in:   y("static_resources: {clusters: [{name: a, lb_policy: 1}]}"),
			want: &bootstrapv3.Bootstrap{StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{{
				Name: "a", LbPolicy: clusterv3.Cluster_LEAST_REQUEST,
			}}}},
		},
		{
			// Envoy drops keys tagged !ignore; they hold anchors used below.
			name: "!ignore keys and aliases",
			in: y(
				"!ignore defaults: &defaults",
				"  name: shared",
				"  lb_policy: RANDOM",
				"static_resources:",
				"  clusters:",
				"  - *defaults",
				"  - {name: b, lb_policy: RANDOM}",
			),
			want: &bootstrapv3.Bootstrap{StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{
				{Name: "shared", LbPolicy: clusterv3.Cluster_RANDOM},
				{Name: "b", LbPolicy: clusterv3.Cluster_RANDOM},
			}}},
		},
		{
			name: "JSON field names, quoted integers, null fields",
			in:   y(`{"staticResources": {"clusters": [{"name": "a", "perConnectionBufferLimitBytes": "1024", "lbPolicy": null}]}}`),
			want: &bootstrapv3.Bootstrap{StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{{
				Name: "a", PerConnectionBufferLimitBytes: wrapU32(1024),
			}}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := Parse("envoy.yaml", []byte(tc.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseTypedConfig checks that a typed_config is unpacked into its v3
// message and that positions inside it are indexed after "typed_config.".
func TestParseTypedConfig(t *testing.T) {
	in := y(
		"static_resources:",
		"  listeners:",
		"  - name: l",
		"    filter_chains:",
		"    - filters:",
		"      - name: envoy.filters.network.http_connection_manager",
		"        typed_config:",
		`          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`,
		"          stat_prefix: ingress",
		"          route_config:",
		"            virtual_hosts:",
		"            - name: all",
		`              domains: ["*"]`,
		"              routes:",
		`              - match: {prefix: "/"}`,
		"                route: {cluster: backend}",
	)
	bs, idx, err := Parse("envoy.yaml", []byte(in))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := bs.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatalf("typed_config: %v", err)
	}
	if got, want := hcm.GetStatPrefix(), "ingress"; got != want {
		t.Errorf("stat_prefix = %q, want %q", got, want)
	}
	positions := []struct {
		path string
		want configerr.Pos
	}{
		{path: "static_resources.listeners[0].filter_chains[0].filters[0].typed_config", want: configerr.Pos{File: "envoy.yaml", Line: 7, Col: 9}},
		{path: "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.stat_prefix", want: configerr.Pos{File: "envoy.yaml", Line: 9, Col: 24}},
		{path: "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route.cluster", want: configerr.Pos{File: "envoy.yaml", Line: 16, Col: 34}},
		{path: "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].domains[0]", want: configerr.Pos{File: "envoy.yaml", Line: 13, Col: 25}},
	}
	for _, p := range positions {
		got, ok := idx.Locate(p.path)
		if !ok || got != p.want {
			t.Errorf("Locate(%s) = %v, %v; want %v", p.path, got, ok, p.want)
		}
	}
	if got, want := idx.File(), "envoy.yaml"; got != want {
		t.Errorf("File() = %q, want %q", got, want)
	}
}

func wrapU32(v uint32) *wrapperspb.UInt32Value { return wrapperspb.UInt32(v) }

// TestParseAliasBomb: nested aliases that would expand exponentially fail
// with an error instead of exhausting memory.
func TestParseAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("!ignore a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "!ignore a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	b.WriteString("node: {metadata: {bomb: *a9}}\n")
	_, _, err := Parse("bomb.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "document expands too much") {
		t.Errorf("Parse error = %v, want the expansion limit", err)
	}
}
