package fractional

import (
	"math/rand/v2"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

// Percent is a compiled FractionalPercent: Numerator out of Denominator.
// herald has no runtime layer, so a RuntimeFractionalPercent is its
// default_value (what Envoy uses while runtime_key is unset). Immutable.
type Percent struct {
	Numerator, Denominator uint64
}

var (
	// Always is 100%.
	Always = Percent{Numerator: 1, Denominator: 1}
	// Never is 0%.
	Never = Percent{Numerator: 0, Denominator: 1}
)

// New compiles p; a nil p is 0 out of 100, and the denominator defaults to
// HUNDRED.
func New(p *typev3.FractionalPercent) Percent {
	d := uint64(100)
	switch p.GetDenominator() {
	case typev3.FractionalPercent_TEN_THOUSAND:
		d = 10000
	case typev3.FractionalPercent_MILLION:
		d = 1000000
	}
	return Percent{Numerator: uint64(p.GetNumerator()), Denominator: d}
}

// Runtime compiles a RuntimeFractionalPercent as its default_value; an
// unset p is def.
func Runtime(p *corev3.RuntimeFractionalPercent, def Percent) Percent {
	if p == nil {
		return def
	}
	return New(p.GetDefaultValue())
}

// Hit draws as Envoy's Runtime featureEnabled: a random value modulo the
// denominator below the numerator. math/rand/v2's global source neither
// locks nor allocates.
func (f Percent) Hit() bool {
	if f.Numerator >= f.Denominator {
		return true
	}
	if f.Numerator == 0 {
		return false
	}
	return rand.Uint64N(f.Denominator) < f.Numerator
}
