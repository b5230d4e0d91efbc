package router

import (
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/http/codec/http2"
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
	var errs configerr.List
	if len(cfg.GetUpstreamLog()) > 0 {
		errs = append(errs, configerr.At(ctx.Path+".upstream_log", "upstream_log is not supported by herald yet"))
	}
	if len(cfg.GetUpstreamHttpFilters()) > 0 {
		errs = append(errs, configerr.At(ctx.Path+".upstream_http_filters", "upstream_http_filters are not supported by herald yet"))
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	mgr, _ := ctx.Clusters.(*upstream.Manager)
	h2, err := http2.NewClient(http2.ClientOptions{})
	if err != nil {
		return nil, err
	}
	fc := irouter.NewFilterConfig(mgr, ctx.Stats, ctx.StatPrefix, cfg.GetSuppressEnvoyHeaders(), h2)
	return fc.NewFilter, nil
}
