package router

import (
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
)

// HTTP upgrades (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/upgrades).
// A route's RouteAction.upgrade_configs enables or disables an upgrade
// type for that route, overriding the connection manager's upgrade_configs;
// the connection manager decides (connmgr's upgrade.go) and the router
// forwards an accepted upgrade with its Upgrade and Connection headers,
// streaming both directions at once (duplex.go) until each has ended.
//
// CONNECT is the upgrade type "CONNECT". Only connect_matcher routes match
// it. Without connect_config the CONNECT request is forwarded like any
// upgrade; with it the router terminates the CONNECT: it opens a TCP
// connection to the picked host (through the cluster's transport socket),
// answers 200 once connected and relays the payload both ways
// (tcp_upstream.go; Envoy's TcpUpstream).

// routeUpgrade is one RouteAction.upgrade_configs entry.
type routeUpgrade struct {
	// typ is upgrade_type, lowercased: Envoy keys its upgrade map by
	// Http::LowerCaseString and matches the Upgrade header
	// case-insensitively.
	typ string
	// enabled is the entry's enabled, default true.
	enabled bool
}

// buildUpgrades compiles RouteAction.upgrade_configs as Envoy's
// RouteEntryImplBase: a repeated upgrade_type is an error ("Duplicate
// upgrade"), and connect_config is only valid on a CONNECT entry.
func (b *builder) buildUpgrades(r *Route, ucs []*routev3.RouteAction_UpgradeConfig, p string) {
	for i, uc := range ucs {
		ep := p + "[" + strconv.Itoa(i) + "]"
		typ := strings.ToLower(uc.GetUpgradeType())
		for _, u := range r.upgrades {
			if u.typ == typ {
				b.errs = append(b.errs, configerr.At(ep+".upgrade_type", "duplicate upgrade %q", uc.GetUpgradeType()))
			}
		}
		if cc := uc.GetConnectConfig(); cc != nil {
			if typ != "connect" {
				b.errs = append(b.errs, configerr.At(ep+".connect_config", "non-CONNECT upgrade type %q has connect_config", uc.GetUpgradeType()))
			}
			// proxy_protocol_config and allow_post (HTTP/1.1 POST
			// tunnels) are refused by name.
			b.errs = append(b.errs, configerr.RejectUnlisted(cc, ep+".connect_config", nil)...)
			r.connectTerminate = true
		}
		enabled := true
		if uc.GetEnabled() != nil {
			enabled = uc.GetEnabled().GetValue()
		}
		r.upgrades = append(r.upgrades, routeUpgrade{typ: typ, enabled: enabled})
	}
}

// methodConnect is the CONNECT method: Envoy treats a CONNECT request as an
// upgrade of type "CONNECT".
const methodConnect = "CONNECT"

// matchConnect returns the first connect_matcher route of vh matching the
// CONNECT request h (its header matchers; query parameters never match a
// request without :path), as Envoy's ConnectRouteEntryImpl.
func (vh *VirtualHost) matchConnect(h *hhttp.Headers) *Route {
	for i := range vh.steps {
		r := vh.steps[i].route
		if r != nil && r.match.kind == pathConnect && len(r.match.query) == 0 && r.match.matchRest(h, "") {
			return r
		}
	}
	return nil
}

// ConnectTerminate reports whether the route terminates CONNECT requests
// (upgrade_configs CONNECT with connect_config): the router opens a TCP
// connection to the upstream host, answers 200 and relays the raw bytes,
// instead of forwarding the CONNECT request.
func (r *Route) ConnectTerminate() bool { return r.connectTerminate }

// UpgradeEnabled reports whether the route's upgrade_configs enable the
// upgrade type typ (the Upgrade header's value, any case); set is false when
// the route does not mention typ and the connection manager's
// upgrade_configs decide.
func (r *Route) UpgradeEnabled(typ string) (enabled, set bool) {
	for _, u := range r.upgrades {
		if strings.EqualFold(u.typ, typ) {
			return u.enabled, true
		}
	}
	return false, false
}

// isUpgradeRequest is Envoy's Http::Utility::isUpgrade: an upgrade header
// and a connection header with the "upgrade" token. The connection manager
// keeps both only on such requests and answers 403 to those whose upgrade
// type is not allowed on their route, so one the router forwards is an
// allowed upgrade.
func isUpgradeRequest(h *hhttp.Headers) bool {
	if !h.Has("upgrade") {
		return false
	}
	for _, f := range h.Fields {
		if f.Name == "connection" && hasTokenFold(f.Value, "upgrade") {
			return true
		}
	}
	return false
}

// hasTokenFold reports whether the comma-separated list v holds tok
// (ASCII case-insensitive).
func hasTokenFold(v, tok string) bool {
	for v != "" {
		var item string
		item, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(strings.TrimSpace(item), tok) {
			return true
		}
	}
	return false
}
