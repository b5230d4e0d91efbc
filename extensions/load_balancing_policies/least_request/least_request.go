package leastrequest

import (
	"math"

	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// Name is the Envoy name of the policy.
const Name = "envoy.load_balancing_policies.least_request"

// DefaultChoiceCount is Envoy's default choice_count: two-choice selection.
const DefaultChoiceCount = 2

// DefaultActiveRequestBias is the bias Envoy uses when active_request_bias
// is unset (LeastRequestLoadBalancer::refresh).
const DefaultActiveRequestBias = 1.0

func init() {
	lbpolicy.Register(lbpolicy.Extension[*leastrequestv3.LeastRequest]{
		Name:   Name,
		Config: &leastrequestv3.LeastRequest{},
		Build:  Build,
	})
}

// Build checks cfg. slow_start_config ramps new and recovered hosts up
// (lbpolicy.SlowStart); locality_lb_config.locality_weighted_lb_config
// turns on locality weighted load balancing (the cluster picks the
// locality); zone_aware_lb_config is refused by name. enable_full_scan is accepted without
// effect: Envoy documents it as unused, replaced by selection_method.
// active_request_bias is a RuntimeDouble; herald has no runtime, so its
// default_value is the bias.
func Build(cfg *leastrequestv3.LeastRequest, ctx lbpolicy.BuildContext) (lbpolicy.Policy, error) {
	errs := configerr.CheckFields(cfg, ctx.Path,
		"choice_count", "active_request_bias", "enable_full_scan", "selection_method",
		"slow_start_config", "locality_lb_config")
	ss, serrs := lbpolicy.ParseSlowStart(cfg.GetSlowStartConfig(), ctx.Path+".slow_start_config", ctx.Now)
	errs = append(errs, serrs...)
	lw, lerrs := lbpolicy.ParseLocalityLB(cfg.GetLocalityLbConfig(), ctx.Path+".locality_lb_config")
	errs = append(errs, lerrs...)
	p := &Policy{
		seed:             ctx.Seed,
		choiceCount:      DefaultChoiceCount,
		bias:             DefaultActiveRequestBias,
		fullScan:         cfg.GetSelectionMethod() == leastrequestv3.LeastRequest_FULL_SCAN,
		slowStart:        ss,
		localityWeighted: lw,
	}
	if c := cfg.GetChoiceCount(); c != nil {
		// The proto requires >= 2; the loader validated it.
		p.choiceCount = c.GetValue()
	}
	if b := cfg.GetActiveRequestBias(); b != nil {
		// Envoy: an explicit active_request_bias forces weighted (EDF)
		// selection even with equal weights (runtime guard
		// least_request_lb_active_request_bias_forces_weighted, default on).
		p.alwaysWeighted = true
		p.bias = b.GetDefaultValue()
		// Envoy replaces a negative or NaN bias by 1.0 with a warning at
		// run time; herald has it at load, so it rejects it instead.
		if p.bias < 0 || math.IsNaN(p.bias) {
			errs = append(errs, configerr.At(ctx.Path+".active_request_bias.default_value",
				"must be greater than or equal to 0.0, got %v", p.bias))
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

// Policy is a built least request policy. Immutable after Build.
type Policy struct {
	seed             uint64
	choiceCount      uint32
	bias             float64
	alwaysWeighted   bool
	fullScan         bool
	slowStart        *lbpolicy.SlowStart // nil: no slow start
	localityWeighted bool
}

var _ lbpolicy.LocalityWeighted = (*Policy)(nil)

// LocalityWeighted implements lbpolicy.LocalityWeighted.
func (p *Policy) LocalityWeighted() bool { return p.localityWeighted }

// NewPicker implements lbpolicy.Policy. As Envoy's EdfLoadBalancerBase::refresh,
// the EDF schedule is used when the hosts' weights differ (or the bias was
// configured, or some host is in its slow start window now) and there are
// at least two hosts; otherwise the unweighted pick. With slow start the
// EDF multiplies each host's weight by its slow start factor when it is
// re-inserted (LeastRequestLoadBalancer::hostWeight), read live on pick.
func (p *Policy) NewPicker(hosts []lbpolicy.Host) lbpolicy.Picker {
	rnd := lbpolicy.NewRand(p.seed)
	equal := true
	for _, h := range hosts[1:] {
		if h.Weight() != hosts[0].Weight() {
			equal = false
			break
		}
	}
	if p.slowStart != nil && len(hosts) > 1 && p.slowStart.AnyInWindow(hosts, p.slowStart.Now()) {
		// Until the last window ends; then the picker without slow start.
		return &lbpolicy.SlowStartPicker{
			During: newEDF(hosts, p.bias, p.seed, p.slowStart),
			After:  p.newPicker(hosts, equal, rnd),
			End:    p.slowStart.WindowsEnd(hosts),
			Now:    p.slowStart.Now,
		}
	}
	return p.newPicker(hosts, equal, rnd)
}

// newPicker is the picker without slow start.
func (p *Policy) newPicker(hosts []lbpolicy.Host, equal bool, rnd *lbpolicy.Rand) lbpolicy.Picker {
	if (equal && !p.alwaysWeighted) || len(hosts) <= 1 {
		if p.fullScan {
			return &fullScan{hosts: hosts, rand: rnd}
		}
		return &nChoices{hosts: hosts, n: uint64(len(hosts)), choices: p.choiceCount, rand: rnd}
	}
	return newEDF(hosts, p.bias, p.seed, nil)
}

// nChoices is Envoy's unweightedHostPickNChoices: choice_count random hosts
// (with replacement), the one with the fewest active requests wins, the
// earlier sample on a tie.
type nChoices struct {
	hosts   []lbpolicy.Host
	n       uint64
	choices uint32
	rand    *lbpolicy.Rand
}

// Pick implements lbpolicy.Picker.
func (c *nChoices) Pick(*lbpolicy.Context) int {
	best := int(c.rand.Uint64() % c.n)
	bestActive := c.hosts[best].ActiveRequests()
	for range c.choices - 1 {
		i := int(c.rand.Uint64() % c.n)
		if a := c.hosts[i].ActiveRequests(); a < bestActive {
			best, bestActive = i, a
		}
	}
	return best
}

// fullScan is Envoy's unweightedHostPickFullScan: the host with the fewest
// active requests, ties broken uniformly by reservoir sampling.
type fullScan struct {
	hosts []lbpolicy.Host
	rand  *lbpolicy.Rand
}

// Pick implements lbpolicy.Picker.
func (f *fullScan) Pick(*lbpolicy.Context) int {
	best := 0
	bestActive := f.hosts[0].ActiveRequests()
	var tied uint64 = 1
	for i := 1; i < len(f.hosts); i++ {
		a := f.hosts[i].ActiveRequests()
		switch {
		case a < bestActive:
			best, bestActive, tied = i, a, 1
		case a == bestActive:
			tied++
			if f.rand.Uint64()%tied == 0 {
				best = i
			}
		}
	}
	return best
}
