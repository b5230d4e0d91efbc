package outlier

import (
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-proxy/herald/internal/configerr"
)

// Defaults of Envoy's DetectorConfig (DEFAULT_* in
// source/common/upstream/outlier_detection_impl.h), the same as
// outlier_detection.proto documents.
const (
	DefaultInterval                               = 10 * time.Second
	DefaultBaseEjectionTime                       = 30 * time.Second
	DefaultMaxEjectionTime                        = 300 * time.Second
	DefaultConsecutive5xx                         = 5
	DefaultConsecutiveGatewayFailure              = 5
	DefaultConsecutiveLocalOriginFailure          = 5
	DefaultMaxEjectionPercent                     = 10
	DefaultSuccessRateMinimumHosts                = 5
	DefaultSuccessRateRequestVolume               = 100
	DefaultSuccessRateStdevFactor                 = 1900
	DefaultFailurePercentageThreshold             = 85
	DefaultFailurePercentageMinimumHosts          = 5
	DefaultFailurePercentageRequestVolume         = 50
	DefaultEnforcingConsecutive5xx                = 100
	DefaultEnforcingConsecutiveGatewayFailure     = 0
	DefaultEnforcingConsecutiveLocalOriginFailure = 100
	DefaultEnforcingSuccessRate                   = 100
	DefaultEnforcingLocalOriginSuccessRate        = 100
	DefaultEnforcingFailurePercentage             = 0
	DefaultEnforcingFailurePercentageLocalOrigin  = 0
)

// Config is an interpreted outlier_detection; immutable after Build. Every
// field holds Envoy's default when the proto leaves it unset.
type Config struct {
	// Interval is the time between ejection sweeps (default 10 s).
	Interval time.Duration
	// BaseEjectionTime is multiplied by the host's ejection back-off to get
	// how long it stays ejected (default 30 s).
	BaseEjectionTime time.Duration
	// MaxEjectionTime caps the ejection time (default 300 s, or
	// BaseEjectionTime if larger).
	MaxEjectionTime time.Duration
	// MaxEjectionTimeJitter is the most random time added to an ejection
	// (default 0).
	MaxEjectionTimeJitter time.Duration
	// MaxEjectionPercent is the most hosts, in percent of the cluster, that
	// may be ejected at once (default 10, capped at 100).
	MaxEjectionPercent uint32
	// AlwaysEjectOneHost lets one host be ejected whatever
	// MaxEjectionPercent says (default false).
	AlwaysEjectOneHost bool

	// Consecutive5xx, ConsecutiveGatewayFailure and
	// ConsecutiveLocalOriginFailure are the runs that eject a host (default
	// 5 each; 0 disables the check).
	Consecutive5xx                uint32
	ConsecutiveGatewayFailure     uint32
	ConsecutiveLocalOriginFailure uint32

	// Enforcing* are the percent chances that a detected outlier is really
	// ejected. Defaults: 100 for consecutive 5xx, consecutive local-origin
	// failure and both success rates; 0 for consecutive gateway failure and
	// both failure percentages.
	EnforcingConsecutive5xx                uint32
	EnforcingConsecutiveGatewayFailure     uint32
	EnforcingConsecutiveLocalOriginFailure uint32
	EnforcingSuccessRate                   uint32
	EnforcingLocalOriginSuccessRate        uint32
	EnforcingFailurePercentage             uint32
	EnforcingFailurePercentageLocalOrigin  uint32

	// SuccessRateMinimumHosts hosts must each have SuccessRateRequestVolume
	// requests in an interval for success rate ejection to run (defaults 5
	// and 100). SuccessRateStdevFactor/1000 times the standard deviation
	// below the mean is the ejection threshold (default 1900).
	SuccessRateMinimumHosts  uint32
	SuccessRateRequestVolume uint32
	SuccessRateStdevFactor   uint32

	// FailurePercentageThreshold is the failure percentage at or above
	// which a host is an outlier (default 85), among at least
	// FailurePercentageMinimumHosts hosts (default 5) each with
	// FailurePercentageRequestVolume requests in an interval (default 50).
	FailurePercentageThreshold     uint32
	FailurePercentageMinimumHosts  uint32
	FailurePercentageRequestVolume uint32

	// SplitExternalLocalOriginErrors counts local-origin failures
	// (connect failures, timeouts, resets) apart from HTTP responses
	// (default false: they count as 503 and 504 responses).
	SplitExternalLocalOriginErrors bool
	// SuccessfulActiveHealthCheckUnejectHost un-ejects an ejected host when
	// an active health check passes (default true).
	SuccessfulActiveHealthCheckUnejectHost bool
}

// outlierFields are the outlier_detection fields herald interprets; monitors
// (extension monitors) is refused by CheckFields, detect_degraded_hosts
// below.
var outlierFields = []string{
	"consecutive_5xx", "interval", "base_ejection_time", "max_ejection_percent",
	"enforcing_consecutive_5xx", "enforcing_success_rate", "success_rate_minimum_hosts",
	"success_rate_request_volume", "success_rate_stdev_factor", "consecutive_gateway_failure",
	"enforcing_consecutive_gateway_failure", "split_external_local_origin_errors",
	"consecutive_local_origin_failure", "enforcing_consecutive_local_origin_failure",
	"enforcing_local_origin_success_rate", "failure_percentage_threshold",
	"enforcing_failure_percentage", "enforcing_failure_percentage_local_origin",
	"failure_percentage_minimum_hosts", "failure_percentage_request_volume",
	"max_ejection_time", "max_ejection_time_jitter", "successful_active_health_check_uneject_host",
	"always_eject_one_host", "detect_degraded_hosts",
}

// Build interprets od, found at path (e.g.
// "static_resources.clusters[0].outlier_detection"), with Envoy's defaults.
// It returns errors for fields herald does not implement and for what
// Envoy's DetectorImpl::create rejects.
func Build(od *clusterv3.OutlierDetection, path string) (*Config, configerr.List) {
	errs := configerr.CheckFields(od, path, outlierFields...)
	if od.GetDetectDegradedHosts().GetValue() {
		errs = append(errs, configerr.At(path+".detect_degraded_hosts", "true is %s", configerr.NotSupported))
	}
	c := &Config{
		// Envoy reads durations with PROTOBUF_GET_MS_OR_DEFAULT: whole
		// milliseconds.
		Interval:                               ms(od.GetInterval(), DefaultInterval),
		BaseEjectionTime:                       ms(od.GetBaseEjectionTime(), DefaultBaseEjectionTime),
		MaxEjectionTimeJitter:                  ms(od.GetMaxEjectionTimeJitter(), 0),
		MaxEjectionPercent:                     min(u32(od.GetMaxEjectionPercent(), DefaultMaxEjectionPercent), 100),
		AlwaysEjectOneHost:                     od.GetAlwaysEjectOneHost().GetValue(),
		Consecutive5xx:                         u32(od.GetConsecutive_5Xx(), DefaultConsecutive5xx),
		ConsecutiveGatewayFailure:              u32(od.GetConsecutiveGatewayFailure(), DefaultConsecutiveGatewayFailure),
		ConsecutiveLocalOriginFailure:          u32(od.GetConsecutiveLocalOriginFailure(), DefaultConsecutiveLocalOriginFailure),
		EnforcingConsecutive5xx:                u32(od.GetEnforcingConsecutive_5Xx(), DefaultEnforcingConsecutive5xx),
		EnforcingConsecutiveGatewayFailure:     u32(od.GetEnforcingConsecutiveGatewayFailure(), DefaultEnforcingConsecutiveGatewayFailure),
		EnforcingConsecutiveLocalOriginFailure: u32(od.GetEnforcingConsecutiveLocalOriginFailure(), DefaultEnforcingConsecutiveLocalOriginFailure),
		EnforcingSuccessRate:                   u32(od.GetEnforcingSuccessRate(), DefaultEnforcingSuccessRate),
		EnforcingLocalOriginSuccessRate:        u32(od.GetEnforcingLocalOriginSuccessRate(), DefaultEnforcingLocalOriginSuccessRate),
		EnforcingFailurePercentage:             u32(od.GetEnforcingFailurePercentage(), DefaultEnforcingFailurePercentage),
		EnforcingFailurePercentageLocalOrigin:  u32(od.GetEnforcingFailurePercentageLocalOrigin(), DefaultEnforcingFailurePercentageLocalOrigin),
		SuccessRateMinimumHosts:                u32(od.GetSuccessRateMinimumHosts(), DefaultSuccessRateMinimumHosts),
		SuccessRateRequestVolume:               u32(od.GetSuccessRateRequestVolume(), DefaultSuccessRateRequestVolume),
		SuccessRateStdevFactor:                 u32(od.GetSuccessRateStdevFactor(), DefaultSuccessRateStdevFactor),
		FailurePercentageThreshold:             u32(od.GetFailurePercentageThreshold(), DefaultFailurePercentageThreshold),
		FailurePercentageMinimumHosts:          u32(od.GetFailurePercentageMinimumHosts(), DefaultFailurePercentageMinimumHosts),
		FailurePercentageRequestVolume:         u32(od.GetFailurePercentageRequestVolume(), DefaultFailurePercentageRequestVolume),
		SplitExternalLocalOriginErrors:         od.GetSplitExternalLocalOriginErrors(),
		SuccessfulActiveHealthCheckUnejectHost: true,
	}
	if v := od.GetSuccessfulActiveHealthCheckUnejectHost(); v != nil {
		c.SuccessfulActiveHealthCheckUnejectHost = v.GetValue()
	}
	// Envoy: "If max_ejection_time was not specified in the config, apply
	// the default or base_ejection_time whatever is larger."
	c.MaxEjectionTime = ms(od.GetMaxEjectionTime(), max(DefaultMaxEjectionTime, c.BaseEjectionTime))
	// The proto requires interval and base_ejection_time "gt: {}"; the
	// bootstrap validator checks it, this guards other callers.
	if c.Interval <= 0 {
		errs = append(errs, configerr.At(path+".interval", "must be at least 1ms"))
	}
	if c.BaseEjectionTime <= 0 {
		errs = append(errs, configerr.At(path+".base_ejection_time", "must be at least 1ms"))
	}
	if c.MaxEjectionTime < c.BaseEjectionTime {
		// DetectorImpl::create's error.
		errs = append(errs, configerr.At(path+".max_ejection_time", "outlier detector's max_ejection_time cannot be smaller than base_ejection_time"))
	}
	for _, p := range []struct {
		name string
		v    uint32
	}{
		{"enforcing_consecutive_5xx", c.EnforcingConsecutive5xx},
		{"enforcing_success_rate", c.EnforcingSuccessRate},
		{"enforcing_consecutive_gateway_failure", c.EnforcingConsecutiveGatewayFailure},
		{"enforcing_consecutive_local_origin_failure", c.EnforcingConsecutiveLocalOriginFailure},
		{"enforcing_local_origin_success_rate", c.EnforcingLocalOriginSuccessRate},
		{"failure_percentage_threshold", c.FailurePercentageThreshold},
		{"enforcing_failure_percentage", c.EnforcingFailurePercentage},
		{"enforcing_failure_percentage_local_origin", c.EnforcingFailurePercentageLocalOrigin},
	} {
		if p.v > 100 {
			errs = append(errs, configerr.At(path+"."+p.name, "value must be less than or equal to 100"))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

func ms(d *durationpb.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.AsDuration().Truncate(time.Millisecond)
}

func u32(v *wrapperspb.UInt32Value, def uint32) uint32 {
	if v == nil {
		return def
	}
	return v.GetValue()
}
