package upstream

import (
	"strconv"
	"sync/atomic"

	"github.com/herald-proxy/herald/internal/stats"
)

// Stats are a cluster's stats, under "cluster.<alt_stat_name or name>." with
// Envoy's names
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/upstream/cluster_manager/cluster_stats).
// They live in the process store, so a cluster rebuilt by a config change
// keeps counting where the old one stopped, as in Envoy.
type Stats struct {
	UpstreamCxTotal          *stats.Counter
	UpstreamCxActive         *stats.Gauge
	UpstreamCxConnectFail    *stats.Counter
	UpstreamCxConnectTimeout *stats.Counter
	UpstreamCxDestroy        *stats.Counter
	UpstreamCxDestroyLocal   *stats.Counter
	UpstreamCxDestroyRemote  *stats.Counter
	UpstreamCxRxBytesTotal   *stats.Counter
	UpstreamCxTxBytesTotal   *stats.Counter
	UpstreamCxHTTP1Total     *stats.Counter
	UpstreamCxHTTP2Total     *stats.Counter
	UpstreamCxHTTP3Total     *stats.Counter
	// UpstreamCxMaxRequests counts connections closed for reaching
	// max_requests_per_connection.
	UpstreamCxMaxRequests *stats.Counter
	UpstreamCxNoneHealthy *stats.Counter
	// UpstreamCxConnectAttemptsExceeded counts connections tcp_proxy gave up
	// on after max_connect_attempts failed attempts.
	UpstreamCxConnectAttemptsExceeded *stats.Counter
	UpstreamRqTotal                   *stats.Counter
	UpstreamRqActive                  *stats.Gauge
	UpstreamRqTimeout                 *stats.Counter
	UpstreamRqCompleted               *stats.Counter
	UpstreamRqPendingTotal            *stats.Counter
	UpstreamRqPendingActive           *stats.Gauge
	UpstreamRqRxReset                 *stats.Counter
	UpstreamRqTxReset                 *stats.Counter
	UpstreamRqPerTryTimeout           *stats.Counter
	MembershipTotal                   *stats.Gauge
	MembershipHealthy                 *stats.Gauge
	MembershipChange                  *stats.Counter
	LbHealthyPanic                    *stats.Counter
	UpdateAttempt                     *stats.Counter
	UpdateSuccess                     *stats.Counter
	UpdateFailure                     *stats.Counter
	UpdateNoRebuild                   *stats.Counter
	UpstreamRqTime                    *stats.Histogram
	UpstreamCxConnectMs               *stats.Histogram

	scope stats.Scope
	// Response code counters, looked up on first use (Envoy creates
	// upstream_rq_<code> dynamically too, so unused codes do not show in
	// /stats) and cached: steady-state RecordResponse is atomic loads and
	// adds only.
	classes [6]atomic.Pointer[stats.Counter] // index code/100
	codes   [1000]atomic.Pointer[stats.Counter]
}

func newStats(sc stats.Scope) *Stats {
	return &Stats{
		UpstreamCxTotal:                   sc.Counter("upstream_cx_total"),
		UpstreamCxActive:                  sc.Gauge("upstream_cx_active"),
		UpstreamCxConnectFail:             sc.Counter("upstream_cx_connect_fail"),
		UpstreamCxConnectTimeout:          sc.Counter("upstream_cx_connect_timeout"),
		UpstreamCxDestroy:                 sc.Counter("upstream_cx_destroy"),
		UpstreamCxDestroyLocal:            sc.Counter("upstream_cx_destroy_local"),
		UpstreamCxDestroyRemote:           sc.Counter("upstream_cx_destroy_remote"),
		UpstreamCxRxBytesTotal:            sc.Counter("upstream_cx_rx_bytes_total"),
		UpstreamCxTxBytesTotal:            sc.Counter("upstream_cx_tx_bytes_total"),
		UpstreamCxHTTP1Total:              sc.Counter("upstream_cx_http1_total"),
		UpstreamCxHTTP2Total:              sc.Counter("upstream_cx_http2_total"),
		UpstreamCxHTTP3Total:              sc.Counter("upstream_cx_http3_total"),
		UpstreamCxMaxRequests:             sc.Counter("upstream_cx_max_requests"),
		UpstreamCxNoneHealthy:             sc.Counter("upstream_cx_none_healthy"),
		UpstreamCxConnectAttemptsExceeded: sc.Counter("upstream_cx_connect_attempts_exceeded"),
		UpstreamRqTotal:                   sc.Counter("upstream_rq_total"),
		UpstreamRqActive:                  sc.Gauge("upstream_rq_active"),
		UpstreamRqTimeout:                 sc.Counter("upstream_rq_timeout"),
		UpstreamRqCompleted:               sc.Counter("upstream_rq_completed"),
		UpstreamRqPendingTotal:            sc.Counter("upstream_rq_pending_total"),
		UpstreamRqPendingActive:           sc.Gauge("upstream_rq_pending_active"),
		UpstreamRqRxReset:                 sc.Counter("upstream_rq_rx_reset"),
		UpstreamRqTxReset:                 sc.Counter("upstream_rq_tx_reset"),
		UpstreamRqPerTryTimeout:           sc.Counter("upstream_rq_per_try_timeout"),
		MembershipTotal:                   sc.Gauge("membership_total"),
		MembershipHealthy:                 sc.Gauge("membership_healthy"),
		MembershipChange:                  sc.Counter("membership_change"),
		LbHealthyPanic:                    sc.Counter("lb_healthy_panic"),
		UpdateAttempt:                     sc.Counter("update_attempt"),
		UpdateSuccess:                     sc.Counter("update_success"),
		UpdateFailure:                     sc.Counter("update_failure"),
		UpdateNoRebuild:                   sc.Counter("update_no_rebuild"),
		UpstreamRqTime:                    sc.Histogram("upstream_rq_time", stats.Milliseconds),
		UpstreamCxConnectMs:               sc.Histogram("upstream_cx_connect_ms", stats.Milliseconds),
		scope:                             sc,
	}
}

var classNames = [6]string{"", "upstream_rq_1xx", "upstream_rq_2xx", "upstream_rq_3xx", "upstream_rq_4xx", "upstream_rq_5xx"}

// RecordResponse counts an upstream response as Envoy's
// CodeStatsImpl::chargeBasicResponseStat does: upstream_rq_completed,
// upstream_rq_<class>xx (1xx–5xx only) and upstream_rq_<code>. It does not
// allocate once a code has been seen.
func (s *Stats) RecordResponse(code int) {
	s.UpstreamRqCompleted.Inc()
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
		c = s.scope.Counter("upstream_rq_" + strconv.Itoa(code))
		s.codes[code].Store(c)
	}
	c.Inc()
}

// HostStats are one host's stats, shown by admin /clusters (Envoy's
// ALL_HOST_STATS: they are not in /stats). Callers update them with atomic
// adds: the router counts the rq_* ones, Dial the cx_* ones.
type HostStats struct {
	CxConnectFail atomic.Uint64
	CxTotal       atomic.Uint64
	RqError       atomic.Uint64
	RqSuccess     atomic.Uint64
	RqTimeout     atomic.Uint64
	RqTotal       atomic.Uint64
	CxActive      atomic.Int64
	RqActive      atomic.Int64
}

// hostStat is one line of admin output.
type hostStat struct {
	name    string
	value   uint64
	counter bool
}

// list returns the stats in Envoy's order: counters, then gauges.
func (s *HostStats) list() []hostStat {
	return []hostStat{
		{"cx_connect_fail", s.CxConnectFail.Load(), true},
		{"cx_total", s.CxTotal.Load(), true},
		{"rq_error", s.RqError.Load(), true},
		{"rq_success", s.RqSuccess.Load(), true},
		{"rq_timeout", s.RqTimeout.Load(), true},
		{"rq_total", s.RqTotal.Load(), true},
		{"cx_active", uint64(max(s.CxActive.Load(), 0)), false},
		{"rq_active", uint64(max(s.RqActive.Load(), 0)), false},
	}
}

// RecordResponse counts an upstream response code on the cluster's stats;
// see Stats.RecordResponse (it includes upstream_rq_completed).
func (c *Cluster) RecordResponse(code int) { c.Stats.RecordResponse(code) }
