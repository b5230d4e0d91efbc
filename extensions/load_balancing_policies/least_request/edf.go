package leastrequest

import (
	"math"
	"sync/atomic"

	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// edf is Envoy's weighted least request schedule
// (EdfScheduler::pickAndAdd with LeastRequestLoadBalancer::hostWeight): the
// host with the earliest deadline is picked and re-inserted with deadline
// current_time + 1/weight, the weight computed at that moment from its
// active requests; other hosts keep the deadline of their last pick.
//
// Envoy keeps the schedule in a heap owned by one worker thread. herald's
// Picker is shared by every goroutine, so each host's deadline is an atomic
// float64 instead: a pick scans for the earliest deadline (ties go to the
// lower index where Envoy uses insertion order) and moves it forward with a
// compare-and-swap, rescanning when another goroutine moved it first. The
// sequence of picks is Envoy's; a pick costs O(hosts) atomic loads instead
// of O(log hosts), with no lock and no allocation.
type edf struct {
	hosts     []lbpolicy.Host
	bias      float64
	slowStart *lbpolicy.SlowStart // nil: no slow start
	deadlines []atomic.Uint64     // math.Float64bits of each host's deadline
}

func newEDF(hosts []lbpolicy.Host, bias float64, seed uint64, ss *lbpolicy.SlowStart) *edf {
	e := &edf{hosts: hosts, bias: bias, slowStart: ss, deadlines: make([]atomic.Uint64, len(hosts))}
	for i, h := range hosts {
		e.deadlines[i].Store(math.Float64bits(1 / e.weight(h)))
	}
	// Envoy's EdfScheduler::createWithPicks starts the schedule a random
	// number of picks in so that workers and processes do not move in
	// lockstep; herald skips seed % hosts picks for the same purpose.
	for range seed % uint64(len(hosts)) {
		e.Pick(nil)
	}
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

// Pick implements lbpolicy.Picker.
func (e *edf) Pick(*lbpolicy.Context) int {
	for {
		best := 0
		bestBits := e.deadlines[0].Load()
		bestDeadline := math.Float64frombits(bestBits)
		for i := 1; i < len(e.deadlines); i++ {
			b := e.deadlines[i].Load()
			if d := math.Float64frombits(b); d < bestDeadline {
				best, bestBits, bestDeadline = i, b, d
			}
		}
		next := bestDeadline + 1/e.weight(e.hosts[best])
		if e.deadlines[best].CompareAndSwap(bestBits, math.Float64bits(next)) {
			return best
		}
	}
}
