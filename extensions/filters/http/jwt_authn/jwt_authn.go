package jwtauthn

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/router"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/tlsx"
	"github.com/herald-proxy/herald/internal/upstream"
)

func init() {
	httpfilter.Register(httpfilter.Extension[*jwtauthnv3.JwtAuthentication]{
		Name:          Name,
		Config:        &jwtauthnv3.JwtAuthentication{},
		PerRoute:      &jwtauthnv3.PerRouteConfig{},
		Build:         Build,
		BuildPerRoute: BuildPerRoute,
	})
}

// Name is the filter's Envoy name; it is also the dynamic metadata
// namespace payload_in_metadata and header_in_metadata write to.
const Name = "envoy.filters.http.jwt_authn"

// Envoy's defaults.
const (
	// defaultClockSkew is jwt_verify_lib's kClockSkewInSecond, used when
	// clock_skew_seconds is 0.
	defaultClockSkew = 60
	// defaultCacheDuration is RemoteJwks.cache_duration's default ("If
	// not specified, default cache duration is 10 minutes").
	defaultCacheDuration = 10 * time.Minute
)

var (
	authnFields    = []string{"providers", "rules", "bypass_cors_preflight", "requirement_map", "strip_failure_response", "stat_prefix"}
	providerFields = []string{
		"issuer", "audiences", "remote_jwks", "local_jwks", "forward", "from_headers", "from_params", "from_cookies",
		"forward_payload_header", "pad_forward_payload_header", "payload_in_metadata", "header_in_metadata",
		"clock_skew_seconds", "claim_to_headers", "clear_route_cache",
	}
	issues = map[string]string{
		"filter_state_rules": "#8", "subjects": "#8", "require_expiration": "#8", "max_lifetime": "#8",
		"normalize_payload_in_metadata": "#8", "failed_status_in_metadata": "#8", "jwt_cache_config": "#8",
		"async_fetch": "#8", "retry_policy": "#8", "extract_only_without_validation": "#8",
	}
)

// Config is the built JwtAuthentication. Immutable after Build, except
// the remote JWKS caches, which are safe for concurrent use.
type Config struct {
	name         string // the filter's name in http_filters
	rules        []rule
	requirements map[string]verifier
	// requirementNames is the sorted, comma-joined requirement_map keys,
	// for the wrong requirement_name reply.
	requirementNames string
	bypassCORS       bool
	stripFailure     bool
	// claimHeaders are every provider's claim_to_headers names, removed
	// from every request ("sanitized from the request for every provider
	// configured on the filter (including on paths that bypass JWT
	// verification)").
	claimHeaders []string

	// Envoy's JwtAuthnFilterStats, under
	// http.<stat_prefix>.jwt_authn.[<JwtAuthentication.stat_prefix>].
	allowed, denied, corsBypassed *stats.Counter

	// now is the clock; time.Now outside tests.
	now  func() time.Time
	pool sync.Pool
}

// rule is a built RequirementRule; v is nil when the rule requires nothing.
type rule struct {
	match routeMatcher
	v     verifier
}

// perRoute is a built PerRouteConfig.
type perRoute struct {
	disabled bool
	name     string
}

// builder holds what requirements are built from.
type builder struct {
	providers map[string]*provider
	// all extracts the tokens of every provider (allow_missing,
	// allow_missing_or_failed).
	all  *extractor
	errs configerr.List
}

// Build interprets the filter's JwtAuthentication once per snapshot.
func Build(cfg *jwtauthnv3.JwtAuthentication, ctx httpfilter.BuildContext) (httpfilter.Factory, error) {
	path := ctx.Path
	base := ctx.StatPrefix + "jwt_authn." + cfg.GetStatPrefix()
	c := &Config{
		name:         ctx.Name,
		bypassCORS:   cfg.GetBypassCorsPreflight(),
		stripFailure: cfg.GetStripFailureResponse(),
		allowed:      ctx.Stats.Counter(base + "allowed"),
		denied:       ctx.Stats.Counter(base + "denied"),
		corsBypassed: ctx.Stats.Counter(base + "cors_preflight_bypassed"),
		requirements: make(map[string]verifier, len(cfg.GetRequirementMap())),
		now:          time.Now,
	}
	if c.name == "" {
		c.name = Name
	}
	b := &builder{providers: make(map[string]*provider, len(cfg.GetProviders()))}
	b.errs = append(b.errs, configerr.RejectUnlisted(cfg, path, issues, authnFields...)...)

	fetchSuccess := ctx.Stats.Counter(base + "jwks_fetch_success")
	fetchFailed := ctx.Stats.Counter(base + "jwks_fetch_failed")
	names := sortedKeys(cfg.GetProviders())
	ordered := make([]*provider, 0, len(names))
	for _, name := range names {
		p := b.provider(name, cfg.GetProviders()[name], path+".providers["+name+"]", ctx, fetchSuccess, fetchFailed)
		if p != nil {
			b.providers[name] = p
			ordered = append(ordered, p)
			for _, ch := range p.claimHeaders {
				if !slices.Contains(c.claimHeaders, ch.header) {
					c.claimHeaders = append(c.claimHeaders, ch.header)
				}
			}
		}
	}
	b.all = newExtractor(ordered)

	reqNames := sortedKeys(cfg.GetRequirementMap())
	for _, name := range reqNames {
		c.requirements[name] = b.requirement(cfg.GetRequirementMap()[name], path+".requirement_map["+name+"]")
	}
	c.requirementNames = strings.Join(reqNames, ",")

	for i, r := range cfg.GetRules() {
		rp := fmt.Sprintf("%s.rules[%d]", path, i)
		rl := rule{match: buildRouteMatcher(r.GetMatch(), rp+".match", &b.errs)}
		switch rt := r.GetRequirementType().(type) {
		case *jwtauthnv3.RequirementRule_Requires:
			rl.v = b.requirement(rt.Requires, rp+".requires")
		case *jwtauthnv3.RequirementRule_RequirementName:
			v, ok := c.requirements[rt.RequirementName]
			if !ok {
				// Envoy: "Wrong requirement_name: X. It should be one of [a,b]".
				b.errs = append(b.errs, configerr.At(rp+".requirement_name",
					"Wrong requirement_name: %s. It should be one of [%s]", rt.RequirementName, c.requirementNames))
			}
			rl.v = v
		}
		c.rules = append(c.rules, rl)
	}
	if err := b.errs.Err(); err != nil {
		return nil, err
	}
	return c.newFilter, nil
}

// BuildPerRoute interprets a PerRouteConfig: disabled, or the
// requirement_name of a requirement_map entry (looked up per request, as
// Envoy does: an unknown name is a 403 for the route's requests).
func BuildPerRoute(m proto.Message, ctx httpfilter.BuildContext) (any, error) {
	pr, ok := m.(*jwtauthnv3.PerRouteConfig)
	if !ok {
		return nil, fmt.Errorf("%s: per-route config is %T", Name, m)
	}
	switch s := pr.GetRequirementSpecifier().(type) {
	case *jwtauthnv3.PerRouteConfig_Disabled:
		return &perRoute{disabled: s.Disabled}, nil
	case *jwtauthnv3.PerRouteConfig_RequirementName:
		return &perRoute{name: s.RequirementName}, nil
	}
	return nil, configerr.At(ctx.Path, "one of disabled or requirement_name is required")
}

func (b *builder) provider(name string, pc *jwtauthnv3.JwtProvider, path string, ctx httpfilter.BuildContext, success, failed *stats.Counter) *provider {
	n := len(b.errs)
	b.errs = append(b.errs, configerr.RejectUnlisted(pc, path, issues, providerFields...)...)
	p := &provider{
		name:                 name,
		issuer:               pc.GetIssuer(),
		audiences:            newAudiences(pc.GetAudiences()),
		forward:              pc.GetForward(),
		forwardPayloadHeader: strings.ToLower(pc.GetForwardPayloadHeader()),
		padForwardPayload:    pc.GetPadForwardPayloadHeader(),
		payloadInMetadata:    pc.GetPayloadInMetadata(),
		headerInMetadata:     pc.GetHeaderInMetadata(),
		clearRouteCache:      pc.GetClearRouteCache(),
		skew:                 uint64(pc.GetClockSkewSeconds()),
	}
	if p.skew == 0 {
		p.skew = defaultClockSkew
	}
	for _, h := range pc.GetFromHeaders() {
		p.locations = append(p.locations, location{kind: fromHeader, name: strings.ToLower(h.GetName()), prefix: h.GetValuePrefix()})
	}
	for _, q := range pc.GetFromParams() {
		p.locations = append(p.locations, location{kind: fromParam, name: q})
	}
	for _, ck := range pc.GetFromCookies() {
		p.locations = append(p.locations, location{kind: fromCookie, name: ck})
	}
	if len(p.locations) == 0 {
		p.locations = []location{
			{kind: fromHeader, name: defaultHeader, prefix: defaultValuePrefix},
			{kind: fromParam, name: defaultParam},
		}
	}
	for i, ch := range pc.GetClaimToHeaders() {
		cp := fmt.Sprintf("%s.claim_to_headers[%d]", path, i)
		c := claimHeader{header: strings.ToLower(ch.GetHeaderName())}
		switch {
		case ch.GetClaimName() != "" && len(ch.GetClaimPath()) > 0:
			b.errs = append(b.errs, configerr.At(cp, "exactly one of claim_name and claim_path must be set"))
		case ch.GetClaimName() != "":
			c.path = strings.Split(ch.GetClaimName(), ".")
		case len(ch.GetClaimPath()) > 0:
			for _, seg := range ch.GetClaimPath() {
				c.path = append(c.path, seg.GetKey())
			}
		default:
			b.errs = append(b.errs, configerr.At(cp, "exactly one of claim_name and claim_path must be set"))
		}
		p.claimHeaders = append(p.claimHeaders, c)
	}

	switch src := pc.GetJwksSourceSpecifier().(type) {
	case *jwtauthnv3.JwtProvider_LocalJwks:
		data, ferr := tlsx.LoadDataSource(src.LocalJwks, path+".local_jwks")
		if ferr != nil {
			b.errs = append(b.errs, ferr)
			break
		}
		// herald refuses a local JWKS without a usable key at load time;
		// Envoy logs a warning and fails every request of the provider.
		ks, st := parseJWKS(data)
		if st != statusOK {
			b.errs = append(b.errs, configerr.At(path+".local_jwks", "%s", st))
			break
		}
		p.local = ks
	case *jwtauthnv3.JwtProvider_RemoteJwks:
		p.remote = b.remote(src.RemoteJwks, path+".remote_jwks", ctx, success, failed)
	default:
		b.errs = append(b.errs, configerr.At(path, "one of remote_jwks or local_jwks is required"))
	}
	if len(b.errs) > n {
		return nil
	}
	return p
}

func (b *builder) remote(rj *jwtauthnv3.RemoteJwks, path string, ctx httpfilter.BuildContext, success, failed *stats.Counter) *remoteJwks {
	b.errs = append(b.errs, configerr.RejectUnlisted(rj, path, issues, "http_uri", "cache_duration")...)
	uri := rj.GetHttpUri()
	if uri == nil {
		b.errs = append(b.errs, configerr.At(path+".http_uri", "is required"))
		return nil
	}
	r := &remoteJwks{
		ttl:          defaultCacheDuration,
		timeout:      uri.GetTimeout().AsDuration(),
		fetchSuccess: success,
		fetchFailed:  failed,
	}
	if d := rj.GetCacheDuration(); d != nil {
		r.ttl = d.AsDuration()
	}
	var err error
	if r.scheme, r.host, r.path, err = parseURI(uri.GetUri()); err != nil {
		// Envoy: "Provider '<name>' has an invalid URI: '<uri>'".
		b.errs = append(b.errs, configerr.At(path+".http_uri.uri", "invalid URI: %v", err))
		return nil
	}
	mgr, _ := ctx.Clusters.(*upstream.Manager)
	client, err := router.NewAsyncClient(mgr, ctx.Stats, uri.GetCluster(), router.AsyncOptions{Timeout: r.timeout})
	if err != nil {
		b.errs = append(b.errs, configerr.At(path+".http_uri.cluster", "%v", err))
		return nil
	}
	r.client = client
	return r
}

// requirement compiles a JwtRequirement (Envoy's innerCreate).
func (b *builder) requirement(r *jwtauthnv3.JwtRequirement, path string) verifier {
	switch rt := r.GetRequiresType().(type) {
	case *jwtauthnv3.JwtRequirement_ProviderName:
		return b.providerVerifier(rt.ProviderName, nil, path+".provider_name")
	case *jwtauthnv3.JwtRequirement_ProviderAndAudiences:
		pa := rt.ProviderAndAudiences
		return b.providerVerifier(pa.GetProviderName(), pa.GetAudiences(), path+".provider_and_audiences.provider_name")
	case *jwtauthnv3.JwtRequirement_RequiresAny:
		a := &anyVerifier{}
		for i, c := range rt.RequiresAny.GetRequirements() {
			switch c.GetRequiresType().(type) {
			case *jwtauthnv3.JwtRequirement_AllowMissingOrFailed:
				a.allowFailed = true
			case *jwtauthnv3.JwtRequirement_AllowMissing:
				a.allowMissing = true
			default:
				a.children = append(a.children, b.requirement(c, fmt.Sprintf("%s.requires_any.requirements[%d]", path, i)))
			}
		}
		// Envoy: a requires_any of only allow_missing[_or_failed] checks
		// the tokens of every provider.
		if len(a.children) == 0 && (a.allowFailed || a.allowMissing) {
			a.children = append(a.children, &allowVerifier{ex: b.all, failed: a.allowFailed})
		}
		return a
	case *jwtauthnv3.JwtRequirement_RequiresAll:
		a := &allVerifier{}
		for i, c := range rt.RequiresAll.GetRequirements() {
			a.children = append(a.children, b.requirement(c, fmt.Sprintf("%s.requires_all.requirements[%d]", path, i)))
		}
		return a
	case *jwtauthnv3.JwtRequirement_AllowMissingOrFailed:
		return &allowVerifier{ex: b.all, failed: true}
	case *jwtauthnv3.JwtRequirement_AllowMissing:
		return &allowVerifier{ex: b.all}
	case nil:
		return allowAllVerifier{}
	default:
		b.errs = append(b.errs, configerr.RejectUnlisted(r, path, issues,
			"provider_name", "provider_and_audiences", "requires_any", "requires_all", "allow_missing_or_failed", "allow_missing")...)
		return allowAllVerifier{}
	}
}

func (b *builder) providerVerifier(name string, aud []string, path string) verifier {
	p, ok := b.providers[name]
	if !ok {
		// Envoy: "Required provider ['<name>'] is not configured."
		b.errs = append(b.errs, configerr.At(path, "Required provider ['%s'] is not configured.", name))
		return allowAllVerifier{}
	}
	pv := &providerVerifier{p: p, ex: newExtractor([]*provider{p})}
	if len(aud) > 0 {
		pv.aud = newAudiences(aud)
	}
	return pv
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
