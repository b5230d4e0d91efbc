package router

import (
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	irouter "github.com/herald-proxy/herald/internal/router"
	"github.com/herald-proxy/herald/internal/upstream"
)

func init() {
	httpfilter.Register(httpfilter.Extension[*routerv3.Router]{
		Name:     "envoy.filters.http.router",
		Config:   &routerv3.Router{},
		Build:    Build,
		Terminal: true,
	})
}

// Build reads a Router config once per snapshot.
func Build(cfg *routerv3.Router, ctx httpfilter.BuildContext) (httpfilter.Factory, error) {
	// dynamic_stats (default true) and start_child_span (tracing, which the
	// connection manager refuses) change nothing herald emits; any other set
	// field is an error naming it (STYLE.md §5).
	errs := configerr.RejectUnlisted(cfg, ctx.Path, nil, "suppress_envoy_headers", "dynamic_stats", "start_child_span")
	if err := errs.Err(); err != nil {
		return nil, err
	}
	mgr, _ := ctx.Clusters.(*upstream.Manager)
	// Upstream connection pools are the clusters' (upstream.Host.HTTP2),
	// not the filter's: rebuilding the filter on a listener or route
	// update leaves them open.
	fc := irouter.NewFilterConfig(mgr, ctx.Stats, ctx.StatPrefix, cfg.GetSuppressEnvoyHeaders())
	return fc.NewFilter, nil
}
