package localratelimit

import (
	"math/rand/v2"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

// fraction is a compiled FractionalPercent: numerator out of denominator.
// herald has no runtime layer, so a RuntimeFractionalPercent is its
// default_value (what Envoy uses while runtime_key is unset).
type fraction struct {
	numerator, denominator uint64
}

var (
	always = fraction{numerator: 1, denominator: 1}
	never  = fraction{numerator: 0, denominator: 1}
)

func newFraction(p *typev3.FractionalPercent) fraction {
	d := uint64(100)
	switch p.GetDenominator() {
	case typev3.FractionalPercent_TEN_THOUSAND:
		d = 10000
	case typev3.FractionalPercent_MILLION:
		d = 1000000
	}
	return fraction{numerator: uint64(p.GetNumerator()), denominator: d}
}

// runtimeFraction compiles a RuntimeFractionalPercent; unset is def.
func runtimeFraction(p *corev3.RuntimeFractionalPercent, def fraction) fraction {
	if p == nil {
		return def
	}
	return newFraction(p.GetDefaultValue())
}

// hit draws as Envoy's Runtime featureEnabled: a random value modulo the
// denominator below the numerator. math/rand/v2's global source neither
// locks nor allocates.
func (f fraction) hit() bool {
	if f.numerator >= f.denominator {
		return true
	}
	if f.numerator == 0 {
		return false
	}
	return rand.Uint64N(f.denominator) < f.numerator
}
