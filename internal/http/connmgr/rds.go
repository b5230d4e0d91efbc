package connmgr

import (
	"sync/atomic"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

// DynamicRoutes is a route table that RDS replaces while connections run:
// the current resolver sits behind an atomic pointer, so each new stream —
// on a new or an existing connection — resolves with the table current when
// its headers arrive, a stream in flight keeps the route it matched, and no
// listener is rebuilt (Envoy: "route configuration ... is applied to new
// streams", https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/rds).
// Before the first table, Resolve finds no route.
//
// The RDS provider holds it weakly: once the listener that built it is gone
// and its connections are closed, it is collected and the provider stops
// building tables for it.
type DynamicRoutes struct {
	// build turns a route configuration, as the RDS provider delivers it
	// (opaque here: this package never sees protos), into a resolver.
	build func(rc any) (RouteResolver, error)
	cur   atomic.Pointer[routesBox]
}

type routesBox struct{ r RouteResolver }

var _ RouteResolver = (*DynamicRoutes)(nil)

// NewDynamicRoutes returns an empty table whose updates build is called for.
func NewDynamicRoutes(build func(rc any) (RouteResolver, error)) *DynamicRoutes {
	return &DynamicRoutes{build: build}
}

// Resolve implements RouteResolver: one atomic load, then the current
// table's Resolve.
func (d *DynamicRoutes) Resolve(h *hhttp.Headers, listenerPort uint16) httpfilter.Route {
	b := d.cur.Load()
	if b == nil {
		return nil
	}
	return b.r.Resolve(h, listenerPort)
}

// Prepare builds rc without installing it; commit installs it. A provider
// prepares every table that shares a route configuration first and commits
// them only when all built, so one bad update changes none of them.
func (d *DynamicRoutes) Prepare(rc any) (commit func(), err error) {
	r, err := d.build(rc)
	if err != nil {
		return nil, err
	}
	return func() { d.cur.Store(&routesBox{r: r}) }, nil
}

// Ready reports whether a table has been installed.
func (d *DynamicRoutes) Ready() bool { return d.cur.Load() != nil }
