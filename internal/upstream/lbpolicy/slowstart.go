package lbpolicy

import (
	"math"
	"time"

	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/common/v3"

	"github.com/herald-proxy/herald/internal/configerr"
)

// SlowStartHost is implemented by hosts that know since when they are
// healthy (Envoy's Host::lastHcPassTime): set when the host joined the
// cluster healthy, or when active health checking turned it healthy
// again. The cluster's host type implements it.
type SlowStartHost interface {
	Host
	// HealthySince returns the time the host last became healthy; ok is
	// false while the host is not healthy or the time is unknown, and then
	// slow start does not apply to it.
	HealthySince() (t time.Time, ok bool)
}

// Defaults of SlowStartConfig
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/load_balancing_policies/common/v3/common.proto#extensions-load-balancing-policies-common-v3-slowstartconfig).
const (
	// DefaultSlowStartAggression: aggression "defaults to 1.0", a linear
	// ramp.
	DefaultSlowStartAggression = 1.0
	// DefaultSlowStartMinWeightPercent: min_weight_percent "If not
	// specified, the default is 10%."
	DefaultSlowStartMinWeightPercent = 10.0
)

// SlowStart is a built slow start mode: a host's weight ramps up over
// Window from when it became healthy
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/slow_start).
// Immutable after ParseSlowStart.
type SlowStart struct {
	// Window is slow_start_window; a zero window disables slow start.
	Window time.Duration
	// Aggression is aggression.default_value (herald has no runtime).
	Aggression float64
	// MinWeight is min_weight_percent as a fraction (0.1 for 10%).
	MinWeight float64
	// Now is the clock; BuildContext.Now, or time.Now.
	Now func() time.Time
}

// ParseSlowStart builds cfg (nil: no slow start, nil result). path names
// cfg for errors.
func ParseSlowStart(cfg *commonv3.SlowStartConfig, path string, now func() time.Time) (*SlowStart, configerr.List) {
	if cfg == nil {
		return nil, nil
	}
	errs := configerr.CheckFields(cfg, path, "slow_start_window", "aggression", "min_weight_percent")
	s := &SlowStart{
		Window:     cfg.GetSlowStartWindow().AsDuration(),
		Aggression: DefaultSlowStartAggression,
		MinWeight:  DefaultSlowStartMinWeightPercent / 100,
		Now:        now,
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if a := cfg.GetAggression(); a != nil {
		s.Aggression = a.GetDefaultValue()
		// Envoy logs an error and uses 1.0 for aggression <= 0 or NaN at
		// run time; herald knows it at load and refuses it.
		if !(s.Aggression > 0) {
			errs = append(errs, configerr.At(path+".aggression.default_value", "must be greater than 0.0, got %v", s.Aggression))
		}
	}
	if p := cfg.GetMinWeightPercent(); p != nil {
		s.MinWeight = p.GetValue() / 100
	}
	if s.Window < 0 {
		errs = append(errs, configerr.At(path+".slow_start_window", "must not be negative"))
	}
	if errs.Err() != nil {
		return nil, errs
	}
	if s.Window == 0 {
		// Envoy: slow start is enabled when slow_start_window > 0.
		return nil, nil
	}
	return s, nil
}

// Factor returns what h's weight is multiplied by at now: Envoy's
// EdfLoadBalancerBase::applySlowStartFactor. For a healthy host with a
// known healthy-since time less than Window ago it is
// max(time_factor^(1/aggression), min_weight), time_factor being the
// time in the window (at least 1 ms) over the window, in milliseconds as
// Envoy counts; otherwise 1.
func (s *SlowStart) Factor(h Host, now time.Time) float64 {
	sh, ok := h.(SlowStartHost)
	if !ok {
		return 1
	}
	since, ok := sh.HealthySince()
	if !ok {
		return 1
	}
	in := now.Sub(since).Milliseconds()
	window := s.Window.Milliseconds()
	if in >= window {
		return 1
	}
	tf := float64(max(in, 1)) / float64(window)
	f := tf
	if s.Aggression != 1 {
		f = math.Pow(tf, 1/s.Aggression)
	}
	return max(f, s.MinWeight)
}

// AnyInWindow reports whether some host is in its slow start window at
// now (Envoy's !noHostsAreInSlowStart). A picker made then must weigh
// hosts live; one made when no host is in the window may use the plain
// weights.
func (s *SlowStart) AnyInWindow(hosts []Host, now time.Time) bool {
	for _, h := range hosts {
		if s.Factor(h, now) < 1 {
			return true
		}
	}
	return false
}

// LocalityWeighted is implemented by policies whose typed config turns on
// locality weighted load balancing (locality_lb_config.locality_weighted_lb_config);
// the cluster then picks a locality before the policy picks a host in it.
type LocalityWeighted interface {
	Policy
	// LocalityWeighted reports whether locality weighting is on.
	LocalityWeighted() bool
}

// ParseLocalityLB reads a typed policy's locality_lb_config: whether
// locality weighted load balancing is on. Zone aware routing is refused
// by name: it needs cluster_manager.local_cluster_name, which herald does
// not support.
func ParseLocalityLB(cfg *commonv3.LocalityLbConfig, path string) (bool, configerr.List) {
	if cfg == nil {
		return false, nil
	}
	if cfg.GetZoneAwareLbConfig() != nil {
		return false, configerr.List{configerr.At(path+".zone_aware_lb_config",
			"zone aware routing is %s (it needs cluster_manager.local_cluster_name)", configerr.NotSupported)}
	}
	return cfg.GetLocalityWeightedLbConfig() != nil, nil
}

// WindowsEnd returns when the last of hosts leaves its slow start window
// (the zero time when none is in one).
func (s *SlowStart) WindowsEnd(hosts []Host) time.Time {
	var end time.Time
	for _, h := range hosts {
		sh, ok := h.(SlowStartHost)
		if !ok {
			continue
		}
		if since, ok := sh.HealthySince(); ok && since.Add(s.Window).After(end) {
			end = since.Add(s.Window)
		}
	}
	return end
}

// SlowStartPicker uses During until every host made it out of its slow
// start window, then After: a picker made while hosts ramp up does not
// keep the live-weight schedule's cost once the ramp is over (the
// pickers are rebuilt only on membership or health changes). A pick
// costs one clock read more than During's or After's.
type SlowStartPicker struct {
	During, After Picker
	// End is WindowsEnd of the hosts.
	End time.Time
	Now func() time.Time
}

// Pick implements Picker.
func (p *SlowStartPicker) Pick(ctx *Context) int {
	if p.Now().Before(p.End) {
		return p.During.Pick(ctx)
	}
	return p.After.Pick(ctx)
}
