package httpconnectionmanager

import (
	"errors"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/http/connmgr"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/router"
)

// routeConfigs is what the server (BuildContext.Server) offers for rds:
// internal/server shares one RDS subscription per config source and
// route_config_name among every connection manager naming it.
type routeConfigs interface {
	// WatchRouteConfig installs the route configuration's current version
	// in routes at once (a configerr error if it does not build for this
	// connection manager; a plain error for a config source problem) and
	// every accepted later one. statPrefix scopes the subscription's stats
	// (http.<stat_prefix>.rds.<route_config_name>.) when this call creates
	// it.
	WatchRouteConfig(src *corev3.ConfigSource, name, statPrefix string, routes *connmgr.DynamicRoutes) error
}

// buildRDS returns the connection manager's route table fed by RDS
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto#envoy-v3-api-msg-extensions-filters-network-http-connection-manager-v3-rds).
// Each update is compiled once per connection manager with its filters'
// per-route config types; errors name the route configuration
// (`route_configuration "name".virtual_hosts[0]...`).
func buildRDS(rds *hcmv3.Rds, statPrefix string, stripping router.PortStripping, fctx httpfilter.BuildContext, server any, path string) (*connmgr.DynamicRoutes, error) {
	rs, ok := server.(routeConfigs)
	if !ok {
		return nil, configerr.At(path, "rds needs the server's xDS client (internal error)")
	}
	name := rds.GetRouteConfigName()
	routes := connmgr.NewDynamicRoutes(func(m any) (connmgr.RouteResolver, error) {
		rc, ok := m.(*routev3.RouteConfiguration)
		if !ok {
			return nil, fmt.Errorf("rds: unexpected %T", m)
		}
		table, err := router.Build(rc, router.BuildContext{Path: fmt.Sprintf("route_configuration %q", name), FilterContext: fctx})
		if err != nil {
			return nil, err
		}
		return &resolver{table: table, stripping: stripping}, nil
	})
	if err := rs.WatchRouteConfig(rds.GetConfigSource(), name, statPrefix, routes); err != nil {
		// A route configuration that does not build here carries its own
		// paths; a config source problem is the config_source's.
		var l configerr.List
		var fe *configerr.FieldError
		if errors.As(err, &l) || errors.As(err, &fe) {
			return nil, err
		}
		return nil, configerr.At(path+".config_source", "%v", err)
	}
	return routes, nil
}
