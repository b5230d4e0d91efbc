package router

import (
	"fmt"
	"sort"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/registry"
)

// filterConfigTypeURL is the wrapper Envoy accepts in typed_per_filter_config
// to mark a config optional or to disable a filter for a route.
var filterConfigTypeURL = registry.TypeURL(&routev3.FilterConfig{})

// perFilterConfigs is one level's typed_per_filter_config, keyed by the
// filter's name in the connection manager's http_filters. nil when empty.
type perFilterConfigs map[string]filterConfig

// filterConfig is one built per-route config. cfg is nil when the entry only
// disables or enables the filter, or names an optional filter herald lacks.
type filterConfig struct {
	cfg      any
	disabled bool
}

// buildPerFilterConfigs builds typed_per_filter_config as Envoy's
// PerFilterConfigs (router/per_filter_config.cc) does: the Any's type URL
// selects the filter (herald looks up the per-route config types filters
// register); an envoy.config.route.v3.FilterConfig wrapper may mark the
// config optional (skipped when no filter knows its type) or disabled (the
// filter is off for this route, virtual host or table).
func buildPerFilterConfigs(m map[string]*anypb.Any, path string, fctx httpfilter.BuildContext, errs *configerr.List) perFilterConfigs {
	if len(m) == 0 {
		return nil
	}
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names) // deterministic error order
	out := make(perFilterConfigs, len(m))
	for _, name := range names {
		a := m[name]
		p := fmt.Sprintf("%s[%s]", path, name) // bootstrap.Index spells map entries "[key]"
		if a.GetTypeUrl() == filterConfigTypeURL {
			var fc routev3.FilterConfig
			if err := a.UnmarshalTo(&fc); err != nil {
				*errs = append(*errs, configerr.At(p, "cannot unpack %s: %v", filterConfigTypeURL, err))
				continue
			}
			if fc.GetDisabled() {
				out[name] = filterConfig{disabled: true}
				continue
			}
			if fc.GetConfig() == nil {
				*errs = append(*errs, configerr.At(p+".config", "empty route/virtual host per filter configuration for %s filter", name))
				continue
			}
			if fc.GetConfig().GetTypeUrl() == "" {
				// Envoy: an empty config explicitly enables the filter.
				out[name] = filterConfig{}
				continue
			}
			cfg, ok := buildOnePerFilterConfig(name, fc.GetConfig(), fc.GetIsOptional(), p+".config", fctx, errs)
			if ok {
				out[name] = filterConfig{cfg: cfg}
			}
			continue
		}
		cfg, ok := buildOnePerFilterConfig(name, a, false, p, fctx, errs)
		if ok {
			out[name] = filterConfig{cfg: cfg}
		}
	}
	return out
}

func buildOnePerFilterConfig(name string, a *anypb.Any, optional bool, path string, fctx httpfilter.BuildContext, errs *configerr.List) (any, bool) {
	url := a.GetTypeUrl()
	entry, ok := httpfilter.PerRouteRegistry.ByTypeURL(url)
	if !ok {
		if e, isFilterConfig := httpfilter.Registry.ByTypeURL(url); isFilterConfig {
			// Envoy finds the factory by the filter's own config type too, then
			// unpacks into the per-route type; that only works when both are
			// the same message, which PerRouteRegistry would have found.
			if optional {
				return nil, true
			}
			if e.NewPerRoute == nil {
				*errs = append(*errs, configerr.At(path, "the filter %s doesn't support virtual host or route specific configurations", name))
			} else {
				*errs = append(*errs, configerr.At(path, "%s is the filter config type of %s; per-route config must be %s",
					url, e.Name, registry.TypeURL(e.NewPerRoute())))
			}
			return nil, false
		}
		if optional {
			// Envoy logs a warning and ignores the optional config.
			return nil, true
		}
		*errs = append(*errs, configerr.At(path, "didn't find a registered implementation for '%s' with type URL: '%s'", name, url))
		return nil, false
	}
	msg := entry.NewPerRoute()
	if err := a.UnmarshalTo(msg); err != nil {
		*errs = append(*errs, configerr.At(path, "cannot unpack %s: %v", url, err))
		return nil, false
	}
	// The loader's Validate() does not look inside Any; Envoy validates the
	// unpacked per-route config, so herald does too.
	if v, ok := msg.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			*errs = append(*errs, configerr.At(path, "%v", err))
			return nil, false
		}
	}
	ctx := fctx
	ctx.Path = path
	cfg, err := entry.BuildPerRoute(msg, ctx)
	if err != nil {
		*errs = append(*errs, configerr.Collect(err, path, nil)...)
		return nil, false
	}
	if cfg == nil {
		if optional {
			return nil, true
		}
		*errs = append(*errs, configerr.At(path, "the filter %s doesn't support virtual host or route specific configurations", name))
		return nil, false
	}
	return cfg, true
}

// get returns the built config of name, or nil (absent, disabled or only
// enabling).
func (p perFilterConfigs) get(name string) any {
	if p == nil {
		return nil
	}
	return p[name].cfg
}

// disabled reports whether this level disables (true) or enables (false)
// the filter, and whether it has an opinion.
func (p perFilterConfigs) disabled(name string) (disabled, set bool) {
	if p == nil {
		return false, false
	}
	fc, ok := p[name]
	return fc.disabled, ok
}

var _ httpfilter.PerFilterConfigLister = (*Route)(nil)

// AppendPerFilterConfigs implements httpfilter.PerFilterConfigLister: the
// table's, the virtual host's and the route's per-route configs of the
// filter called name, least specific first, skipping levels without one
// (Envoy's RouteEntryImplBase::traversePerFilterConfig, which filters that
// merge levels such as CORS and header_mutation use).
func (r *Route) AppendPerFilterConfigs(dst []any, name string) []any {
	for _, p := range [...]perFilterConfigs{r.vhost.table.perFilter, r.vhost.perFilter, r.perFilter} {
		if c := p.get(name); c != nil {
			dst = append(dst, c)
		}
	}
	return dst
}
