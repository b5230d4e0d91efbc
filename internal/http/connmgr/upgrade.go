package connmgr

import (
	"strings"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// HTTP upgrades (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/upgrades).
// herald does not proxy upgrades yet: upgrade_configs, in the connection
// manager and in routes, is refused at config load (#6), so every upgrade is
// rejected as Envoy rejects one no upgrade_configs entry enables:
// ConnectionManagerImpl::ActiveStream::decodeHeaders answers 403 with
// response_code_details "upgrade_failed", counts
// downstream_rq_ws_on_non_ws_route and closes the connection afterwards
// ("refuse to process any further requests on this connection, to avoid a
// class of HTTP/1.1 smuggling bugs"), when a route matched; without a
// route the request goes on (and gets the router's 404).

// isUpgrade is Envoy's Http::Utility::isUpgrade for HTTP/1.x: an upgrade
// header and a connection header with the "upgrade" token.
func isUpgrade(h *hhttp.Headers) bool {
	if !h.Has("upgrade") {
		return false
	}
	for _, f := range h.Fields {
		if f.Name == hdrConnection && hasTokenFold(f.Value, "upgrade") {
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

// rejectUpgrade answers an upgrade request that matched a route with
// Envoy's 403; it reports whether it answered.
func (as *stream) rejectUpgrade() bool {
	if as.Route() == nil {
		return false
	}
	as.closeConn = true
	as.cfg.Stats.DownstreamRqWsOnNonWsRoute.Inc()
	as.sendLocalReply(403, "", "upgrade_failed", nil)
	return true
}
