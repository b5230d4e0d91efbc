package upstream

import (
	"slices"

	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// LBContext is what a request tells the load balancer.
type LBContext = lbpolicy.Context

// DefaultHealthyPanicThreshold is Envoy's default
// common_lb_config.healthy_panic_threshold: 50%
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/panic_threshold).
const DefaultHealthyPanicThreshold = 50.0

// HostSet is an immutable snapshot of a cluster's membership and the
// pickers over it, published through an atomic pointer whenever
// membership or health changes; a request does one atomic load and one
// Pick.
//
// Envoy's PrioritySet: the hosts are split into priority levels
// (priority.go), each with its own health, panic state, share of the load
// and picker; with locality weighted load balancing each level also has a
// picker per locality and a scheduler over the localities (locality.go).
type HostSet struct {
	// Hosts are all members, in discovery order.
	Hosts []*Host
	// Healthy is the number of healthy members, over all priorities.
	Healthy int

	// levels are the non-empty priority levels, highest priority (lowest
	// number) first; at least one, empty when the cluster is.
	levels []priorityLevel
	// cumLoad[i] is the load of levels[0..i] in percent; the last is 100.
	cumLoad []uint32
	// rand and hashPriority choose the level for a request (lbOptions).
	rand         *lbpolicy.Rand
	hashPriority bool
}

// priorityLevel is one priority's hosts (Envoy's HostSet).
type priorityLevel struct {
	priority uint32
	hosts    []*Host
	healthy  int
	// load is the level's share of requests in percent.
	load uint32
	// panic: too few healthy hosts; pick is then all hosts.
	panic bool
	// pick are the hosts picker indexes: the healthy ones, or all of them
	// in panic; picker is nil when pick is empty.
	pick   []*Host
	picker lbpolicy.Picker
	// localities and localityEDF are set with locality weighted load
	// balancing when some locality has a positive effective weight.
	localities  []localityHosts
	localityEDF *localityEDF
}

// newHostSet builds the snapshot; called under c.mu (it stamps the
// hosts' slow start times). Envoy: the priority loads and panic states
// are recomputed whenever a level's membership or health changes.
func (c *Cluster) newHostSet(hosts []*Host) *HostSet {
	now := c.now()
	stampHealthy(hosts, now)
	hs := &HostSet{Hosts: hosts, rand: c.lb.rand, hashPriority: c.lb.hashPriority}

	// Group by priority, keeping discovery order within a level.
	byPrio := map[uint32][]*Host{}
	var prios []uint32
	for _, h := range hosts {
		p := h.Priority()
		if _, ok := byPrio[p]; !ok {
			prios = append(prios, p)
		}
		byPrio[p] = append(byPrio[p], h)
		if h.Healthy() {
			hs.Healthy++
		}
	}
	slices.Sort(prios)
	if len(prios) == 0 {
		// An empty cluster: one empty level.
		prios = []uint32{0}
	}
	// Empty priorities between the used ones have zero health, zero load
	// and no hosts, so leaving them out changes no level's load or panic
	// state (an empty level is in panic exactly when the threshold is
	// positive, which cannot break a total panic that needs all levels).
	health := make([]levelHealth, len(prios))
	hs.levels = make([]priorityLevel, len(prios))
	for i, p := range prios {
		lvl := &hs.levels[i]
		lvl.priority = p
		lvl.hosts = byPrio[p]
		lh := levelHealth{hosts: len(lvl.hosts), factor: 140}
		weighted := false
		if len(lvl.hosts) > 0 {
			pl := lvl.hosts[0].Placement()
			lh.factor = pl.Overprovisioning()
			weighted = pl.WeightedPriorityHealth
		}
		for _, h := range lvl.hosts {
			w := uint64(1)
			if weighted {
				w = uint64(h.Weight())
			}
			lh.totalWeight += w
			if h.Healthy() {
				lh.healthy++
				lh.healthyWeight += w
			}
		}
		lvl.healthy = lh.healthy
		health[i] = lh
	}
	loads, panics := priorityLoads(health, c.panicThreshold)
	hs.cumLoad = make([]uint32, len(prios))
	var cum uint32
	for i := range hs.levels {
		lvl := &hs.levels[i]
		lvl.load, lvl.panic = loads[i], panics[i]
		cum += loads[i]
		hs.cumLoad[i] = cum
		if lvl.panic {
			lvl.pick = lvl.hosts
		} else {
			lvl.pick = make([]*Host, 0, lvl.healthy)
			for _, h := range lvl.hosts {
				if h.Healthy() {
					lvl.pick = append(lvl.pick, h)
				}
			}
			if c.lb.localityWeighted {
				lvl.localities, lvl.localityEDF = buildLocalities(lvl.hosts, c.policy, c.lb.rand.Uint64())
			}
		}
		// With localities the per-locality pickers serve the level; a
		// picker over the whole level would never be used.
		if len(lvl.pick) > 0 && lvl.localityEDF == nil {
			lvl.picker = c.policy.NewPicker(asLBHosts(lvl.pick))
		}
	}
	return hs
}

// Pick chooses a host for one request; lb may be nil. As Envoy's
// ZoneAwareLoadBalancerBase::hostSourceToUse: a priority level by the
// levels' loads (from the request's hash for hashing policies, else at
// random); in panic all its hosts (counting lb_healthy_panic); else with
// locality weighting a locality by its effective weight and a host in
// it; else a healthy host of the level. It returns nil when there is no
// host to offer and counts upstream_cx_none_healthy then (Envoy counts it
// where the router gets no host). It does not allocate or lock.
func (c *Cluster) Pick(lb *LBContext) *Host {
	hs := c.hostSet.Load()
	if lb == nil {
		lb = &noContext
	}
	lvl := &hs.levels[0]
	if len(hs.levels) > 1 {
		var r uint64
		if hs.hashPriority && lb.HasHash {
			r = lb.Hash
		} else {
			r = hs.rand.Uint64()
		}
		lvl = &hs.levels[choosePriority(r, hs.cumLoad)]
	}
	if lvl.localityEDF != nil {
		l := &lvl.localities[lvl.localityEDF.pick()]
		if i := l.picker.Pick(lb); i >= 0 && i < len(l.hosts) {
			return l.hosts[i]
		}
		c.Stats.UpstreamCxNoneHealthy.Inc()
		return nil
	}
	if lvl.picker == nil {
		c.Stats.UpstreamCxNoneHealthy.Inc()
		return nil
	}
	if lvl.panic {
		c.Stats.LbHealthyPanic.Inc()
	}
	i := lvl.picker.Pick(lb)
	if i < 0 || i >= len(lvl.pick) {
		c.Stats.UpstreamCxNoneHealthy.Inc()
		return nil
	}
	return lvl.pick[i]
}

var noContext LBContext

// HostSet returns the current membership snapshot.
func (c *Cluster) HostSet() *HostSet { return c.hostSet.Load() }

// PriorityLoad returns each priority's share of requests in percent and
// whether it is in panic, for admin and tests; priorities without hosts
// are left out.
func (hs *HostSet) PriorityLoad() []PriorityLoad {
	out := make([]PriorityLoad, len(hs.levels))
	for i, l := range hs.levels {
		out[i] = PriorityLoad{Priority: l.priority, Load: l.load, Panic: l.panic, Hosts: len(l.hosts), Healthy: l.healthy}
	}
	return out
}

// PriorityLoad is one priority level's state in a HostSet.
type PriorityLoad struct {
	Priority uint32
	// Load is the share of requests in percent.
	Load uint32
	// Panic: the level uses all its hosts, healthy or not.
	Panic          bool
	Hosts, Healthy int
}
