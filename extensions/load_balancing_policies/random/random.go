package random

import (
	randomv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/random/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// Name is the Envoy name of the policy.
const Name = "envoy.load_balancing_policies.random"

func init() {
	lbpolicy.Register(lbpolicy.Extension[*randomv3.Random]{
		Name:   Name,
		Config: &randomv3.Random{},
		Build:  Build,
	})
}

// Build checks cfg. locality_lb_config.locality_weighted_lb_config turns
// on locality weighted load balancing (the cluster picks the locality);
// zone_aware_lb_config is refused by name.
func Build(cfg *randomv3.Random, ctx lbpolicy.BuildContext) (lbpolicy.Policy, error) {
	errs := configerr.CheckFields(cfg, ctx.Path, "locality_lb_config")
	lw, lerrs := lbpolicy.ParseLocalityLB(cfg.GetLocalityLbConfig(), ctx.Path+".locality_lb_config")
	errs = append(errs, lerrs...)
	if len(errs) > 0 {
		return nil, errs
	}
	return &Policy{seed: ctx.Seed, localityWeighted: lw}, nil
}

// Policy is a built random policy.
type Policy struct {
	seed             uint64
	localityWeighted bool
}

var _ lbpolicy.LocalityWeighted = (*Policy)(nil)

// LocalityWeighted implements lbpolicy.LocalityWeighted.
func (p *Policy) LocalityWeighted() bool { return p.localityWeighted }

// NewPicker implements lbpolicy.Policy.
func (p *Policy) NewPicker(hosts []lbpolicy.Host) lbpolicy.Picker {
	return &picker{n: uint64(len(hosts)), rand: lbpolicy.NewRand(p.seed)}
}

// picker chooses uniformly: Envoy's RandomLoadBalancer::peekOrChoose returns
// hosts_to_use[random_hash % hosts_to_use.size()]
// (source/extensions/load_balancing_policies/random/random_lb.cc).
type picker struct {
	n    uint64
	rand *lbpolicy.Rand
}

// Pick implements lbpolicy.Picker.
func (p *picker) Pick(*lbpolicy.Context) int {
	return int(p.rand.Uint64() % p.n)
}
