package upstream

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/upstream/clustertype"
	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// Locality weighted load balancing
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/locality_weight):
// after the priority, a locality is picked by a weighted round robin
// (Envoy's EDF scheduler) over the localities' effective weights, then a
// host in it by the cluster's policy. A locality's effective weight is
//
//	locality_weight × min(1, overprovisioning_factor/100 × healthy/total)
//
// (Envoy's HostSetImpl::effectiveLocalityWeight), so a locality keeps its
// full weight until more than about 30% of its hosts are unhealthy.

// lbOptions are the cluster's load balancing settings around its policy.
// Immutable after build.
type lbOptions struct {
	// localityWeighted: common_lb_config.locality_weighted_lb_config, or
	// the typed policy's locality_lb_config.locality_weighted_lb_config.
	localityWeighted bool
	// hashPriority: the policy hashes (ring_hash, maglev), so the
	// request's hash chooses the priority, as Envoy's
	// ThreadAwareLoadBalancerBase does; other policies choose it at random.
	hashPriority bool
	// rand chooses priorities for requests without a hash.
	rand *lbpolicy.Rand
}

// parseLocalityLB reads common_lb_config's locality settings once the
// policy is built. Zone aware routing is refused by name: it needs
// cluster_manager.local_cluster_name. Locality weighting with a hashing
// policy is refused: Envoy folds the locality weights into the ring's
// host weights there, which herald does not do yet.
func (c *Cluster) parseLocalityLB(cfg *clusterv3.Cluster, path string, seed uint64) configerr.List {
	var errs configerr.List
	cl := cfg.GetCommonLbConfig()
	if cl.GetZoneAwareLbConfig() != nil {
		errs = append(errs, configerr.At(path+".common_lb_config.zone_aware_lb_config",
			"zone aware routing is %s (it needs cluster_manager.local_cluster_name)", configerr.NotSupported))
	}
	c.lb.localityWeighted = cl.GetLocalityWeightedLbConfig() != nil
	if lw, ok := c.policy.(lbpolicy.LocalityWeighted); ok && lw.LocalityWeighted() {
		c.lb.localityWeighted = true
	}
	if _, ok := c.policy.(lbpolicy.HashingPolicy); ok {
		c.lb.hashPriority = true
		if cl.GetLocalityWeightedLbConfig() != nil {
			errs = append(errs, configerr.At(path+".common_lb_config.locality_weighted_lb_config",
				"locality weighted load balancing with %s is %s", cfg.GetLbPolicy(), configerr.NotSupported))
		}
	}
	c.lb.rand = lbpolicy.NewRand(seed)
	return errs
}

// localityHosts are one locality's healthy hosts in a priority level and
// the policy's picker over them.
type localityHosts struct {
	hosts  []*Host
	picker lbpolicy.Picker
}

// effectiveLocalityWeight is Envoy's HostSetImpl::effectiveLocalityWeight.
func effectiveLocalityWeight(weight uint32, healthy, total int, factor uint32) float64 {
	if total == 0 {
		return 0
	}
	ratio := float64(healthy) / float64(total)
	return float64(weight) * min(1, float64(factor)/100*ratio)
}

// buildLocalities groups a level's hosts by locality (in order of first
// appearance) and returns the localities with healthy hosts and a
// scheduler over their effective weights; nil when no locality has a
// positive effective weight (Envoy's chooseHealthyLocality returns none
// and the level's healthy hosts are used).
func buildLocalities(hosts []*Host, policy lbpolicy.Policy, seed uint64) ([]localityHosts, *localityEDF) {
	type group struct {
		loc     clustertype.Locality
		weight  uint32
		factor  uint32
		all     int
		healthy []*Host
	}
	var groups []*group
	for _, h := range hosts {
		p := h.Placement()
		var g *group
		for _, x := range groups {
			if x.loc == p.Locality {
				g = x
				break
			}
		}
		if g == nil {
			g = &group{loc: p.Locality, weight: p.LocalityWeight, factor: p.Overprovisioning()}
			groups = append(groups, g)
		}
		g.all++
		if h.Healthy() {
			g.healthy = append(g.healthy, h)
		}
	}
	var locs []localityHosts
	var weights []float64
	for _, g := range groups {
		w := effectiveLocalityWeight(g.weight, len(g.healthy), g.all, g.factor)
		if w <= 0 {
			continue
		}
		locs = append(locs, localityHosts{hosts: g.healthy, picker: policy.NewPicker(asLBHosts(g.healthy))})
		weights = append(weights, w)
	}
	if len(locs) == 0 {
		return nil, nil
	}
	return locs, newLocalityEDF(weights, seed)
}

// localityEDF is Envoy's EDF scheduler over localities (lbpolicy.EDF):
// the locality with the earliest deadline is picked and its deadline
// moves 1/weight later. Localities are few, so the scan is short.
type localityEDF struct {
	inv   []float64 // 1/weight
	sched *lbpolicy.EDF
}

func newLocalityEDF(weights []float64, seed uint64) *localityEDF {
	e := &localityEDF{inv: make([]float64, len(weights))}
	for i, w := range weights {
		e.inv[i] = 1 / w
	}
	e.sched = lbpolicy.NewEDF(len(weights), e, seed)
	return e
}

// Inverse implements lbpolicy.EDFWeights.
func (e *localityEDF) Inverse(i int) float64 { return e.inv[i] }

// pick returns a locality index.
func (e *localityEDF) pick() int { return e.sched.Pick(e) }

// asLBHosts converts hosts to the policy's view (allocates; build time only).
func asLBHosts(hosts []*Host) []lbpolicy.Host {
	lh := make([]lbpolicy.Host, len(hosts))
	for i, h := range hosts {
		lh[i] = h
	}
	return lh
}
