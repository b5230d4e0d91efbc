package outlier

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

func parseOD(t *testing.T, y string) *clusterv3.OutlierDetection {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatalf("bad test yaml: %v", err)
	}
	od := &clusterv3.OutlierDetection{}
	if err := protojson.Unmarshal(js, od); err != nil {
		t.Fatalf("bad test outlier_detection: %v", err)
	}
	return od
}

// defaults is Envoy's DetectorConfig with nothing set.
func defaults() Config {
	return Config{
		Interval:                               10 * time.Second,
		BaseEjectionTime:                       30 * time.Second,
		MaxEjectionTime:                        300 * time.Second,
		MaxEjectionPercent:                     10,
		Consecutive5xx:                         5,
		ConsecutiveGatewayFailure:              5,
		ConsecutiveLocalOriginFailure:          5,
		EnforcingConsecutive5xx:                100,
		EnforcingConsecutiveLocalOriginFailure: 100,
		EnforcingSuccessRate:                   100,
		EnforcingLocalOriginSuccessRate:        100,
		SuccessRateMinimumHosts:                5,
		SuccessRateRequestVolume:               100,
		SuccessRateStdevFactor:                 1900,
		FailurePercentageThreshold:             85,
		FailurePercentageMinimumHosts:          5,
		FailurePercentageRequestVolume:         50,
		SuccessfulActiveHealthCheckUnejectHost: true,
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want func(c *Config)
	}{
		{name: "defaults", yaml: "{}", want: func(*Config) {}},
		{
			// max_ejection_time unset: the larger of 300 s and
			// base_ejection_time.
			name: "long base ejection time",
			yaml: "{base_ejection_time: 400s}",
			want: func(c *Config) { c.BaseEjectionTime, c.MaxEjectionTime = 400*time.Second, 400*time.Second },
		},
		{
			name: "everything",
			yaml: `{consecutive_5xx: 3, interval: 0.5s, base_ejection_time: 1.2345s, max_ejection_percent: 50,
				enforcing_consecutive_5xx: 90, enforcing_success_rate: 80, success_rate_minimum_hosts: 2,
				success_rate_request_volume: 10, success_rate_stdev_factor: 1000, consecutive_gateway_failure: 0,
				enforcing_consecutive_gateway_failure: 70, split_external_local_origin_errors: true,
				consecutive_local_origin_failure: 4, enforcing_consecutive_local_origin_failure: 60,
				enforcing_local_origin_success_rate: 50, failure_percentage_threshold: 40, enforcing_failure_percentage: 30,
				enforcing_failure_percentage_local_origin: 20, failure_percentage_minimum_hosts: 3,
				failure_percentage_request_volume: 7, max_ejection_time: 10s, max_ejection_time_jitter: 2s,
				successful_active_health_check_uneject_host: false, always_eject_one_host: true, detect_degraded_hosts: false}`,
			want: func(c *Config) {
				*c = Config{
					Interval: 500 * time.Millisecond, BaseEjectionTime: 1234 * time.Millisecond, // whole ms, as Envoy
					MaxEjectionTime: 10 * time.Second, MaxEjectionTimeJitter: 2 * time.Second,
					MaxEjectionPercent: 50, AlwaysEjectOneHost: true,
					Consecutive5xx: 3, ConsecutiveGatewayFailure: 0, ConsecutiveLocalOriginFailure: 4,
					EnforcingConsecutive5xx: 90, EnforcingConsecutiveGatewayFailure: 70, EnforcingConsecutiveLocalOriginFailure: 60,
					EnforcingSuccessRate: 80, EnforcingLocalOriginSuccessRate: 50,
					EnforcingFailurePercentage: 30, EnforcingFailurePercentageLocalOrigin: 20,
					SuccessRateMinimumHosts: 2, SuccessRateRequestVolume: 10, SuccessRateStdevFactor: 1000,
					FailurePercentageThreshold: 40, FailurePercentageMinimumHosts: 3, FailurePercentageRequestVolume: 7,
					SplitExternalLocalOriginErrors: true, SuccessfulActiveHealthCheckUnejectHost: false,
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := Build(parseOD(t, tc.yaml), "od")
			if len(errs) > 0 {
				t.Fatalf("Build: %v", errs)
			}
			want := defaults()
			tc.want(&want)
			if diff := cmp.Diff(want, *got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{name: "max below base", yaml: "{base_ejection_time: 60s, max_ejection_time: 30s}",
			wantErr: "od.max_ejection_time: outlier detector's max_ejection_time cannot be smaller than base_ejection_time"},
		{name: "monitors", yaml: `{monitors: [{name: m, typed_config: {"@type": type.googleapis.com/google.protobuf.Empty}}]}`,
			wantErr: "od.monitors: not supported by herald yet"},
		{name: "degraded hosts", yaml: "{detect_degraded_hosts: true}", wantErr: "od.detect_degraded_hosts: true is not supported by herald yet"},
		{name: "enforcing over 100", yaml: "{enforcing_consecutive_5xx: 101}", wantErr: "od.enforcing_consecutive_5xx: value must be less than or equal to 100"},
		{name: "sub-millisecond interval", yaml: "{interval: 0.0001s}", wantErr: "od.interval: must be at least 1ms"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := Build(parseOD(t, tc.yaml), "od")
			if !strings.Contains(errs.Error(), tc.wantErr) {
				t.Errorf("errors %q, want %q", errs.Error(), tc.wantErr)
			}
		})
	}
}
