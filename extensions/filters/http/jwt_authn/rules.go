package jwtauthn

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/router"
)

// routeMatcher is a compiled RequirementRule.match (Envoy's jwt_authn
// matcher.cc: the path specifiers, case_sensitive and headers of a
// RouteMatch), compiled and matched by the router's RouteMatch.
// Immutable.
type routeMatcher = router.RouteMatch

// matchFields are the RouteMatch fields a rule may set. runtime_fraction
// is left to the router's compiler, which reports it as not supported
// (Envoy's matcher.cc ignores it: "matching on RouteMatch runtime is not
// implemented"). Envoy's BaseMatcherImpl does not look at grpc either, so
// herald refuses grpc here rather than honour it as a route would.
var matchFields = []string{"prefix", "path", "safe_regex", "path_separated_prefix", "case_sensitive", "headers", "runtime_fraction"}

func buildRouteMatcher(m *routev3.RouteMatch, path string, errs *configerr.List) routeMatcher {
	*errs = append(*errs, configerr.RejectUnlisted(m, path, map[string]string{
		"query_parameters": "#8", "grpc": "#8",
	}, matchFields...)...)
	return router.BuildRouteMatch(m, path, errs)
}
