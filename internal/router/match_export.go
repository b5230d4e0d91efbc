package router

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
)

// RouteMatch is a compiled RouteMatch for filters that match requests the
// way routes do (jwt_authn's RequirementRule.match). Immutable.
type RouteMatch struct{ m routeMatch }

// BuildRouteMatch compiles m as a route's match is compiled; problems are
// appended to errs under path.
func BuildRouteMatch(m *routev3.RouteMatch, path string, errs *configerr.List) RouteMatch {
	return RouteMatch{m: buildRouteMatch(m, path, errs)}
}

// Matches reports whether the request matches. The prefix is matched
// against the whole :path and the other specifiers against the path
// without query and fragment, as Envoy's jwt_authn matcher.cc
// (PrefixMatcherImpl, PathMatcherImpl, RegexMatcherImpl,
// PathSeparatedPrefixMatcherImpl) does.
func (r *RouteMatch) Matches(h *hhttp.Headers) bool {
	full := h.Path()
	p := full
	if r.m.kind != pathPrefix {
		p = stripQueryAndFragment(full)
	}
	return r.m.matches(h, full, p)
}
