package grpcstats

import (
	"strings"
	"sync"
	"sync/atomic"

	grpcstatsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/grpc_stats/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/stats"
)

func init() {
	httpfilter.Register(httpfilter.Extension[*grpcstatsv3.FilterConfig]{
		Name:   Name,
		Config: &grpcstatsv3.FilterConfig{},
		Build:  Build,
	})
}

// Name is the filter's Envoy name.
const Name = "envoy.filters.http.grpc_stats"

// Stat names (source/common/grpc/context_impl.cc StatNames).
const (
	statSuccess              = "success"
	statFailure              = "failure"
	statTotal                = "total"
	statRequestMessageCount  = "request_message_count"
	statResponseMessageCount = "response_message_count"
	statUpstreamRqTime       = "upstream_rq_time"
	statOther                = "other"
	// maxGRPCStatus is Grpc::Status::WellKnownGrpcStatus::MaximumKnown:
	// grpc-status values above it count as "other".
	maxGRPCStatus = 16
)

// Config is the built filter. Immutable after Build, except for the lazily
// filled stats cache (safe for concurrent use).
type Config struct {
	store               *stats.Store
	statsForAllMethods  bool
	replaceDots         bool
	enableUpstreamStats bool
	// allowlist holds the {service, method} pairs of
	// individual_method_stats_allowlist.
	allowlist map[[2]string]bool

	// cache holds the stats of one cluster and method (statsKey). It is
	// copy-on-write: readers load the map without a lock or an allocation
	// (a sync.Map would box the struct key on every Load); a miss, once
	// per cluster and method, copies it under mu.
	cache atomic.Pointer[map[statsKey]*methodStats]
	mu    sync.Mutex
}

type statsKey struct {
	cluster, service, method string
}

// methodStats are one cluster's stats of one method (or of every method,
// without the service/method part). Counters are looked up on first use,
// as Envoy creates them.
type methodStats struct {
	prefix                              string
	success, failure, total, reqs, resp lazyCounter
	status                              [maxGRPCStatus + 2]lazyCounter // the last is "other"
	rqTime                              atomic.Pointer[stats.Histogram]
}

type lazyCounter struct {
	p atomic.Pointer[stats.Counter]
}

func (l *lazyCounter) get(store *stats.Store, name func() string) *stats.Counter {
	if c := l.p.Load(); c != nil {
		return c
	}
	c := store.Counter(name())
	l.p.Store(c)
	return c
}

// Build interprets the filter's FilterConfig once per snapshot.
func Build(cfg *grpcstatsv3.FilterConfig, ctx httpfilter.BuildContext) (httpfilter.Factory, error) {
	errs := configerr.RejectUnlisted(cfg, ctx.Path, nil,
		"individual_method_stats_allowlist", "stats_for_all_methods", "enable_upstream_stats",
		"replace_dots_in_grpc_service_name")
	if cfg.GetEmitFilterState() {
		// herald has no filter state object that access logs read.
		errs = append(errs, &configerr.FieldError{Path: ctx.Path + ".emit_filter_state",
			Msg: "emit_filter_state is " + configerr.NotSupported + " (#6)"})
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	c := &Config{
		store: ctx.Stats,
		// Envoy: "If this value is unset, it defaults to false."
		statsForAllMethods:  cfg.GetStatsForAllMethods().GetValue(),
		replaceDots:         cfg.GetReplaceDotsInGrpcServiceName(),
		enableUpstreamStats: cfg.GetEnableUpstreamStats(),
	}
	if al := cfg.GetIndividualMethodStatsAllowlist(); al != nil {
		c.allowlist = map[[2]string]bool{}
		for _, s := range al.GetServices() {
			for _, m := range s.GetMethodNames() {
				c.allowlist[[2]string{s.GetName(), m}] = true
			}
		}
	}
	return c.newFilter, nil
}

// statsFor returns the stats of cluster for service and method (both
// empty: the stats without a service/method part).
func (c *Config) statsFor(cluster, service, method string) *methodStats {
	k := statsKey{cluster, service, method}
	if m, ok := c.lookup(k); ok {
		return m
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.lookup(k); ok {
		return m
	}
	prefix := "cluster." + cluster + ".grpc."
	if service != "" {
		if c.replaceDots {
			service = strings.ReplaceAll(service, ".", "_")
		}
		prefix += service + "." + method + "."
	}
	m := &methodStats{prefix: prefix}
	var next map[statsKey]*methodStats
	if cur := c.cache.Load(); cur != nil {
		next = make(map[statsKey]*methodStats, len(*cur)+1)
		for key, v := range *cur {
			next[key] = v
		}
	} else {
		next = make(map[statsKey]*methodStats, 1)
	}
	next[k] = m
	c.cache.Store(&next)
	return m
}

func (c *Config) lookup(k statsKey) (*methodStats, bool) {
	if cur := c.cache.Load(); cur != nil {
		m, ok := (*cur)[k]
		return m, ok
	}
	return nil, false
}

// resolve returns the service and method of a gRPC path ("/service/method",
// query ignored; Grpc::Common::resolveServiceAndMethod), ok false when it
// is not one.
func resolve(path string) (service, method string, ok bool) {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	path = strings.Trim(path, "/")
	service, method, ok = strings.Cut(path, "/")
	if !ok || service == "" || method == "" || strings.IndexByte(method, '/') >= 0 {
		return "", "", false
	}
	return service, method, true
}

func (m *methodStats) counter(store *stats.Store, l *lazyCounter, name string) *stats.Counter {
	return l.get(store, func() string { return m.prefix + name })
}

// chargeStatus is ContextImpl::chargeStat with a grpc-status value: the
// per-status counter, success or failure, and total.
func (m *methodStats) chargeStatus(store *stats.Store, grpcStatus string) {
	idx := maxGRPCStatus + 1
	name := statOther
	if n, ok := parseStatus(grpcStatus); ok && n <= maxGRPCStatus {
		idx, name = n, grpcStatus
	}
	m.counter(store, &m.status[idx], name).Inc()
	if grpcStatus == "0" {
		m.counter(store, &m.success, statSuccess).Inc()
	} else {
		m.counter(store, &m.failure, statFailure).Inc()
	}
	m.counter(store, &m.total, statTotal).Inc()
}

func parseStatus(s string) (int, bool) {
	// Envoy keys the per-status stat names by the exact strings "0".."16".
	if s == "" || len(s) > 2 || (len(s) == 2 && s[0] == '0') {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

func (m *methodStats) upstreamRqTime(store *stats.Store) *stats.Histogram {
	if h := m.rqTime.Load(); h != nil {
		return h
	}
	h := store.Histogram(m.prefix+statUpstreamRqTime, stats.Milliseconds)
	m.rqTime.Store(h)
	return h
}
