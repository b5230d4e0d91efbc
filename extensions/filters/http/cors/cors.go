package cors

import (
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/fractional"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/matcher"
	"github.com/herald-proxy/herald/internal/stats"
)

func init() {
	httpfilter.Register(httpfilter.Extension[*corsv3.Cors]{
		Name:          Name,
		Config:        &corsv3.Cors{},
		PerRoute:      &corsv3.CorsPolicy{},
		Build:         Build,
		BuildPerRoute: BuildPerRoute,
	})
}

// Envoy's strings (cors_filter.cc).
const (
	// Name is the filter's Envoy name.
	Name = "envoy.filters.http.cors"
	// DetailsPreflight is the response_code_details of a preflight answered
	// by the filter.
	DetailsPreflight = "cors_response"

	hdrOrigin              = "origin"
	hdrRequestMethod       = "access-control-request-method"
	hdrRequestHeaders      = "access-control-request-headers"
	hdrRequestPrivateNet   = "access-control-request-private-network"
	hdrAllowOrigin         = "access-control-allow-origin"
	hdrAllowCredentials    = "access-control-allow-credentials"
	hdrAllowMethods        = "access-control-allow-methods"
	hdrAllowHeaders        = "access-control-allow-headers"
	hdrMaxAge              = "access-control-max-age"
	hdrExposeHeaders       = "access-control-expose-headers"
	hdrAllowPrivateNetwork = "access-control-allow-private-network"
)

// Policy is one built CorsPolicy (one level's typed_per_filter_config).
// Immutable. A tri-state field is nil when unset, so that a less specific
// level can supply it, as Envoy's CorsFilter walks its policies.
type Policy struct {
	allowOrigins                 []matcher.String
	allowMethods                 string
	allowHeaders                 string
	exposeHeaders                string
	maxAge                       string
	allowCredentials             *bool
	allowPrivateNetworkAccess    *bool
	forwardNotMatchingPreflights *bool
	enabled, shadow              fractional.Percent
}

// Config is the built filter: the stats. The Cors message has no fields.
type Config struct {
	name                       string
	originValid, originInvalid *stats.Counter
}

// Build interprets the filter's (empty) Cors config once per snapshot.
func Build(cfg *corsv3.Cors, ctx httpfilter.BuildContext) (httpfilter.Factory, error) {
	if err := configerr.RejectUnlisted(cfg, ctx.Path, nil).Err(); err != nil {
		return nil, err
	}
	// Envoy: CorsFilterConfig(stats_prefix + "cors.") under the connection
	// manager's "http.<stat_prefix>.".
	sc := ctx.Stats.Scope(ctx.StatPrefix + "cors.")
	c := &Config{name: ctx.Name, originValid: sc.Counter("origin_valid"), originInvalid: sc.Counter("origin_invalid")}
	if c.name == "" {
		c.name = Name
	}
	return c.newFilter, nil
}

// BuildPerRoute compiles a CorsPolicy.
func BuildPerRoute(m proto.Message, ctx httpfilter.BuildContext) (any, error) {
	cfg := m.(*corsv3.CorsPolicy)
	var errs configerr.List
	p := &Policy{
		allowMethods:  cfg.GetAllowMethods(),
		allowHeaders:  cfg.GetAllowHeaders(),
		exposeHeaders: cfg.GetExposeHeaders(),
		maxAge:        cfg.GetMaxAge(),
		// Envoy's CorsPolicyImplBase: enabled unless filter_enabled says
		// otherwise; shadow only when shadow_enabled is set.
		enabled: fractional.Runtime(cfg.GetFilterEnabled(), fractional.Always),
		shadow:  fractional.Runtime(cfg.GetShadowEnabled(), fractional.Never),
	}
	for i, sm := range cfg.GetAllowOriginStringMatch() {
		m, ok := matcher.NewString(sm, ctx.Path+".allow_origin_string_match["+itoa(i)+"]", &errs)
		if ok {
			p.allowOrigins = append(p.allowOrigins, m)
		}
	}
	p.allowCredentials = boolPtr(cfg.GetAllowCredentials() != nil, cfg.GetAllowCredentials().GetValue())
	p.allowPrivateNetworkAccess = boolPtr(cfg.GetAllowPrivateNetworkAccess() != nil, cfg.GetAllowPrivateNetworkAccess().GetValue())
	p.forwardNotMatchingPreflights = boolPtr(cfg.GetForwardNotMatchingPreflights() != nil, cfg.GetForwardNotMatchingPreflights().GetValue())
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

func boolPtr(set, v bool) *bool {
	if !set {
		return nil
	}
	return &v
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
