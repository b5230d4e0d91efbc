package outlier

import "github.com/herald-proxy/herald/internal/stats"

// Stats are Envoy's outlier detection stats, under
// cluster.<name>.outlier_detection. (ALL_OUTLIER_DETECTION_STATS in
// source/common/upstream/outlier_detection_impl.h;
// https://www.envoyproxy.io/docs/envoy/latest/configuration/upstream/cluster_manager/cluster_stats#outlier-detection-statistics).
// "Detected" counts outliers found, "enforced" the ones really ejected.
type Stats struct {
	// EjectionsEnforcedTotal counts ejections, of any type.
	EjectionsEnforcedTotal *stats.Counter
	// EjectionsActive is the number of hosts ejected now.
	EjectionsActive *stats.Gauge
	// EjectionsOverflow counts ejections refused by max_ejection_percent.
	EjectionsOverflow *stats.Counter

	EjectionsEnforcedConsecutive5xx                *stats.Counter
	EjectionsDetectedConsecutive5xx                *stats.Counter
	EjectionsEnforcedSuccessRate                   *stats.Counter
	EjectionsDetectedSuccessRate                   *stats.Counter
	EjectionsEnforcedConsecutiveGatewayFailure     *stats.Counter
	EjectionsDetectedConsecutiveGatewayFailure     *stats.Counter
	EjectionsEnforcedConsecutiveLocalOriginFailure *stats.Counter
	EjectionsDetectedConsecutiveLocalOriginFailure *stats.Counter
	EjectionsEnforcedLocalOriginSuccessRate        *stats.Counter
	EjectionsDetectedLocalOriginSuccessRate        *stats.Counter
	EjectionsEnforcedFailurePercentage             *stats.Counter
	EjectionsDetectedFailurePercentage             *stats.Counter
	EjectionsEnforcedLocalOriginFailurePercentage  *stats.Counter
	EjectionsDetectedLocalOriginFailurePercentage  *stats.Counter

	// Deprecated in Envoy, still emitted: EjectionsTotal counts consecutive
	// 5xx and success rate ejections allowed by max_ejection_percent
	// (enforced or not), EjectionsConsecutive5xx every consecutive 5xx
	// detection, EjectionsSuccessRate every success rate outlier.
	EjectionsTotal          *stats.Counter
	EjectionsConsecutive5xx *stats.Counter
	EjectionsSuccessRate    *stats.Counter
}

// NewStats creates the stats in sc, which is
// "cluster.<name>.outlier_detection.".
func NewStats(sc stats.Scope) *Stats {
	return &Stats{
		EjectionsEnforcedTotal: sc.Counter("ejections_enforced_total"),
		EjectionsActive:        sc.Gauge("ejections_active"),
		EjectionsOverflow:      sc.Counter("ejections_overflow"),

		EjectionsEnforcedConsecutive5xx:                sc.Counter("ejections_enforced_consecutive_5xx"),
		EjectionsDetectedConsecutive5xx:                sc.Counter("ejections_detected_consecutive_5xx"),
		EjectionsEnforcedSuccessRate:                   sc.Counter("ejections_enforced_success_rate"),
		EjectionsDetectedSuccessRate:                   sc.Counter("ejections_detected_success_rate"),
		EjectionsEnforcedConsecutiveGatewayFailure:     sc.Counter("ejections_enforced_consecutive_gateway_failure"),
		EjectionsDetectedConsecutiveGatewayFailure:     sc.Counter("ejections_detected_consecutive_gateway_failure"),
		EjectionsEnforcedConsecutiveLocalOriginFailure: sc.Counter("ejections_enforced_consecutive_local_origin_failure"),
		EjectionsDetectedConsecutiveLocalOriginFailure: sc.Counter("ejections_detected_consecutive_local_origin_failure"),
		EjectionsEnforcedLocalOriginSuccessRate:        sc.Counter("ejections_enforced_local_origin_success_rate"),
		EjectionsDetectedLocalOriginSuccessRate:        sc.Counter("ejections_detected_local_origin_success_rate"),
		EjectionsEnforcedFailurePercentage:             sc.Counter("ejections_enforced_failure_percentage"),
		EjectionsDetectedFailurePercentage:             sc.Counter("ejections_detected_failure_percentage"),
		EjectionsEnforcedLocalOriginFailurePercentage:  sc.Counter("ejections_enforced_local_origin_failure_percentage"),
		EjectionsDetectedLocalOriginFailurePercentage:  sc.Counter("ejections_detected_local_origin_failure_percentage"),

		EjectionsTotal:          sc.Counter("ejections_total"),
		EjectionsConsecutive5xx: sc.Counter("ejections_consecutive_5xx"),
		EjectionsSuccessRate:    sc.Counter("ejections_success_rate"),
	}
}

// detected returns the ejections_detected_* counter of t.
func (s *Stats) detected(t EjectionType) *stats.Counter {
	switch t {
	case Consecutive5xx:
		return s.EjectionsDetectedConsecutive5xx
	case ConsecutiveGatewayFailure:
		return s.EjectionsDetectedConsecutiveGatewayFailure
	case ConsecutiveLocalOriginFailure:
		return s.EjectionsDetectedConsecutiveLocalOriginFailure
	case SuccessRate:
		return s.EjectionsDetectedSuccessRate
	case SuccessRateLocalOrigin:
		return s.EjectionsDetectedLocalOriginSuccessRate
	case FailurePercentage:
		return s.EjectionsDetectedFailurePercentage
	case FailurePercentageLocalOrigin:
		return s.EjectionsDetectedLocalOriginFailurePercentage
	}
	panic("outlier: unknown ejection type")
}

// enforced returns the ejections_enforced_* counter of t.
func (s *Stats) enforced(t EjectionType) *stats.Counter {
	switch t {
	case Consecutive5xx:
		return s.EjectionsEnforcedConsecutive5xx
	case ConsecutiveGatewayFailure:
		return s.EjectionsEnforcedConsecutiveGatewayFailure
	case ConsecutiveLocalOriginFailure:
		return s.EjectionsEnforcedConsecutiveLocalOriginFailure
	case SuccessRate:
		return s.EjectionsEnforcedSuccessRate
	case SuccessRateLocalOrigin:
		return s.EjectionsEnforcedLocalOriginSuccessRate
	case FailurePercentage:
		return s.EjectionsEnforcedFailurePercentage
	case FailurePercentageLocalOrigin:
		return s.EjectionsEnforcedLocalOriginFailurePercentage
	}
	panic("outlier: unknown ejection type")
}
