package httpconnectionmanager_test

import (
	"errors"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	httpconnectionmanager "github.com/herald-proxy/herald/extensions/filters/network/http_connection_manager"
	"github.com/herald-proxy/herald/internal/bootstrap"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/connmgr"
	routerpkg "github.com/herald-proxy/herald/internal/router"
)

// rdsServer is what internal/server offers for rds, reduced to a map of
// route configurations the test sets.
type rdsServer struct {
	serverContext
	current map[string]*routev3.RouteConfiguration
	routes  map[string]*connmgr.DynamicRoutes
	err     error
}

func (s *rdsServer) WatchRouteConfig(_ *corev3.ConfigSource, name, _ string, routes *connmgr.DynamicRoutes) error {
	if s.err != nil {
		return s.err
	}
	s.routes[name] = routes
	if rc := s.current[name]; rc != nil {
		commit, err := routes.Prepare(rc)
		if err != nil {
			return err
		}
		commit()
	}
	return nil
}

func routeConfig(t *testing.T, y string) *routev3.RouteConfiguration {
	t.Helper()
	rc := &routev3.RouteConfiguration{}
	if _, err := bootstrap.Unmarshal("rc.yaml", []byte(y), rc); err != nil {
		t.Fatal(err)
	}
	return rc
}

// routeName resolves / and returns the matched route's name ("" when none).
func routeName(t *testing.T, r connmgr.RouteResolver) string {
	t.Helper()
	h := &hhttp.Headers{}
	h.Set(":method", "GET")
	h.Set(":path", "/")
	h.Set(":authority", "x")
	rt := r.Resolve(h, 80)
	if rt == nil {
		return ""
	}
	return rt.(*routerpkg.Route).Name()
}

func TestRDS(t *testing.T) {
	ctx := buildContext(t)
	srv := &rdsServer{
		serverContext: ctx.Server.(serverContext),
		current: map[string]*routev3.RouteConfiguration{"r": routeConfig(t, `
name: r
virtual_hosts: [ { name: v, domains: ["*"], routes: [ { name: first, match: { prefix: "/" }, route: { cluster: backend } } ] } ]
`)},
		routes: map[string]*connmgr.DynamicRoutes{},
	}
	ctx.Server = srv
	f, err := httpconnectionmanager.Build(parse(t, `
stat_prefix: s
rds: { route_config_name: r, config_source: { ads: {} } }
`+router), ctx)
	if err != nil {
		t.Fatal(err)
	}
	routes := f.(*httpconnectionmanager.Filter).Config().Routes
	if got := routeName(t, routes); got != "first" {
		t.Fatalf("route at build = %q, want first (the current route configuration)", got)
	}

	// An update swaps the table the existing connection manager config
	// resolves with.
	commit, err := srv.routes["r"].Prepare(routeConfig(t, `
name: r
virtual_hosts: [ { name: v, domains: ["*"], routes: [ { name: second, match: { prefix: "/" }, route: { cluster: backend } } ] } ]
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := routeName(t, routes); got != "first" {
		t.Fatalf("route after Prepare = %q, want first (nothing installed before commit)", got)
	}
	commit()
	if got := routeName(t, routes); got != "second" {
		t.Fatalf("route after commit = %q, want second", got)
	}

	// A bad update names the route configuration and the field.
	_, err = srv.routes["r"].Prepare(routeConfig(t, `
name: r
virtual_hosts: [ { name: v, domains: ["*"], routes: [ { match: { prefix: "/" }, route: { cluster: backend, regex_rewrite: { pattern: { regex: "(" }, substitution: x } } } ] } ]
`))
	if err == nil || !strings.Contains(err.Error(), `route_configuration "r".virtual_hosts[0].routes[0]`) {
		t.Errorf("bad update: error = %v, want one at route_configuration \"r\".virtual_hosts[0].routes[0]", err)
	}
	if got := routeName(t, routes); got != "second" {
		t.Errorf("route after a bad update = %q, want second", got)
	}

	// A config source problem is reported at rds.config_source.
	srv.err = errors.New("ads: no ads_config in dynamic_resources")
	_, err = httpconnectionmanager.Build(parse(t, "stat_prefix: s\nrds: { route_config_name: r, config_source: { ads: {} } }\n"+router), ctx)
	if err == nil || !strings.Contains(err.Error(), hcmPath+".rds.config_source: ads: no ads_config") {
		t.Errorf("config source error = %v, want it at %s.rds.config_source", err, hcmPath)
	}
}
