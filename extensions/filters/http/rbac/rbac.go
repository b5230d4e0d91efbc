package rbac

import (
	"sync"

	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/rbac"
	"github.com/herald-proxy/herald/internal/stats"
)

func init() {
	httpfilter.Register(httpfilter.Extension[*rbachttpv3.RBAC]{
		Name:          Name,
		Config:        &rbachttpv3.RBAC{},
		PerRoute:      &rbachttpv3.RBACPerRoute{},
		Build:         Build,
		BuildPerRoute: BuildPerRoute,
	})
}

// Envoy's strings (rbac_filter.cc, filters/common/rbac/utility.cc).
const (
	// Name is the filter's Envoy name.
	Name = "envoy.filters.http.rbac"
	// Body is the body of the 403 local reply.
	Body = "RBAC: access denied"
)

var supported = []string{"rules", "rules_stat_prefix", "shadow_rules", "shadow_rules_stat_prefix"}

var unsupportedIssues = map[string]string{
	"matcher":              "#8",
	"shadow_matcher":       "#8",
	"track_per_rule_stats": "#8",
}

// Config is the filter's built RBAC. Immutable after Build.
type Config struct {
	name    string // the filter's name in http_filters
	engines Engines
	// Envoy's RoleBasedAccessControlFilterStats: rooted at
	// http.<stat_prefix>.rbac.[<rules_stat_prefix>] and
	// http.<stat_prefix>.rbac.[<shadow_rules_stat_prefix>]; a route's
	// RBACPerRoute counts into these too.
	allowed, denied             *stats.Counter
	shadowAllowed, shadowDenied *stats.Counter
	pool                        *sync.Pool
}

// Engines are the compiled rules and shadow_rules of an RBAC (the filter's
// or a route's RBACPerRoute); a nil engine is absent: it allows everything
// (enforced) or counts nothing (shadow). Immutable.
type Engines struct {
	enforced, shadow *rbac.Engine
	// needsCert: some rule reads the downstream TLS state (authenticated
	// principals), so the filter asks the stream for it.
	needsCert bool
}

// Build interprets the filter's RBAC once per snapshot.
func Build(cfg *rbachttpv3.RBAC, ctx httpfilter.BuildContext) (httpfilter.Factory, error) {
	var errs configerr.List
	eng := compileRBAC(cfg, ctx.Path, &errs)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	c := &Config{name: ctx.Name, engines: eng, pool: &sync.Pool{}}
	if c.name == "" {
		c.name = Name
	}
	// generateStats: statPrefixJoin(prefix, "rbac.") + rules prefix.
	base := ctx.StatPrefix + "rbac."
	c.allowed = ctx.Stats.Counter(base + cfg.GetRulesStatPrefix() + "allowed")
	c.denied = ctx.Stats.Counter(base + cfg.GetRulesStatPrefix() + "denied")
	c.shadowAllowed = ctx.Stats.Counter(base + cfg.GetShadowRulesStatPrefix() + "shadow_allowed")
	c.shadowDenied = ctx.Stats.Counter(base + cfg.GetShadowRulesStatPrefix() + "shadow_denied")
	return c.newFilter, nil
}

// BuildPerRoute interprets an RBACPerRoute: its rbac replaces the filter's
// rules and shadow_rules for the route; without rbac the filter lets every
// request of the route through. It returns Engines.
func BuildPerRoute(m proto.Message, ctx httpfilter.BuildContext) (any, error) {
	pr := m.(*rbachttpv3.RBACPerRoute)
	var errs configerr.List
	errs = append(errs, configerr.RejectUnlisted(pr, ctx.Path, nil, "rbac")...)
	eng := compileRBAC(pr.GetRbac(), ctx.Path+".rbac", &errs)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return &eng, nil
}

func compileRBAC(cfg *rbachttpv3.RBAC, path string, errs *configerr.List) Engines {
	if cfg == nil {
		return Engines{}
	}
	*errs = append(*errs, configerr.RejectUnlisted(cfg, path, unsupportedIssues, supported...)...)
	e := Engines{
		enforced: rbac.Compile(cfg.GetRules(), path+".rules", rbac.HTTPKinds, errs),
		shadow:   rbac.Compile(cfg.GetShadowRules(), path+".shadow_rules", rbac.HTTPKinds, errs),
	}
	e.needsCert = e.enforced.UsesTLS() || e.shadow.UsesTLS()
	return e
}

func (c *Config) newFilter(cb httpfilter.Callbacks) httpfilter.Filter {
	f, _ := c.pool.Get().(*Filter)
	if f == nil {
		f = &Filter{}
	}
	f.cfg, f.cb = c, cb
	return f
}

// Filter is the per-stream filter: a decoder that decides on the request
// headers. Owned by the stream goroutine.
type Filter struct {
	cfg *Config
	cb  httpfilter.Callbacks
}

// DecodeHeaders is Envoy's RoleBasedAccessControlFilter::decodeHeaders: the
// shadow engine counts, the enforced engine decides; a denial is a 403
// "RBAC: access denied" with response_code_details
// rbac_access_denied_matched_policy[<policy>|none].
func (f *Filter) DecodeHeaders(h *hhttp.Headers, _ bool) httpfilter.Status {
	c := f.cfg
	eng := &c.engines
	if r := f.cb.Route(); r != nil {
		if pr, ok := r.PerFilterConfig(c.name).(*Engines); ok {
			eng = pr
		}
	}
	if eng.enforced == nil && eng.shadow == nil {
		return httpfilter.Continue
	}
	info := f.cb.StreamInfo()
	q := rbac.Request{
		Headers:  h,
		Remote:   f.cb.DownstreamRemoteAddress(),
		Direct:   f.cb.DownstreamDirectRemoteAddress(),
		Local:    info.DownstreamLocalAddress,
		SNI:      info.RequestedServerName,
		Metadata: info.DynamicMetadata,
	}
	if eng.needsCert {
		q.TLS, q.PeerCert = httpfilter.DownstreamTLS(f.cb)
	}
	if eng.shadow != nil {
		if ok, _ := eng.shadow.Handle(&q); ok {
			c.shadowAllowed.Inc()
		} else {
			c.shadowDenied.Inc()
		}
	}
	if eng.enforced == nil {
		return httpfilter.Continue
	}
	ok, details := eng.enforced.Handle(&q)
	if ok {
		c.allowed.Inc()
		return httpfilter.Continue
	}
	c.denied.Inc()
	f.cb.SendLocalReply(403, Body, details, nil)
	return httpfilter.Stop
}

// DecodeData implements httpfilter.DecoderFilter.
func (f *Filter) DecodeData([]byte, bool) httpfilter.Status { return httpfilter.Continue }

// DecodeTrailers implements httpfilter.DecoderFilter.
func (f *Filter) DecodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Continue }

// OnDestroy implements httpfilter.Destroyer: the filter goes back to its
// config's pool.
func (f *Filter) OnDestroy() {
	pool := f.cfg.pool
	f.cfg, f.cb = nil, nil
	pool.Put(f)
}
