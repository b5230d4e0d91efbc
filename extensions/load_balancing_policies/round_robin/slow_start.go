package roundrobin

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// slowStartEDF is round robin while hosts are in slow start: Envoy's
// EdfScheduler::pickAndAdd, the host with the earliest deadline is picked
// and re-inserted at deadline + 1/weight, the weight being
// load_balancing_weight × the slow start factor at that moment
// (EdfLoadBalancerBase::applySlowStartFactor). So a host's share grows
// with every pick as its window passes, with no periodic recompute: the
// weights are read on pick.
//
// Envoy's scheduler is a heap owned by one worker; herald's picker is
// shared by all goroutines, so each deadline is an atomic float64: a pick
// scans for the earliest (ties to the lower index, Envoy's insertion
// order), then moves it with a compare-and-swap and scans again if another
// goroutine moved it first. A pick reads the clock once and costs
// O(hosts) atomic loads, no lock, no allocation. It is used only until
// the last host's window ends (lbpolicy.SlowStartPicker), then the plain
// picker takes over.
type slowStartEDF struct {
	hosts     []lbpolicy.Host
	slowStart *lbpolicy.SlowStart
	deadlines []atomic.Uint64 // math.Float64bits of each host's deadline
}

func newSlowStartEDF(hosts []lbpolicy.Host, ss *lbpolicy.SlowStart, seed uint64) *slowStartEDF {
	e := &slowStartEDF{hosts: hosts, slowStart: ss, deadlines: make([]atomic.Uint64, len(hosts))}
	now := ss.Now()
	for i, h := range hosts {
		e.deadlines[i].Store(math.Float64bits(1 / e.weight(h, now)))
	}
	// Envoy's createWithPicks: start a seeded number of picks in.
	for range seed % uint64(len(hosts)) {
		e.Pick(nil)
	}
	return e
}

// weight is Envoy's hostWeight for round robin with slow start.
func (e *slowStartEDF) weight(h lbpolicy.Host, now time.Time) float64 {
	return float64(max(h.Weight(), 1)) * e.slowStart.Factor(h, now)
}

// Pick implements lbpolicy.Picker.
func (e *slowStartEDF) Pick(*lbpolicy.Context) int {
	now := e.slowStart.Now()
	for {
		best := 0
		bestBits := e.deadlines[0].Load()
		bestD := math.Float64frombits(bestBits)
		for i := 1; i < len(e.deadlines); i++ {
			b := e.deadlines[i].Load()
			if d := math.Float64frombits(b); d < bestD {
				best, bestBits, bestD = i, b, d
			}
		}
		next := bestD + 1/e.weight(e.hosts[best], now)
		if e.deadlines[best].CompareAndSwap(bestBits, math.Float64bits(next)) {
			return best
		}
	}
}
