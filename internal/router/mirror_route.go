package router

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/herald-proxy/herald/internal/upstream"
)

// Per-level settings of mirroring (mirror.go), priority (priority.go) and
// hedging (hedge.go), kept apart from the structs of route_table.go and
// action.go so those change by one field each.

// routeExt is a route's mirror policies, priority and hedge policy.
type routeExt struct {
	// mirrors are the route's request_mirror_policies, else its virtual
	// host's, else the route configuration's.
	mirrors  []*mirrorPolicy
	priority upstream.Priority
	// hedge is hedge_policy.hedge_on_per_try_timeout of the route's
	// hedge_policy, else of its virtual host's (Envoy's buildHedgePolicy).
	hedge bool
}

// vhostExt is a virtual host's mirror policies and hedge policy.
type vhostExt struct {
	mirrors []*mirrorPolicy // its own, else the route configuration's
	hedge   bool
}

// mirrorPolicies returns the mirror policies that apply to the route.
func (r *Route) mirrorPolicies() []*mirrorPolicy { return r.ext.mirrors }

// buildTableExt compiles the route configuration's request_mirror_policies.
func (b *builder) buildTableExt(t *Table, cfg *routev3.RouteConfiguration, p string) {
	t.mirrors = b.buildMirrorPolicies(cfg.GetRequestMirrorPolicies(), join(p, "request_mirror_policies"))
}

// buildVhostExt compiles a virtual host's request_mirror_policies and
// hedge_policy.
func (b *builder) buildVhostExt(vh *VirtualHost, cfg *routev3.VirtualHost, p string) {
	vh.ext.mirrors = b.buildMirrorPolicies(cfg.GetRequestMirrorPolicies(), p+".request_mirror_policies")
	if len(vh.ext.mirrors) == 0 {
		vh.ext.mirrors = vh.table.mirrors
	}
	vh.ext.hedge = buildHedgePolicy(cfg.GetHedgePolicy(), p+".hedge_policy", &b.errs)
}

// buildRouteExt compiles a route action's priority, request_mirror_policies
// and hedge_policy; r.vhost is set.
func (b *builder) buildRouteExt(r *Route, a *routev3.RouteAction, p string) {
	r.ext.priority = routePriority(a.GetPriority())
	r.ext.mirrors = b.buildMirrorPolicies(a.GetRequestMirrorPolicies(), p+".request_mirror_policies")
	if len(r.ext.mirrors) == 0 && r.vhost != nil {
		// Envoy: "the most specific non-empty one becomes the mirror
		// policies" (VirtualHost.request_mirror_policies).
		r.ext.mirrors = r.vhost.ext.mirrors
	}
	if hp := a.GetHedgePolicy(); hp != nil {
		r.ext.hedge = buildHedgePolicy(hp, p+".hedge_policy", &b.errs)
	} else if r.vhost != nil {
		r.ext.hedge = r.vhost.ext.hedge
	}
}
