package connmgr

import (
	"strings"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// HTTP upgrades (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/upgrades).
//
// A request with an upgrade header and the "upgrade" connection token
// (Envoy's Http::Utility::isUpgrade; an HTTP/2 codec presents an extended
// CONNECT the same way) keeps both headers, which other requests lose as
// hop-by-hop (ConnectionManagerUtility::mutateRequestHeaders). The upgrade
// type is then allowed or refused as Envoy's
// HttpConnectionManagerConfig::createUpgradeFilterChain decides: the
// route's RouteAction.upgrade_configs entry for the type, when there is
// one, else the connection manager's upgrade_configs (case-insensitive
// match, enabled defaulting to true). An allowed upgrade counts
// downstream_cx_upgrades_total and downstream_cx_upgrades_active (until the
// stream ends: ActiveStream::upgradeFilterChainCreated and its destructor).
// A refused one, when a route matched, gets 403 upgrade_failed, counts
// downstream_rq_ws_on_non_ws_route and closes the connection afterwards
// ("refuse to process any further requests on this connection, to avoid a
// class of HTTP/1.1 smuggling bugs"); on HTTP/2 (an extended CONNECT) the
// connection closes once no stream is active, as Envoy's
// checkForDeferredClose does. Without a route it goes on as a plain
// request and gets the router's 404 (ActiveStream::decodeHeaders).
//
// A CONNECT request is an upgrade of type "CONNECT" (its payload is raw
// bytes too); a 2xx answer opens its tunnel, as a 101 does for the others.
//
// An allowed upgrade streams both ways at once: the router encodes the
// response on its own goroutine (httpfilter.ConcurrentEncoder, allowed on
// HTTP/1.1 for upgrades: the codec's upgrade mode keeps its read and write
// halves apart) while this stream's goroutine reads the raw request bytes.
// Once a 101 went downstream (a tunnel), each direction ends on its own:
// the end of the response does not stop the request direction, which goes
// on until the downstream ends it or a side resets. A response that
// refuses the upgrade (anything but 101) ends the exchange and, on
// HTTP/1.1, the connection.

// UpgradeConfig is one HttpConnectionManager.upgrade_configs entry.
type UpgradeConfig struct {
	// Type is upgrade_type, matched case-insensitively against the
	// Upgrade header ("websocket", or any custom type).
	Type string
	// Enabled is the entry's enabled; Envoy's default is true.
	Enabled bool
}

// upgradeRoute is implemented by routes with RouteAction.upgrade_configs
// (router.Route).
type upgradeRoute interface {
	// UpgradeEnabled reports the route's setting for upgrade type typ;
	// set is false when the route does not mention it.
	UpgradeEnabled(typ string) (enabled, set bool)
}

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

// upgradeAllowed is Envoy's createUpgradeFilterChain decision for upgrade
// type typ: a route entry disabling the type refuses it, one enabling it
// allows it, else the connection manager's entry decides.
func upgradeAllowed(typ string, rt any, cfgs []UpgradeConfig) bool {
	if ur, ok := rt.(upgradeRoute); ok {
		if enabled, set := ur.UpgradeEnabled(typ); set {
			return enabled
		}
	}
	for i := range cfgs {
		if strings.EqualFold(cfgs[i].Type, typ) {
			return cfgs[i].Enabled
		}
	}
	return false
}

// startUpgrade decides an upgrade request once the filter chain is built.
// It reports whether the stream was answered (403).
func (as *stream) startUpgrade(h *hhttp.Headers) bool {
	typ := methodConnect
	if !as.isConnect {
		typ = h.Get(hdrUpgrade)
	}
	if upgradeAllowed(typ, as.Route(), as.cfg.Upgrades) {
		as.upgrade = true
		as.cfg.Stats.DownstreamCxUpgradesTotal.Inc()
		as.cfg.Stats.DownstreamCxUpgradesActive.Inc()
		return false
	}
	return as.rejectUpgrade()
}

// rejectUpgrade answers an upgrade request that matched a route with
// Envoy's 403; it reports whether it answered.
func (as *stream) rejectUpgrade() bool {
	if as.Route() == nil {
		return false
	}
	as.closeConn = true
	if cc, ok := as.s.(connCloser); ok && as.c.http2 {
		// HTTP/2 (an extended CONNECT): the connection closes once no
		// stream is left.
		cc.CloseConnWhenIdle()
	}
	as.cfg.Stats.DownstreamRqWsOnNonWsRoute.Inc()
	as.sendLocalReply(403, "", "upgrade_failed", nil)
	return true
}

// connCloser is implemented by server streams of multiplexed codecs
// (internal/http/codec/http2) that can close their connection once no
// stream is active, as Envoy's connection manager does for a connection in
// DrainState::Closing (checkForDeferredClose).
type connCloser interface {
	CloseConnWhenIdle()
}

// methodConnect is the CONNECT method, and the upgrade type Envoy gives a
// CONNECT request (FilterManager::createUpgradeFilterChain).
const methodConnect = "CONNECT"

// tunnelResponse reports whether the response headers h open the tunnel
// of an upgrade: a 101, or a 2xx to CONNECT.
func (as *stream) tunnelResponse(h *hhttp.Headers) bool {
	code := h.StatusCode()
	return code == 101 || (as.isConnect && code >= 200 && code < 300)
}

// keepUpgradeHeaders reports whether the response headers h keep their
// connection and upgrade fields: an upgrade response to an upgrade request
// on HTTP/1.1 (ConnectionManagerUtility::mutateResponseHeaders; an HTTP/2
// codec has no use for them).
func (as *stream) keepUpgradeHeaders(h *hhttp.Headers) bool {
	return as.upgradeReq && !as.c.http2 && isUpgrade(h)
}

// wakeUpgradeRead ends a blocked read of the raw request bytes of an
// HTTP/1.1 upgrade, when the stream is aborted from the encoder's
// goroutine: the codec's read has no other way out.
func (as *stream) wakeUpgradeRead() {
	if as.upgrade && !as.c.http2 && as.c.raw != nil {
		_ = as.c.raw.SetReadDeadline(time.Unix(1, 0))
	}
}
