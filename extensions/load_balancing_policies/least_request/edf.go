package leastrequest

import (
	"math"

	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// edf is Envoy's weighted least request schedule
// (EdfScheduler::pickAndAdd with LeastRequestLoadBalancer::hostWeight, on
// lbpolicy.EDF): the host with the earliest deadline is picked and
// re-inserted with deadline current_time + 1/weight, the weight computed
// at that moment from its active requests; other hosts keep the deadline
// of their last pick.
type edf struct {
	hosts     []lbpolicy.Host
	bias      float64
	slowStart *lbpolicy.SlowStart // nil: no slow start
	sched     *lbpolicy.EDF
}

func newEDF(hosts []lbpolicy.Host, bias float64, seed uint64, ss *lbpolicy.SlowStart) *edf {
	e := &edf{hosts: hosts, bias: bias, slowStart: ss}
	e.sched = lbpolicy.NewEDF(len(hosts), e, seed)
	return e
}

// weight is Envoy's LeastRequestLoadBalancer::hostWeight:
// load_balancing_weight / (active_requests + 1)^active_request_bias, with
// the bias 1.0 and 0.0 cases computed without pow.
//
// With slow start the result is multiplied by the host's slow start
// factor (applySlowStartFactor); the clock is read only then.
func (e *edf) weight(h lbpolicy.Host) float64 {
	w := float64(max(h.Weight(), 1))
	active := float64(max(h.ActiveRequests(), 0)) + 1
	switch e.bias {
	case 1:
		w /= active
	case 0:
	default:
		w /= math.Pow(active, e.bias)
	}
	if e.slowStart != nil {
		w *= e.slowStart.Factor(h, e.slowStart.Now())
	}
	return w
}

// Inverse implements lbpolicy.EDFWeights.
func (e *edf) Inverse(i int) float64 { return 1 / e.weight(e.hosts[i]) }

// Pick implements lbpolicy.Picker.
func (e *edf) Pick(*lbpolicy.Context) int { return e.sched.Pick(e) }
