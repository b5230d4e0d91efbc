package httpconnectionmanager

import (
	"fmt"
	"strings"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/http/connmgr"
)

// supportedUpgrade are the UpgradeConfig fields herald interprets; filters
// (a filter chain of its own for upgrades) is refused by name.
var supportedUpgrade = []string{"upgrade_type", "enabled"}

// buildUpgrades interprets upgrade_configs
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/upgrades).
// As Envoy's HttpConnectionManagerConfig, an upgrade type listed twice
// (case-insensitively) is an error; enabled defaults to true.
func buildUpgrades(ucs []*hcmv3.HttpConnectionManager_UpgradeConfig, path string) ([]connmgr.UpgradeConfig, configerr.List) {
	var out []connmgr.UpgradeConfig
	var errs configerr.List
	for i, uc := range ucs {
		up := fmt.Sprintf("%s.upgrade_configs[%d]", path, i)
		errs = append(errs, configerr.RejectUnlisted(uc, up, map[string]string{"filters": "#6"}, supportedUpgrade...)...)
		// "CONNECT" enables CONNECT requests (routes match them with
		// connect_matcher).
		typ := uc.GetUpgradeType()
		for _, u := range out {
			if strings.EqualFold(u.Type, typ) {
				errs = append(errs, configerr.At(up+".upgrade_type", "multiple upgrade configs with the same name: %q", typ))
			}
		}
		enabled := true
		if uc.GetEnabled() != nil {
			enabled = uc.GetEnabled().GetValue()
		}
		out = append(out, connmgr.UpgradeConfig{Type: typ, Enabled: enabled})
	}
	return out, errs
}
