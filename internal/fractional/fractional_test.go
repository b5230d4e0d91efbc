package fractional

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

func TestNewAndRuntime(t *testing.T) {
	tests := []struct {
		name string
		got  Percent
		want Percent
	}{
		{name: "nil is 0 of 100", got: New(nil), want: Percent{Numerator: 0, Denominator: 100}},
		{name: "hundred", got: New(&typev3.FractionalPercent{Numerator: 5}), want: Percent{Numerator: 5, Denominator: 100}},
		{
			name: "ten thousand",
			got:  New(&typev3.FractionalPercent{Numerator: 5, Denominator: typev3.FractionalPercent_TEN_THOUSAND}),
			want: Percent{Numerator: 5, Denominator: 10000},
		},
		{
			name: "million",
			got:  New(&typev3.FractionalPercent{Numerator: 5, Denominator: typev3.FractionalPercent_MILLION}),
			want: Percent{Numerator: 5, Denominator: 1000000},
		},
		{name: "unset runtime is the default", got: Runtime(nil, Always), want: Always},
		{
			name: "runtime is its default_value",
			got: Runtime(&corev3.RuntimeFractionalPercent{
				DefaultValue: &typev3.FractionalPercent{Numerator: 7},
				RuntimeKey:   "k",
			}, Always),
			want: Percent{Numerator: 7, Denominator: 100},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %+v, want %+v", tc.got, tc.want)
			}
		})
	}
}

func TestHit(t *testing.T) {
	tests := []struct {
		name string
		p    Percent
		want bool
	}{
		{name: "always", p: Always, want: true},
		{name: "never", p: Never, want: false},
		{name: "100 of 100", p: Percent{Numerator: 100, Denominator: 100}, want: true},
		{name: "over 100%", p: Percent{Numerator: 200, Denominator: 100}, want: true},
		{name: "0 of a million", p: Percent{Numerator: 0, Denominator: 1000000}, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for range 100 {
				if got := tc.p.Hit(); got != tc.want {
					t.Fatalf("Hit() = %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// TestHitDraws checks that a fraction between 0 and 1 both hits and misses.
func TestHitDraws(t *testing.T) {
	p := Percent{Numerator: 1, Denominator: 2}
	var hits, misses int
	for range 1000 {
		if p.Hit() {
			hits++
		} else {
			misses++
		}
	}
	if hits == 0 || misses == 0 {
		t.Errorf("1/2 over 1000 draws: %d hits, %d misses; want both", hits, misses)
	}
}
