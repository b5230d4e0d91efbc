package roundrobin

import (
	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// slowStartEDF is round robin while hosts are in slow start: Envoy's EDF
// schedule (lbpolicy.EDF) with each host re-inserted at deadline +
// 1/weight, the weight being load_balancing_weight × the slow start
// factor at that moment (EdfLoadBalancerBase::applySlowStartFactor). So a
// host's share grows with every pick as its window passes, with no
// periodic recompute. It is used only until the last host's window ends
// (lbpolicy.SlowStartPicker), then the plain picker takes over.
type slowStartEDF struct {
	hosts     []lbpolicy.Host
	slowStart *lbpolicy.SlowStart
	edf       *lbpolicy.EDF
}

func newSlowStartEDF(hosts []lbpolicy.Host, ss *lbpolicy.SlowStart, seed uint64) *slowStartEDF {
	e := &slowStartEDF{hosts: hosts, slowStart: ss}
	e.edf = lbpolicy.NewEDF(len(hosts), e, seed)
	return e
}

// Inverse implements lbpolicy.EDFWeights: 1 / Envoy's hostWeight for
// round robin with slow start, at the current time.
func (e *slowStartEDF) Inverse(i int) float64 {
	h := e.hosts[i]
	return 1 / (float64(max(h.Weight(), 1)) * e.slowStart.Factor(h, e.slowStart.Now()))
}

// Pick implements lbpolicy.Picker.
func (e *slowStartEDF) Pick(*lbpolicy.Context) int { return e.edf.Pick(e) }
