package healthcheck

import "github.com/herald-proxy/herald/internal/stats"

// Stats are Envoy's health checker stats, under
// cluster.<name>.health_check. (ALL_HEALTH_CHECKER_STATS in
// source/extensions/health_checkers/common/health_checker_base_impl.h;
// https://www.envoyproxy.io/docs/envoy/latest/configuration/upstream/cluster_manager/cluster_stats#health-check-statistics).
type Stats struct {
	// Attempt counts checks started.
	Attempt *stats.Counter
	// Success counts checks passed.
	Success *stats.Counter
	// Failure counts checks failed, for any reason (passive included).
	Failure *stats.Counter
	// PassiveFailure counts failures reported by the data path
	// (x-envoy-immediate-health-check-fail on a proxied response).
	PassiveFailure *stats.Counter
	// NetworkFailure counts failures by connection error or timeout.
	NetworkFailure *stats.Counter
	// VerifyCluster counts service_name_matcher checks (herald does not
	// support the matcher yet; the counter exists for parity).
	VerifyCluster *stats.Counter
	// Healthy is the number of checked hosts passing active health checks.
	Healthy *stats.Gauge
	// Degraded is the number of degraded hosts (always 0 in herald).
	Degraded *stats.Gauge
}

// NewStats creates the stats in sc, which is "cluster.<name>.health_check.".
func NewStats(sc stats.Scope) *Stats {
	return &Stats{
		Attempt:        sc.Counter("attempt"),
		Success:        sc.Counter("success"),
		Failure:        sc.Counter("failure"),
		PassiveFailure: sc.Counter("passive_failure"),
		NetworkFailure: sc.Counter("network_failure"),
		VerifyCluster:  sc.Counter("verify_cluster"),
		Healthy:        sc.Gauge("healthy"),
		Degraded:       sc.Gauge("degraded"),
	}
}
