package upstream

import (
	"math/bits"
	"time"

	"github.com/herald-proxy/herald/internal/upstream/clustertype"
	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// Priority levels
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/priority):
// each LocalityLbEndpoints has a priority, 0 the highest; a priority's
// health is min(100, overprovisioning_factor × healthy/total), and the
// load of 100% is given to priorities in order until their health is used
// up, the rest spilling to the next. The arithmetic below is Envoy's
// LoadBalancerBase::recalculatePerPriorityState, recalculatePerPriorityPanic
// and recalculateLoadInTotalPanic
// (source/extensions/load_balancing_policies/common/load_balancer_impl.cc),
// integer percentages and all. herald has no degraded hosts (EDS DEGRADED
// is refused) and no excluded hosts, so those terms are zero.

// levelHealth is what the load computation needs of one priority level.
type levelHealth struct {
	// hosts and healthy count the level's hosts.
	hosts, healthy int
	// totalWeight and healthyWeight are what health is computed from:
	// the counts, or the summed load_balancing_weights with
	// weighted_priority_health.
	totalWeight, healthyWeight uint64
	// factor is the overprovisioning factor in percent (140 = 1.4).
	factor uint32
}

// health is Envoy's per-priority health: min(100, factor × healthy / total),
// integer division, 0 for an empty level.
func (l levelHealth) health() uint32 {
	if l.hosts == 0 || l.totalWeight == 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(l.factor), l.healthyWeight)
	if hi >= l.totalWeight {
		return 100 // the quotient does not fit 64 bits: far above 100
	}
	q, _ := bits.Div64(hi, lo, l.totalWeight)
	return uint32(min(q, 100))
}

// inPanic is Envoy's isHostSetInPanic: the level's healthy percentage
// (by host count, never weight) is below the threshold; an empty level
// counts as 0% healthy.
func (l levelHealth) inPanic(threshold float64) bool {
	pct := 0.0
	if l.hosts > 0 {
		pct = 100 * float64(l.healthy) / float64(l.hosts)
	}
	return pct < threshold
}

// priorityLoads returns each level's share of the traffic in percent
// (summing to 100) and whether each level is in panic (then it uses all
// its hosts, ignoring health).
//
// Envoy: the normalized total availability is min(100, Σ health). Load is
// handed out in priority order, each level getting
// min(remaining, health × 100 / normalized); what rounding leaves goes to
// the first level with health. A level is in panic only when the
// normalized total is below 100 and its own healthy percentage is below
// the panic threshold. When every level is in panic ("total panic") the
// load follows the levels' host counts instead. With a zero threshold and
// no healthy host anywhere, P0 gets 100% (and nothing is picked).
func priorityLoads(levels []levelHealth, panicThreshold float64) (load []uint32, panics []bool) {
	n := len(levels)
	load = make([]uint32, n)
	panics = make([]bool, n)
	if n == 0 {
		return load, panics
	}
	health := make([]uint32, n)
	var sum uint32
	for i, l := range levels {
		health[i] = l.health()
		sum += health[i]
	}
	normalized := min(sum, 100)
	if normalized > 0 {
		remaining := uint32(100)
		first := -1
		for i, h := range health {
			if first < 0 && h > 0 {
				first = i
			}
			load[i] = min(remaining, h*100/normalized)
			remaining -= load[i]
		}
		if remaining > 0 {
			load[first] += remaining
		}
	}
	if panicThreshold <= 0 && normalized == 0 {
		load[0] = 100
		return load, panics
	}
	total := true
	for i, l := range levels {
		panics[i] = normalized != 100 && l.inPanic(panicThreshold)
		total = total && panics[i]
	}
	if total {
		// recalculateLoadInTotalPanic: shares by host count.
		hosts := 0
		for _, l := range levels {
			hosts += l.hosts
		}
		clear(load)
		if hosts == 0 {
			load[0] = 100
			return load, panics
		}
		remaining := uint32(100)
		first := -1
		for i, l := range levels {
			if first < 0 && l.hosts > 0 {
				first = i
			}
			load[i] = uint32(100 * l.hosts / hosts)
			remaining -= load[i]
		}
		load[first] += remaining
	}
	return load, panics
}

// choosePriority is Envoy's LoadBalancerBase::choosePriority: r % 100 + 1
// against the running sum of the loads.
func choosePriority(r uint64, cumLoad []uint32) int {
	p := uint32(r%100) + 1
	for i, c := range cumLoad {
		if p <= c {
			return i
		}
	}
	return 0
}

// Placement returns the host's priority, locality and assignment policy.
func (h *Host) Placement() clustertype.Placement {
	if p := h.placement.Load(); p != nil {
		return *p
	}
	return clustertype.Placement{}
}

// Priority returns the host's LocalityLbEndpoints priority.
func (h *Host) Priority() uint32 { return h.Placement().Priority }

// setPlacement records p; it reports whether it changed.
func (h *Host) setPlacement(p clustertype.Placement) bool {
	if cur := h.placement.Load(); cur != nil && *cur == p {
		return false
	}
	if cur := h.placement.Load(); cur == nil && p == (clustertype.Placement{}) {
		return false
	}
	h.placement.Store(&p)
	return true
}

var _ lbpolicy.SlowStartHost = (*Host)(nil)

// HealthySince implements lbpolicy.SlowStartHost: when the host last
// became healthy, for slow start; ok is false while it is unhealthy.
func (h *Host) HealthySince() (time.Time, bool) {
	t := h.healthySince.Load()
	if t == nil || !h.Healthy() {
		return time.Time{}, false
	}
	return *t, true
}

// stampHealthy records when hosts became healthy, as Envoy's
// lastHcPassTime: a host healthy for the first time (added healthy, or
// its first health check passed) and one that active health checking
// turned healthy again get now. Leaving outlier ejection or EDS
// unhealthiness does not restart the ramp (Envoy sets lastHcPassTime only
// from active health checks and, when unset, from the load balancer's
// refresh). Called under Cluster.mu by every host set build.
func stampHealthy(hosts []*Host, now time.Time) {
	for _, h := range hosts {
		f := h.HealthFlags()
		if f == 0 && (h.healthySince.Load() == nil || h.lbFlags&activeHCFlags != 0) {
			t := now
			h.healthySince.Store(&t)
		}
		h.lbFlags = f
	}
}
