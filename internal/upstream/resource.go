package upstream

import (
	"math"
	"sync"
	"sync/atomic"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/stats"
)

// Circuit breaking
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/circuit_breaking):
// each cluster keeps, per routing priority, counters of its open
// connections, pending requests, requests, retries and connection pools,
// each bounded by the priority's thresholds. Envoy's ResourceManagerImpl
// (source/common/upstream/resource_manager_impl.h) is the model: lock-free
// counters that may briefly exceed their maximum under contention, a
// circuit_breakers.<priority>.<x>_open gauge that is 1 while a resource is
// at its limit, and, with track_remaining, remaining_<x> gauges.

// Priority is a routing priority (Envoy's RoutingPriority); each has its
// own circuit breakers.
type Priority int

const (
	// PriorityDefault is RoutingPriority DEFAULT.
	PriorityDefault Priority = iota
	// PriorityHigh is RoutingPriority HIGH.
	PriorityHigh
)

// priorityNames are the stat name segments Envoy uses
// (circuit_breakers.default.*, circuit_breakers.high.*).
var priorityNames = [2]string{"default", "high"}

// Envoy's retry budget defaults (circuit_breaker.proto, RetryBudget):
// budget_percent "defaults to 20%", min_retry_concurrency "defaults to 3".
const (
	defaultBudgetPercent       = 20.0
	defaultMinRetryConcurrency = 3
)

// breakerOptions are the threshold fields beyond Thresholds. The zero value
// is Envoy's default: unlimited connection pools, no remaining_* gauges, no
// retry budget.
type breakerOptions struct {
	// maxConnectionPools is max_connection_pools when hasMaxPools.
	maxConnectionPools uint64
	hasMaxPools        bool
	trackRemaining     bool
	// budget is set when retry_budget is configured: max_retries is then
	// ignored (Envoy: "If this field is set, the retry budget will override
	// any configured retry circuit breaker").
	budget *retryBudget
}

type retryBudget struct {
	percent        float64
	minConcurrency uint64
}

// Resource is one circuit-breaker limited resource (Envoy's
// ManagedResourceImpl). It is safe for concurrent use and lock-free.
type Resource struct {
	max       uint64
	count     atomic.Int64
	open      *stats.Gauge
	remaining *stats.Gauge // nil without track_remaining
}

func (r *Resource) init(max uint64, open, remaining *stats.Gauge) {
	r.max, r.open, r.remaining = max, open, remaining
	if remaining != nil {
		remaining.Set(clampGauge(max))
	}
}

// Max returns the limit.
func (r *Resource) Max() uint64 { return r.max }

// Count returns how many are in use.
func (r *Resource) Count() int64 { return r.count.Load() }

// CanCreate reports whether one more is under the limit (Envoy's canCreate).
func (r *Resource) CanCreate() bool {
	n := r.count.Load()
	return n < 0 || uint64(n) < r.max
}

// Inc takes one, whether or not it is under the limit (a connection that
// exists is counted even when a pool created it over the limit, as Envoy's
// pools do when they hold no connection at all).
func (r *Resource) Inc() { r.update(r.count.Add(1)) }

// Dec gives one back.
func (r *Resource) Dec() { r.update(r.count.Add(-1)) }

// TryAcquire takes one if that keeps the count within the limit.
func (r *Resource) TryAcquire() bool {
	for {
		n := r.count.Load()
		if n >= 0 && uint64(n) >= r.max {
			r.update(n)
			return false
		}
		if r.count.CompareAndSwap(n, n+1) {
			r.update(n + 1)
			return true
		}
	}
}

// update sets the open gauge (1 at or over the limit) and the remaining
// gauge; it stores only on change so the steady state is loads.
func (r *Resource) update(n int64) {
	var open int64
	if n >= 0 && uint64(n) >= r.max {
		open = 1
	}
	if r.open.Value() != open {
		r.open.Set(open)
	}
	if r.remaining != nil {
		rem := int64(0)
		if n < 0 || uint64(n) < r.max {
			rem = clampGauge(r.max - uint64(max(n, 0)))
		}
		if r.remaining.Value() != rem {
			r.remaining.Set(rem)
		}
	}
}

func clampGauge(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}

// RetryLimit bounds concurrent retries: max_retries, or with retry_budget a
// share of the active and pending requests (Envoy's RetryBudgetImpl).
type RetryLimit struct {
	Resource
	budget            *retryBudget
	requests, pending *Resource
}

// Max returns the current retry limit: max_retries, or with a retry budget
// max(budget_percent% of (active + pending requests), min_retry_concurrency).
func (r *RetryLimit) Max() uint64 {
	if r.budget == nil {
		return r.max
	}
	active := max(r.requests.Count(), 0) + max(r.pending.Count(), 0)
	return max(uint64(r.budget.percent/100*float64(active)), r.budget.minConcurrency)
}

// CanCreate reports whether one more retry is within the limit.
func (r *RetryLimit) CanCreate() bool {
	return uint64(max(r.count.Load(), 0)) < r.Max()
}

// TryAcquire takes one retry if the limit allows it. With a retry budget
// the remaining_retries gauge stays 0, as Envoy's clearRemainingGauge.
func (r *RetryLimit) TryAcquire() bool {
	if r.budget == nil {
		return r.Resource.TryAcquire()
	}
	if uint64(max(r.count.Load(), 0)) >= r.Max() {
		return false
	}
	r.Resource.Inc()
	return true
}

// ResourceManager is one priority's circuit breakers of a cluster.
type ResourceManager struct {
	Connections     Resource
	PendingRequests Resource
	Requests        Resource
	ConnectionPools Resource
	Retries         RetryLimit

	// Overflow counts the cluster's circuit breaker trips; shared by both
	// priorities.
	Overflow *OverflowStats

	released notifier
	// sharedReleased, when set (the HIGH priority's), is the DEFAULT
	// priority's released: herald keeps one connection pool per host for
	// both priorities, so a connection given back wakes waiting requests
	// of either.
	sharedReleased *notifier
}

// OverflowStats are a cluster's circuit breaker counters, with Envoy's names
// (cluster_stats: upstream_cx_overflow, upstream_cx_pool_overflow,
// upstream_rq_pending_overflow; upstream_rq_retry_overflow is in RetryStats).
type OverflowStats struct {
	UpstreamCxOverflow        *stats.Counter
	UpstreamCxPoolOverflow    *stats.Counter
	UpstreamRqPendingOverflow *stats.Counter
}

// RetryStats are a cluster's retry counters, with Envoy's names
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/upstream/cluster_manager/cluster_stats).
type RetryStats struct {
	UpstreamRqRetry                   *stats.Counter
	UpstreamRqRetrySuccess            *stats.Counter
	UpstreamRqRetryOverflow           *stats.Counter
	UpstreamRqRetryLimitExceeded      *stats.Counter
	UpstreamRqRetryBackoffExponential *stats.Counter
	UpstreamRqPerTryIdleTimeout       *stats.Counter
	RetryOrShadowAbandoned            *stats.Counter

	scope stats.Scope
	// retry.upstream_rq_<code>, <class> and completed: Envoy charges the
	// responses it retries under the "retry." prefix instead of the plain
	// upstream_rq_* ones (router.cc onUpstreamHeaders).
	completed *stats.Counter
	classes   [6]atomic.Pointer[stats.Counter]
	codes     [1000]atomic.Pointer[stats.Counter]
}

// RecordRetriedResponse counts a response that is being retried:
// retry.upstream_rq_completed, retry.upstream_rq_<class>xx and
// retry.upstream_rq_<code>.
func (s *RetryStats) RecordRetriedResponse(code int) {
	s.completed.Inc()
	if code < 0 || code >= len(s.codes) {
		return
	}
	if cl := code / 100; cl >= 1 && cl <= 5 {
		c := s.classes[cl].Load()
		if c == nil {
			c = s.scope.Counter(classNames[cl])
			s.classes[cl].Store(c)
		}
		c.Inc()
	}
	c := s.codes[code].Load()
	if c == nil {
		c = s.scope.Counter("upstream_rq_" + itoa3(code))
		s.codes[code].Store(c)
	}
	c.Inc()
}

func itoa3(code int) string {
	if code >= 100 {
		return string([]byte{byte('0' + code/100), byte('0' + code/10%10), byte('0' + code%10)})
	}
	if code >= 10 {
		return string([]byte{byte('0' + code/10), byte('0' + code%10)})
	}
	return string([]byte{byte('0' + code)})
}

// NewRetryStats makes retry counters under sc ("cluster.<name>.").
func NewRetryStats(sc stats.Scope) *RetryStats { return newRetryStats(sc) }

func newRetryStats(sc stats.Scope) *RetryStats {
	rs := sc.Scope("retry.")
	return &RetryStats{
		UpstreamRqRetry:                   sc.Counter("upstream_rq_retry"),
		UpstreamRqRetrySuccess:            sc.Counter("upstream_rq_retry_success"),
		UpstreamRqRetryOverflow:           sc.Counter("upstream_rq_retry_overflow"),
		UpstreamRqRetryLimitExceeded:      sc.Counter("upstream_rq_retry_limit_exceeded"),
		UpstreamRqRetryBackoffExponential: sc.Counter("upstream_rq_retry_backoff_exponential"),
		UpstreamRqPerTryIdleTimeout:       sc.Counter("upstream_rq_per_try_idle_timeout"),
		RetryOrShadowAbandoned:            sc.Counter("retry_or_shadow_abandoned"),
		scope:                             rs,
		completed:                         rs.Counter("upstream_rq_completed"),
	}
}

// newResourceManagers builds both priorities' circuit breakers under sc
// ("cluster.<name>.").
func newResourceManagers(sc stats.Scope, th [2]Thresholds, opts [2]breakerOptions) [2]*ResourceManager {
	ov := newOverflowStats(sc)
	var out [2]*ResourceManager
	for i := range out {
		out[i] = newResourceManager(sc.Scope("circuit_breakers."+priorityNames[i]+"."), th[i], opts[i], ov)
	}
	out[PriorityHigh].sharedReleased = &out[PriorityDefault].released
	return out
}

// NewResourceManager makes one priority's circuit breakers with thresholds
// th and Envoy's defaults for the rest, gauges under sc
// ("cluster.<name>.circuit_breakers.<priority>.") and overflow counters
// under counters ("cluster.<name>.").
func NewResourceManager(sc, counters stats.Scope, th Thresholds) *ResourceManager {
	return newResourceManager(sc, th, breakerOptions{}, newOverflowStats(counters))
}

func newOverflowStats(sc stats.Scope) *OverflowStats {
	return &OverflowStats{
		UpstreamCxOverflow:        sc.Counter("upstream_cx_overflow"),
		UpstreamCxPoolOverflow:    sc.Counter("upstream_cx_pool_overflow"),
		UpstreamRqPendingOverflow: sc.Counter("upstream_rq_pending_overflow"),
	}
}

func newResourceManager(sc stats.Scope, th Thresholds, o breakerOptions, ov *OverflowStats) *ResourceManager {
	rem := func(name string) *stats.Gauge {
		if !o.trackRemaining {
			return nil
		}
		return sc.Gauge(name)
	}
	rm := &ResourceManager{Overflow: ov}
	rm.Connections.init(uint64(th.MaxConnections), sc.Gauge("cx_open"), rem("remaining_cx"))
	rm.PendingRequests.init(uint64(th.MaxPendingRequests), sc.Gauge("rq_pending_open"), rem("remaining_pending"))
	rm.Requests.init(uint64(th.MaxRequests), sc.Gauge("rq_open"), rem("remaining_rq"))
	pools := uint64(math.MaxUint64)
	if o.hasMaxPools {
		pools = o.maxConnectionPools
	}
	rm.ConnectionPools.init(pools, sc.Gauge("cx_pool_open"), rem("remaining_cx_pools"))
	if o.budget == nil {
		rm.Retries.init(uint64(th.MaxRetries), sc.Gauge("rq_retry_open"), rem("remaining_retries"))
	} else {
		// Envoy keeps remaining_retries at 0 under a budget (its limit
		// moves with the request counts) and rq_retry_open follows
		// max_retries.
		rm.Retries.init(uint64(th.MaxRetries), sc.Gauge("rq_retry_open"), nil)
		if g := rem("remaining_retries"); g != nil {
			g.Set(0)
		}
		rm.Retries.budget = o.budget
	}
	rm.Retries.requests, rm.Retries.pending = &rm.Requests, &rm.PendingRequests
	return rm
}

// ConnectionReleased wakes requests waiting for a connection of the cluster
// (a connection closed, or one went back to a host's idle pool). It costs
// one atomic load when no request waits.
func (rm *ResourceManager) ConnectionReleased() { rm.releasedNotifier().notify() }

// WaitRelease returns a channel closed by the next ConnectionReleased and a
// function the caller must call when it stops waiting. Take the channel
// before re-checking for a free connection, so no release is missed.
func (rm *ResourceManager) WaitRelease() (<-chan struct{}, func()) {
	return rm.releasedNotifier().wait()
}

func (rm *ResourceManager) releasedNotifier() *notifier {
	if rm.sharedReleased != nil {
		return rm.sharedReleased
	}
	return &rm.released
}

// notifier is a broadcast that costs nothing while nobody waits.
type notifier struct {
	waiters atomic.Int32
	mu      sync.Mutex
	ch      chan struct{}
}

func (n *notifier) notify() {
	if n.waiters.Load() == 0 {
		return
	}
	n.mu.Lock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
	n.mu.Unlock()
}

func (n *notifier) wait() (<-chan struct{}, func()) {
	n.waiters.Add(1)
	n.mu.Lock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	ch := n.ch
	n.mu.Unlock()
	return ch, func() { n.waiters.Add(-1) }
}

// Resources returns the circuit breakers of priority p.
func (c *Cluster) Resources(p Priority) *ResourceManager { return c.resources[p] }

// RetryStats returns the cluster's retry counters.
func (c *Cluster) RetryStats() *RetryStats { return c.retryStats }

// parseBreakerOptions reads the threshold fields beyond Thresholds.
func parseBreakerOptions(t *clusterv3.CircuitBreakers_Thresholds, path string) (breakerOptions, configerr.List) {
	var o breakerOptions
	o.trackRemaining = t.GetTrackRemaining()
	if v := t.GetMaxConnectionPools(); v != nil {
		o.maxConnectionPools, o.hasMaxPools = uint64(v.GetValue()), true
	}
	rb := t.GetRetryBudget()
	if rb == nil {
		return o, nil
	}
	errs := configerr.CheckFields(rb, path+".retry_budget", "budget_percent", "min_retry_concurrency")
	o.budget = &retryBudget{percent: defaultBudgetPercent, minConcurrency: defaultMinRetryConcurrency}
	if v := rb.GetBudgetPercent(); v != nil {
		o.budget.percent = v.GetValue()
	}
	if v := rb.GetMinRetryConcurrency(); v != nil {
		o.budget.minConcurrency = uint64(v.GetValue())
	}
	return o, errs
}
