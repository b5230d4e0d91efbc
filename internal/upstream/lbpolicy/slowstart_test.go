package lbpolicy

import (
	"math"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/common/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

type ssHost struct {
	since   time.Time
	healthy bool
}

func (ssHost) Weight() uint32        { return 1 }
func (ssHost) ActiveRequests() int64 { return 0 }
func (h ssHost) HealthySince() (time.Time, bool) {
	return h.since, h.healthy && !h.since.IsZero()
}

type plainHost struct{}

func (plainHost) Weight() uint32        { return 1 }
func (plainHost) ActiveRequests() int64 { return 0 }

// TestSlowStartFactor checks Envoy's applySlowStartFactor:
// max(min_weight, (time_in_window/window)^(1/aggression)) inside the window,
// 1 outside it or for hosts that are not healthy
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/slow_start).
func TestSlowStartFactor(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name       string
		aggression float64
		minWeight  float64
		host       Host
		at         time.Duration // since t0
		want       float64
	}{
		{name: "start of window uses the minimum", aggression: 1, minWeight: 0.1, host: ssHost{since: t0, healthy: true}, at: 0, want: 0.1},
		{name: "half way linear", aggression: 1, minWeight: 0.1, host: ssHost{since: t0, healthy: true}, at: 5 * time.Second, want: 0.5},
		{name: "end of window", aggression: 1, minWeight: 0.1, host: ssHost{since: t0, healthy: true}, at: 10 * time.Second, want: 1},
		{name: "after the window", aggression: 1, minWeight: 0.1, host: ssHost{since: t0, healthy: true}, at: time.Hour, want: 1},
		// Aggression 2: time_factor^(1/2), faster at first.
		{name: "aggression 2 at a quarter", aggression: 2, minWeight: 0.1, host: ssHost{since: t0, healthy: true}, at: 2500 * time.Millisecond, want: 0.5},
		// Aggression 0.5: time_factor^2, slower at first.
		{name: "aggression 0.5 half way", aggression: 0.5, minWeight: 0, host: ssHost{since: t0, healthy: true}, at: 5 * time.Second, want: 0.25},
		// At least 1 ms counts (Envoy: max(1ms, in_healthy_state_duration)).
		{name: "min weight 0 counts one millisecond", aggression: 1, minWeight: 0, host: ssHost{since: t0, healthy: true}, at: 0, want: 0.0001},
		{name: "unhealthy host", aggression: 1, minWeight: 0.1, host: ssHost{since: t0, healthy: false}, at: 0, want: 1},
		{name: "unknown time", aggression: 1, minWeight: 0.1, host: ssHost{healthy: true}, at: 0, want: 1},
		{name: "host without slow start", aggression: 1, minWeight: 0.1, host: plainHost{}, at: 0, want: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &SlowStart{Window: 10 * time.Second, Aggression: tc.aggression, MinWeight: tc.minWeight}
			if got := s.Factor(tc.host, t0.Add(tc.at)); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("Factor = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseSlowStart(t *testing.T) {
	tests := []struct {
		name    string
		cfg     *commonv3.SlowStartConfig
		want    *SlowStart // Now ignored
		wantErr string
	}{
		{name: "nil", cfg: nil, want: nil},
		{name: "defaults", cfg: &commonv3.SlowStartConfig{SlowStartWindow: durationpb.New(30 * time.Second)},
			want: &SlowStart{Window: 30 * time.Second, Aggression: 1, MinWeight: 0.1}},
		{name: "all set", cfg: &commonv3.SlowStartConfig{SlowStartWindow: durationpb.New(time.Second),
			Aggression: &corev3.RuntimeDouble{DefaultValue: 2, RuntimeKey: "k"}, MinWeightPercent: &typev3.Percent{Value: 25}},
			want: &SlowStart{Window: time.Second, Aggression: 2, MinWeight: 0.25}},
		// Envoy: slow start is on only with a window above zero.
		{name: "no window", cfg: &commonv3.SlowStartConfig{}, want: nil},
		{name: "aggression 0", cfg: &commonv3.SlowStartConfig{SlowStartWindow: durationpb.New(time.Second),
			Aggression: &corev3.RuntimeDouble{DefaultValue: 0, RuntimeKey: "k"}},
			wantErr: "p.aggression.default_value: must be greater than 0.0, got 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := ParseSlowStart(tc.cfg, "p", nil)
			if tc.wantErr != "" {
				if errs.Err() == nil || !strings.Contains(errs.Err().Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", errs.Err(), tc.wantErr)
				}
				return
			}
			if errs.Err() != nil {
				t.Fatal(errs.Err())
			}
			if (got == nil) != (tc.want == nil) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if got != nil && (got.Window != tc.want.Window || got.Aggression != tc.want.Aggression || got.MinWeight != tc.want.MinWeight || got.Now == nil) {
				t.Errorf("got %+v, want %+v with a clock", got, tc.want)
			}
		})
	}
}
