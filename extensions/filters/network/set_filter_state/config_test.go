package setfilterstate

import (
	"strings"
	"testing"

	setfilterstatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/set_filter_state/v3"

	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/network/netfilter"
	"github.com/herald-proxy/herald/internal/registry"
)

const sfsPath = "filters[0].typed_config"

// parseConfig decodes a YAML fragment as the bootstrap loader does and
// requires it to pass the proto's own validation rules, so that a Build
// failure is herald's.
func parseConfig(t *testing.T, fragment string) *setfilterstatev3.Config {
	t.Helper()
	cfg := &setfilterstatev3.Config{}
	if _, err := bootstrap.Unmarshal("set_filter_state.yaml", []byte(fragment), cfg); err != nil {
		t.Fatalf("parse: %v", err)
	}
	if err := cfg.ValidateAll(); err != nil {
		t.Fatalf("fragment breaks Envoy's validation rules: %v", err)
	}
	return cfg
}

func TestRegistered(t *testing.T) {
	e, ok := netfilter.Registry.ByTypeURL(registry.TypeURL(&setfilterstatev3.Config{}))
	if !ok || e.Name != Name || e.Terminal {
		t.Fatalf("registered as %+v, %v; want non-terminal %s", e, ok, Name)
	}
	if e2, ok := netfilter.Registry.ByName(Name); !ok || e2 != e {
		t.Errorf("ByName(%q) = %+v, %v; want the same entry", Name, e2, ok)
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string // substring of the error; "" builds
	}{
		{
			name: "upstream server name from the SNI",
			yaml: `
on_new_connection:
- object_key: envoy.network.upstream_server_name
  format_string: { text_format_source: { inline_string: "%REQUESTED_SERVER_NAME%" } }
`,
		},
		{
			name: "tcp_proxy cluster, skip_if_empty, read_only and shared_with_upstream accepted",
			yaml: `
on_new_connection:
- object_key: envoy.tcp_proxy.cluster
  format_string: { text_format_source: { inline_string: "%REQUESTED_SERVER_NAME%" }, omit_empty_values: true }
  skip_if_empty: true
  read_only: true
  shared_with_upstream: ONCE
`,
		},
		{
			name: "custom key with the generic string factory",
			yaml: `
on_new_connection:
- object_key: my.key
  factory_key: envoy.string
  format_string: { text_format: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" }
`,
		},
		{name: "no values", yaml: `{}`},
		{
			// Envoy: a key that is not well-known needs factory_key.
			name: "custom key without a factory",
			yaml: `
on_new_connection:
- object_key: my.key
  format_string: { text_format: "x" }
`,
			wantErr: sfsPath + ".on_new_connection[0].object_key: 'my.key' does not have an object factory",
		},
		{
			name: "well-known key herald has no object for",
			yaml: `
on_new_connection:
- object_key: my.key
  factory_key: envoy.network.application_protocols
  format_string: { text_format: "h2" }
`,
			wantErr: sfsPath + ".on_new_connection[0].factory_key: 'envoy.network.application_protocols' does not have an object factory",
		},
		{
			name: "bad operator",
			yaml: `
on_new_connection:
- object_key: envoy.tcp_proxy.cluster
  format_string: { text_format: "%NOT_AN_OPERATOR%" }
`,
			wantErr: sfsPath + ".on_new_connection[0].format_string.text_format",
		},
		{
			name: "on_downstream_data not supported",
			yaml: `
on_downstream_data:
- object_key: envoy.tcp_proxy.cluster
  format_string: { text_format: "x" }
`,
			wantErr: sfsPath + ".on_downstream_data",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(parseConfig(t, tc.yaml), netfilter.BuildContext{Path: sfsPath})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Build: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Build error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
