package fault

import (
	"strconv"
	"sync"
	"time"

	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/fractional"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/matcher"
	"github.com/herald-proxy/herald/internal/stats"
)

func init() {
	httpfilter.Register(httpfilter.Extension[*faultv3.HTTPFault]{
		Name:          Name,
		Config:        &faultv3.HTTPFault{},
		PerRoute:      &faultv3.HTTPFault{},
		Build:         Build,
		BuildPerRoute: BuildPerRoute,
	})
}

// Envoy's strings (fault_filter.cc, fault_config.h).
const (
	// Name is the filter's Envoy name.
	Name = "envoy.filters.http.fault"
	// Details is the response_code_details of an injected abort.
	Details = "fault_filter_abort"
	// defaultBody is the abort reply's body unless response_body is set.
	defaultBody = "fault filter abort"

	hdrAbort             = "x-envoy-fault-abort-request"
	hdrAbortGRPC         = "x-envoy-fault-abort-grpc-request"
	hdrAbortPercentage   = "x-envoy-fault-abort-request-percentage"
	hdrDelay             = "x-envoy-fault-delay-request"
	hdrDelayPercentage   = "x-envoy-fault-delay-request-percentage"
	hdrDownstreamCluster = "x-envoy-downstream-service-cluster"
	hdrDownstreamNode    = "x-envoy-downstream-service-node"
)

// supported are the HTTPFault fields herald interprets. The *_runtime
// fields only name runtime keys; herald has no runtime layer, so the
// configured values apply, as in Envoy while those keys are unset.
var supported = []string{
	"delay", "abort", "headers", "downstream_nodes", "max_active_faults",
	"delay_percent_runtime", "abort_percent_runtime", "delay_duration_runtime",
	"abort_http_status_runtime", "max_active_faults_runtime",
	"abort_grpc_status_runtime", "disable_downstream_cluster_stats",
}

var unsupportedIssues = map[string]string{
	"upstream_cluster":                    "#8",
	"response_rate_limit":                 "#8",
	"response_rate_limit_percent_runtime": "#8",
	"filter_metadata":                     "#8",
}

// Settings is one built HTTPFault: the filter's, or a route's (which
// replaces it whole, as Envoy's resolveMostSpecificPerFilterConfig).
// Immutable.
type Settings struct {
	headers         []matcher.Header
	downstreamNodes map[string]struct{}
	maxActiveFaults uint64 // 0 with hasMax false: unlimited

	hasMax              bool
	disableClusterStats bool

	delay *delaySettings
	abort *abortSettings
}

type delaySettings struct {
	fixed      time.Duration // 0 with fromHeader
	fromHeader bool
	percentage fractional.Percent
}

type abortSettings struct {
	httpStatus int // 0 when grpc or header
	grpcStatus int
	hasGRPC    bool
	fromHeader bool
	percentage fractional.Percent
	body       string
}

// Config is the built filter.
type Config struct {
	name     string
	settings *Settings
	stats    filterStats
	store    stats.Scope // http.<prefix>.fault., for per-downstream-cluster stats
}

type filterStats struct {
	delaysInjected, abortsInjected, faultsOverflow, responseRLInjected *stats.Counter
	activeFaults                                                       *stats.Gauge
}

// Build interprets the filter's HTTPFault once per snapshot.
func Build(cfg *faultv3.HTTPFault, ctx httpfilter.BuildContext) (httpfilter.Factory, error) {
	s, err := buildSettings(cfg, ctx.Path)
	if err != nil {
		return nil, err
	}
	// Envoy: FaultFilterConfig::generateStats(stats_prefix + "fault.") with
	// the connection manager's "http.<stat_prefix>.".
	sc := ctx.Stats.Scope(ctx.StatPrefix + "fault.")
	c := &Config{
		name:     ctx.Name,
		settings: s,
		store:    sc,
		stats: filterStats{
			delaysInjected:     sc.Counter("delays_injected"),
			abortsInjected:     sc.Counter("aborts_injected"),
			faultsOverflow:     sc.Counter("faults_overflow"),
			responseRLInjected: sc.Counter("response_rl_injected"),
			activeFaults:       sc.Gauge("active_faults"),
		},
	}
	if c.name == "" {
		c.name = Name
	}
	return c.newFilter, nil
}

// BuildPerRoute interprets a route's HTTPFault.
func BuildPerRoute(m proto.Message, ctx httpfilter.BuildContext) (any, error) {
	return buildSettings(m.(*faultv3.HTTPFault), ctx.Path)
}

func buildSettings(cfg *faultv3.HTTPFault, path string) (*Settings, error) {
	errs := configerr.RejectUnlisted(cfg, path, unsupportedIssues, supported...)
	s := &Settings{disableClusterStats: cfg.GetDisableDownstreamClusterStats()}
	for i, hm := range cfg.GetHeaders() {
		m, ok := matcher.NewHeader(hm, path+".headers["+strconv.Itoa(i)+"]", &errs)
		if ok {
			s.headers = append(s.headers, m)
		}
	}
	if nodes := cfg.GetDownstreamNodes(); len(nodes) > 0 {
		s.downstreamNodes = make(map[string]struct{}, len(nodes))
		for _, n := range nodes {
			s.downstreamNodes[n] = struct{}{}
		}
	}
	if v := cfg.GetMaxActiveFaults(); v != nil {
		s.hasMax, s.maxActiveFaults = true, uint64(v.GetValue())
	}
	if d := cfg.GetDelay(); d != nil {
		ds := &delaySettings{percentage: fractional.New(d.GetPercentage())}
		switch spec := d.GetFaultDelaySecifier().(type) {
		case *faultcommonv3.FaultDelay_FixedDelay:
			ds.fixed = spec.FixedDelay.AsDuration()
		case *faultcommonv3.FaultDelay_HeaderDelay_:
			ds.fromHeader = true
		default:
			errs = append(errs, configerr.At(path+".delay", "fixed_delay or header_delay is required"))
		}
		s.delay = ds
	}
	if a := cfg.GetAbort(); a != nil {
		as := &abortSettings{percentage: fractional.New(a.GetPercentage()), body: a.GetResponseBody()}
		if as.body == "" {
			as.body = defaultBody
		}
		switch spec := a.GetErrorType().(type) {
		case *faultv3.FaultAbort_HttpStatus:
			as.httpStatus = int(spec.HttpStatus)
		case *faultv3.FaultAbort_GrpcStatus:
			as.hasGRPC, as.grpcStatus = true, int(spec.GrpcStatus)
		case *faultv3.FaultAbort_HeaderAbort_:
			as.fromHeader = true
		default:
			errs = append(errs, configerr.At(path+".abort", "http_status, grpc_status or header_abort is required"))
		}
		s.abort = as
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

var filterPool = sync.Pool{New: func() any { return &Filter{} }}

// newFilter is the per-stream constructor; filters are pooled.
func (c *Config) newFilter(cb httpfilter.Callbacks) httpfilter.Filter {
	f := filterPool.Get().(*Filter)
	f.cfg, f.cb = c, cb
	return f
}
