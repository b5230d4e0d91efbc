package bootstrap

import (
	"strings"
	"testing"
)

// TestEmptyAny: an empty mapping for a google.protobuf.Any field ("config:
// {}", "typed_config: {}") is an empty Any, as in Envoy, not a missing
// "@type" error; a mapping with fields still needs "@type".
func TestEmptyAny(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{name: "empty typed_config", yaml: `static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: {}
`},
		{name: "fields without @type", yaml: `static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: { stat_prefix: x }
`, wantErr: `typed_config: missing "@type"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse("t.yaml", []byte(tc.yaml))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Parse err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
