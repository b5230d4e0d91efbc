package upstream

import (
	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// LBContext is what a request tells the load balancer.
type LBContext = lbpolicy.Context

// DefaultHealthyPanicThreshold is Envoy's default
// common_lb_config.healthy_panic_threshold: 50%
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/panic_threshold).
const DefaultHealthyPanicThreshold = 50.0

// HostSet is an immutable snapshot of a cluster's membership and the picker
// over it, published through an atomic pointer whenever membership or
// health changes; a request does one atomic load and one Pick.
type HostSet struct {
	// Hosts are all members, in discovery order.
	Hosts []*Host
	// Healthy is the number of healthy members.
	Healthy int

	// pick are the hosts the picker indexes: the healthy ones, or all of
	// them in panic mode.
	pick   []*Host
	picker lbpolicy.Picker
	panic  bool
}

// newHostSet builds the snapshot. Envoy: a host set is in panic when the
// percentage of healthy hosts is below the threshold; then the load balancer
// uses all hosts, ignoring health.
func newHostSet(hosts []*Host, policy lbpolicy.Policy, panicThreshold float64) *HostSet {
	hs := &HostSet{Hosts: hosts}
	healthy := make([]*Host, 0, len(hosts))
	for _, h := range hosts {
		if h.Healthy() {
			healthy = append(healthy, h)
		}
	}
	hs.Healthy = len(healthy)
	hs.pick = healthy
	if len(hosts) > 0 && 100*float64(len(healthy))/float64(len(hosts)) < panicThreshold {
		hs.panic = true
		hs.pick = hosts
	}
	if len(hs.pick) > 0 {
		lh := make([]lbpolicy.Host, len(hs.pick))
		for i, h := range hs.pick {
			lh[i] = h
		}
		hs.picker = policy.NewPicker(lh)
	}
	return hs
}

// Pick chooses a host for one request; lb may be nil. It returns nil when
// the cluster has no host to offer and counts upstream_cx_none_healthy
// then (Envoy counts it where the router gets no host); in panic mode it
// counts lb_healthy_panic. It does not allocate or lock.
func (c *Cluster) Pick(lb *LBContext) *Host {
	hs := c.hostSet.Load()
	if hs.picker == nil {
		c.Stats.UpstreamCxNoneHealthy.Inc()
		return nil
	}
	if hs.panic {
		c.Stats.LbHealthyPanic.Inc()
	}
	if lb == nil {
		lb = &noContext
	}
	i := hs.picker.Pick(lb)
	if i < 0 || i >= len(hs.pick) {
		c.Stats.UpstreamCxNoneHealthy.Inc()
		return nil
	}
	return hs.pick[i]
}

var noContext LBContext

// HostSet returns the current membership snapshot.
func (c *Cluster) HostSet() *HostSet { return c.hostSet.Load() }
