package ratelimit

import (
	"errors"
	"sync"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/fractional"
	"github.com/herald-proxy/herald/internal/grpcservice"
	"github.com/herald-proxy/herald/internal/http/headeroption"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/router"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream"
)

func init() {
	httpfilter.Register(httpfilter.Extension[*rlv3.RateLimit]{
		Name:          Name,
		Config:        &rlv3.RateLimit{},
		PerRoute:      &rlv3.RateLimitPerRoute{},
		Build:         Build,
		BuildPerRoute: BuildPerRoute,
	})
}

// Envoy's strings (source/extensions/filters/http/ratelimit/ratelimit.cc).
const (
	// Name is the filter's Envoy name.
	Name = "envoy.filters.http.ratelimit"
	// DetailsRateLimited is the response_code_details of an OVER_LIMIT
	// reply.
	DetailsRateLimited = "request_rate_limited"
	// DetailsError is the response_code_details when the service failed
	// and failure_mode_deny is set.
	DetailsError = "rate_limiter_error"
	// HeaderRateLimited is set to "true" on OVER_LIMIT replies unless
	// disable_x_envoy_ratelimited_header.
	HeaderRateLimited = "x-envoy-ratelimited"

	headerInternal  = "x-envoy-internal"
	headerLimit     = "x-ratelimit-limit"
	headerRemaining = "x-ratelimit-remaining"
	headerReset     = "x-ratelimit-reset"

	// defaultTimeout: "The timeout in milliseconds for the rate limit
	// service RPC. If not set, this defaults to 20ms."
	defaultTimeout = 20 * time.Millisecond
)

// requestType is RateLimit.request_type.
type requestType uint8

const (
	requestBoth requestType = iota
	requestInternal
	requestExternal
)

// supported are the RateLimit fields herald interprets; any other set field
// is an error naming it.
var supported = []string{
	"domain", "stage", "request_type", "timeout", "failure_mode_deny",
	"rate_limited_as_resource_exhausted", "rate_limit_service", "enable_x_ratelimit_headers",
	"disable_x_envoy_ratelimited_header", "rate_limited_status", "response_headers_to_add",
	"status_on_error", "filter_enabled", "filter_enforced",
}

var unsupportedIssues = map[string]string{
	"stat_prefix":               "#8",
	"failure_mode_deny_percent": "#8",
	"rate_limits":               "#8",
	"metadata_namespace":        "#8",
	"enable_retry_after_header": "#8",
}

// serverInfo is how the filter learns the local service cluster
// (node.cluster, --service-cluster) for the source_cluster action.
type serverInfo interface {
	ServerInfo() *adminv3.ServerInfo
}

// Config is one built RateLimit filter. Immutable after Build, except the
// lazily filled per-cluster stats cache.
type Config struct {
	name              string // the filter's name in http_filters
	domain            string
	stage             uint32
	requestType       requestType
	timeout           time.Duration
	failureModeDeny   bool
	resourceExhausted bool
	xRateLimitHeaders bool
	xEnvoyRateLimited bool
	rateLimitedStatus int
	errorStatus       int
	enabled, enforced fractional.Percent
	responseHeaders   headeroption.List
	localCluster      string

	svc      *grpcservice.Service
	client   rlsv3.RateLimitServiceClient
	clusters *upstream.Manager // nil in unit tests: every cluster exists

	store        *stats.Store
	clusterStats sync.Map // cluster name → *clusterStats
	pool         sync.Pool
}

// clusterStats are Envoy's cluster.<route target cluster>.ratelimit.*
// counters.
type clusterStats struct {
	ok, overLimit, err, failureModeAllowed *stats.Counter
}

// PerRoute is a built RateLimitPerRoute. Immutable.
type PerRoute struct {
	vh     router.VhRateLimits
	domain string
}

// Build interprets the filter's RateLimit once per snapshot.
func Build(cfg *rlv3.RateLimit, ctx httpfilter.BuildContext) (httpfilter.Factory, error) {
	path := ctx.Path
	errs := configerr.RejectUnlisted(cfg, path, unsupportedIssues, supported...)
	c := &Config{
		name:              ctx.Name,
		domain:            cfg.GetDomain(),
		stage:             cfg.GetStage(),
		timeout:           defaultTimeout,
		failureModeDeny:   cfg.GetFailureModeDeny(),
		resourceExhausted: cfg.GetRateLimitedAsResourceExhausted(),
		xRateLimitHeaders: cfg.GetEnableXRatelimitHeaders() == rlv3.RateLimit_DRAFT_VERSION_03,
		xEnvoyRateLimited: !cfg.GetDisableXEnvoyRatelimitedHeader(),
		rateLimitedStatus: 429,
		errorStatus:       500,
		// Envoy: both default to 100% when unset.
		enabled:  fractional.Runtime(cfg.GetFilterEnabled(), fractional.Always),
		enforced: fractional.Runtime(cfg.GetFilterEnforced(), fractional.Always),
		store:    ctx.Stats,
	}
	if c.name == "" {
		c.name = Name
	}
	if c.stage > router.MaxRateLimitStage {
		errs = append(errs, configerr.At(path+".stage", "stage must be at most %d", router.MaxRateLimitStage))
	}
	switch cfg.GetRequestType() {
	case "", "both":
	case "internal":
		c.requestType = requestInternal
	case "external":
		c.requestType = requestExternal
	default:
		errs = append(errs, configerr.At(path+".request_type", "request_type must be internal, external or both"))
	}
	if cfg.GetTimeout() != nil {
		c.timeout = cfg.GetTimeout().AsDuration()
	}
	// Envoy: "If this is set to < 400, 429 will be used instead"; the
	// error status defaults to 500.
	if s := int(cfg.GetRateLimitedStatus().GetCode()); s >= 400 {
		c.rateLimitedStatus = s
	}
	if s := int(cfg.GetStatusOnError().GetCode()); s != 0 {
		c.errorStatus = s
	}
	c.responseHeaders = headeroption.CompileList(cfg.GetResponseHeadersToAdd(), path+".response_headers_to_add", &errs)
	if si, ok := ctx.ServerContext.(serverInfo); ok {
		c.localCluster = si.ServerInfo().GetNode().GetCluster()
	}
	if mgr, ok := ctx.Clusters.(*upstream.Manager); ok {
		c.clusters = mgr
	}

	rls := cfg.GetRateLimitService()
	rp := path + ".rate_limit_service"
	switch {
	case rls == nil:
		errs = append(errs, configerr.At(rp, "rate_limit_service is required"))
	case rls.GetTransportApiVersion() != corev3.ApiVersion_V3:
		errs = append(errs, configerr.At(rp+".transport_api_version", "transport_api_version must be V3 (Envoy rejects AUTO and V2)"))
	}
	if rls != nil {
		errs = append(errs, configerr.RejectUnlisted(rls, rp, nil, "grpc_service", "transport_api_version")...)
		svc, err := grpcservice.New(rls.GetGrpcService(), c.clusters)
		if err != nil {
			errs = append(errs, configerr.At(rp+".grpc_service", "%v", err))
		} else {
			c.svc = svc
			c.client = rlsv3.NewRateLimitServiceClient(svc.Conn)
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return c.newFilter, nil
}

// BuildPerRoute interprets a typed_per_filter_config RateLimitPerRoute.
func BuildPerRoute(m proto.Message, ctx httpfilter.BuildContext) (any, error) {
	cfg, ok := m.(*rlv3.RateLimitPerRoute)
	if !ok {
		return nil, errors.New("ratelimit: per-route config is not a RateLimitPerRoute")
	}
	path := ctx.Path
	errs := configerr.RejectUnlisted(cfg, path, map[string]string{"rate_limits": "#8"},
		"vh_rate_limits", "override_option", "domain")
	pr := &PerRoute{domain: cfg.GetDomain()}
	// Envoy's getRateLimitOverrideOption: override_option wins unless
	// DEFAULT, in which case vh_rate_limits applies (OVERRIDE, INCLUDE,
	// IGNORE).
	switch cfg.GetOverrideOption() {
	case rlv3.RateLimitPerRoute_OVERRIDE_POLICY:
		pr.vh = router.VhRateLimitsOverride
	case rlv3.RateLimitPerRoute_INCLUDE_POLICY:
		pr.vh = router.VhRateLimitsInclude
	case rlv3.RateLimitPerRoute_IGNORE_POLICY:
		pr.vh = router.VhRateLimitsIgnore
	default:
		switch cfg.GetVhRateLimits() {
		case rlv3.RateLimitPerRoute_INCLUDE:
			pr.vh = router.VhRateLimitsInclude
		case rlv3.RateLimitPerRoute_IGNORE:
			pr.vh = router.VhRateLimitsIgnore
		default:
			pr.vh = router.VhRateLimitsOverride
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return pr, nil
}

// statsFor returns the counters of the route's target cluster, creating
// them on first use; later lookups neither lock nor allocate.
func (c *Config) statsFor(cluster string) *clusterStats {
	if v, ok := c.clusterStats.Load(cluster); ok {
		return v.(*clusterStats)
	}
	// Envoy: cluster.<route target cluster>.ratelimit.
	sc := c.store.Scope("cluster." + cluster + ".ratelimit.")
	cs := &clusterStats{
		ok:                 sc.Counter("ok"),
		overLimit:          sc.Counter("over_limit"),
		err:                sc.Counter("error"),
		failureModeAllowed: sc.Counter("failure_mode_allowed"),
	}
	v, _ := c.clusterStats.LoadOrStore(cluster, cs)
	return v.(*clusterStats)
}
