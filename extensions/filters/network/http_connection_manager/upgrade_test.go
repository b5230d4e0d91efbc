package httpconnectionmanager_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	httpconnectionmanager "github.com/herald-proxy/herald/extensions/filters/network/http_connection_manager"
	"github.com/herald-proxy/herald/internal/http/connmgr"
)

func TestBuildUpgradeConfigs(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []connmgr.UpgradeConfig
	}{
		{name: "none"},
		{
			// enabled defaults to true; the type keeps its spelling (matched
			// case-insensitively).
			name: "websocket, custom type disabled, CONNECT",
			yaml: "upgrade_configs:\n- upgrade_type: WebSocket\n- upgrade_type: x-custom\n  enabled: false\n- upgrade_type: CONNECT\n",
			want: []connmgr.UpgradeConfig{{Type: "WebSocket", Enabled: true}, {Type: "x-custom"}, {Type: "CONNECT", Enabled: true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := httpconnectionmanager.Build(parse(t, "stat_prefix: s\n"+tt.yaml+routeToBackend+router), buildContext(t))
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			got := f.(*httpconnectionmanager.Filter).Config().Upgrades
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Upgrades (-want +got):\n%s", diff)
			}
		})
	}
}
