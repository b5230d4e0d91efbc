package bootstrap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-proxy/herald/internal/configerr"
)

// writeConfig writes content to dir/name and returns the path.
func writeConfig(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// cluster is a minimal valid static cluster in flow style.
func cluster(name string) string {
	return "  - {name: " + name + ", connect_timeout: 1s, type: STATIC, load_assignment: {cluster_name: " + name +
		", endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}}]}]}}"
}

// TestLoadErrors covers validation (generated rules, inside Anys too) and
// cross-checks, each asserting the exact error text. Files are named
// envoy.yaml; the temp directory is stripped from the error.
func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{
			name: "negative connect_timeout",
			in: y(
				"static_resources:",
				"  clusters:",
				"  - name: a",
				"    connect_timeout: -1s",
			),
			want: `envoy.yaml:4:22: static_resources.clusters[0].connect_timeout: value must be greater than 0s`,
		},
		{
			name: "empty cluster name",
			in:   y("static_resources:", "  clusters:", `  - name: ""`),
			want: `envoy.yaml:3:11: static_resources.clusters[0].name: value length must be at least 1 runes`,
		},
		{
			// The generated Bootstrap.ValidateAll stops at the Any; the
			// loader unpacks it and validates the HCM too. The missing field
			// is located at its nearest indexed parent.
			name: "rule inside typed_config",
			in: y(
				"static_resources:",
				"  listeners:",
				"  - name: l",
				"    filter_chains:",
				"    - filters:",
				"      - name: envoy.filters.network.tcp_proxy",
				"        typed_config:",
				`          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`,
				"          cluster: a",
				"  clusters:",
				cluster("a"),
			),
			want: `envoy.yaml:7:9: static_resources.listeners[0].filter_chains[0].filters[0].typed_config.stat_prefix: value length must be at least 1 runes`,
		},
		{
			name: "required oneof names its choices",
			in: y(
				"static_resources:",
				"  listeners:",
				"  - name: l",
				"    filter_chains:",
				"    - filters:",
				"      - name: envoy.filters.network.tcp_proxy",
				"        typed_config:",
				`          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`,
				"          stat_prefix: tcp",
			),
			want: `envoy.yaml:7:9: static_resources.listeners[0].filter_chains[0].filters[0].typed_config.cluster_specifier: value is required (set one of cluster, weighted_clusters)`,
		},
		{
			// An Any inside an Any (a per-route config inside the HCM), in a
			// map: the path keeps the map key.
			name: "rules inside nested typed configs",
			in: y(
				"static_resources:",
				"  listeners:",
				"  - name: l",
				"    filter_chains:",
				"    - filters:",
				"      - name: envoy.filters.network.http_connection_manager",
				"        typed_config:",
				`          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`,
				"          stat_prefix: h",
				"          http_filters:",
				"          - name: envoy.filters.http.buffer",
				"            typed_config:",
				`              "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer`,
				"              max_request_bytes: 0",
				"          route_config:",
				"            virtual_hosts:",
				"            - name: v",
				`              domains: ["*"]`,
				"              routes:",
				`              - match: {prefix: "/"}`,
				"                route: {cluster: a}",
				"                typed_per_filter_config:",
				"                  envoy.filters.http.buffer:",
				`                    "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute`,
				"  clusters:",
				cluster("a"),
			),
			want: strings.Join([]string{
				`envoy.yaml:14:34: static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.max_request_bytes: value must be greater than 0`,
				`envoy.yaml:23:19: static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].typed_per_filter_config[envoy.filters.http.buffer].override: value is required (set one of disabled, buffer)`,
			}, "\n"),
		},
		{
			name: "duplicate cluster names",
			in:   y("static_resources:", "  clusters:", cluster("a"), cluster("a")),
			want: `envoy.yaml:4:12: static_resources.clusters[1].name: duplicate cluster name "a" (first defined at envoy.yaml:3:12)`,
		},
		{
			name: "route to a missing cluster",
			in: y(
				"static_resources:",
				"  listeners:",
				"  - name: l",
				"    filter_chains:",
				"    - filters:",
				"      - name: envoy.filters.network.http_connection_manager",
				"        typed_config:",
				`          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`,
				"          stat_prefix: h",
				"          route_config:",
				"            virtual_hosts:",
				`            - {name: v, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: b}}]}`,
				"  clusters:",
				cluster("a"),
			),
			want: `envoy.yaml:12:90: static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route.cluster: unknown cluster "b" (define it in static_resources.clusters)`,
		},
		{
			name: "duplicate listener address, IPv6 spelled two ways",
			in: y(
				"static_resources:",
				"  listeners:",
				"  - name: a",
				"    address: {socket_address: {address: '::1', port_value: 8080}}",
				"    filter_chains: [{filters: [{name: t, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: c}}]}]",
				"  - name: b",
				"    address: {socket_address: {address: '0:0::1', port_value: 8080}}",
				"    filter_chains: [{filters: [{name: t, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: c}}]}]",
				"  clusters:",
				cluster("c"),
			),
			want: `envoy.yaml:7:15: static_resources.listeners[1].address.socket_address: address [::1]:8080 is already used by static_resources.listeners[0] (first bound at envoy.yaml:4:15)`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, "envoy.yaml", tc.in)
			_, err := Load(Options{Path: path})
			if err == nil {
				t.Fatalf("Load succeeded, want %q", tc.want)
			}
			got := strings.ReplaceAll(err.Error(), filepath.Dir(path)+string(filepath.Separator), "")
			if got != tc.want {
				t.Errorf("Load error:\n got: %s\nwant: %s", got, tc.want)
			}
		})
	}
}

// TestLoadSkipsClusterRefs: references are not checked where Envoy would
// resolve them later (CDS) or was told not to (validate_clusters: false).
func TestLoadSkipsClusterRefs(t *testing.T) {
	hcm := func(extra string) string {
		return y(
			"static_resources:",
			"  listeners:",
			"  - name: l",
			"    filter_chains:",
			"    - filters:",
			"      - name: envoy.filters.network.http_connection_manager",
			"        typed_config:",
			`          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`,
			"          stat_prefix: h",
			"          route_config:",
			extra,
			"            virtual_hosts:",
			`            - {name: v, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: from_cds}}]}`,
		)
	}
	tests := []struct {
		name string
		in   string
	}{
		{name: "cds_config set", in: hcm("") + y("dynamic_resources:", "  cds_config: {ads: {}}")},
		{name: "validate_clusters false", in: hcm("            validate_clusters: false")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Load(Options{Path: writeConfig(t, "envoy.yaml", tc.in)}); err != nil {
				t.Errorf("Load: %v", err)
			}
		})
	}
}

// TestLoadConfigYAML checks Envoy's --config-yaml merge: scalars override,
// repeated fields append, and positions of the merged elements point into
// the --config-yaml text under their merged indices.
func TestLoadConfigYAML(t *testing.T) {
	file := writeConfig(t, "envoy.yaml", y(
		"admin:",
		"  address: {socket_address: {address: 127.0.0.1, port_value: 9901}}",
		"static_resources:",
		"  clusters:",
		cluster("a"),
	))
	t.Run("merge", func(t *testing.T) {
		cfg, err := Load(Options{Path: file, YAML: y(
			"admin:",
			"  address: {socket_address: {port_value: 9902}}",
			"static_resources:",
			"  clusters:",
			cluster("b"),
		)})
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		sa := cfg.Bootstrap.GetAdmin().GetAddress().GetSocketAddress()
		if got, want := sa.GetPortValue(), uint32(9902); got != want {
			t.Errorf("admin port = %d, want %d (--config-yaml overrides)", got, want)
		}
		if got, want := sa.GetAddress(), "127.0.0.1"; got != want {
			t.Errorf("admin address = %q, want %q (kept from the file)", got, want)
		}
		var names []string
		for _, c := range cfg.Bootstrap.GetStaticResources().GetClusters() {
			names = append(names, c.GetName())
		}
		if got, want := strings.Join(names, ","), "a,b"; got != want {
			t.Errorf("clusters = %s, want %s (appended)", got, want)
		}
		locs := []struct {
			path string
			want configerr.Pos
		}{
			{path: "static_resources.clusters[0].name", want: configerr.Pos{File: file, Line: 5, Col: 12}},
			{path: "static_resources.clusters[1].name", want: configerr.Pos{File: ConfigYAMLFile, Line: 5, Col: 12}},
			{path: "admin.address.socket_address.port_value", want: configerr.Pos{File: ConfigYAMLFile, Line: 2, Col: 42}},
			{path: "admin.address.socket_address.address", want: configerr.Pos{File: file, Line: 2, Col: 39}},
		}
		for _, l := range locs {
			if got, ok := cfg.Index.Locate(l.path); !ok || got != l.want {
				t.Errorf("Locate(%s) = %v, %v; want %v", l.path, got, ok, l.want)
			}
		}
	})
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{
			name: "parse error in --config-yaml",
			yaml: y("admin: {address: {socket_address: {protocol: TCPP}}}"),
			want: `--config-yaml:1:46: admin.address.socket_address.protocol: unknown value "TCPP" (did you mean TCP?)`,
		},
		{
			// The appended cluster is clusters[1] of the merged bootstrap and
			// is found in the --config-yaml text.
			name: "validation error in a merged element",
			yaml: y("static_resources:", "  clusters:", "  - {name: b, connect_timeout: 0s}"),
			want: `--config-yaml:3:32: static_resources.clusters[1].connect_timeout: value must be greater than 0s`,
		},
		{
			name: "duplicate across file and --config-yaml",
			yaml: y("static_resources:", "  clusters:", cluster("a")),
			want: `--config-yaml:3:12: static_resources.clusters[1].name: duplicate cluster name "a" (first defined at envoy.yaml:5:12)`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(Options{Path: file, YAML: tc.yaml})
			if err == nil {
				t.Fatalf("Load succeeded, want %q", tc.want)
			}
			got := strings.ReplaceAll(err.Error(), filepath.Dir(file)+string(filepath.Separator), "")
			if got != tc.want {
				t.Errorf("Load error:\n got: %s\nwant: %s", got, tc.want)
			}
		})
	}
}

func TestLoadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{name: "nothing given", opts: Options{}, want: "at least one of --config-path or --config-yaml should be non-empty"},
		{name: "missing file", opts: Options{Path: "/nonexistent/envoy.yaml"}, want: "/nonexistent/envoy.yaml: cannot read config: no such file or directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.opts)
			if err == nil || err.Error() != tc.want {
				t.Errorf("Load error = %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("only --config-yaml", func(t *testing.T) {
		cfg, err := Load(Options{YAML: y("static_resources:", "  clusters:", cluster("a"))})
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if got, want := cfg.Index.File(), ConfigYAMLFile; got != want {
			t.Errorf("Index.File() = %q, want %q", got, want)
		}
	})
}
