package lbpolicy

import (
	"math"
	"sync/atomic"
)

// EDFWeights gives an EDF schedule the inverse weight (1/weight) of entry
// i at the moment it is (re-)inserted. Implementations that read live
// state (active requests, slow start) compute it then.
type EDFWeights interface {
	Inverse(i int) float64
}

// EDF is Envoy's EdfScheduler::pickAndAdd
// (source/common/upstream/edf_scheduler.h): the entry with the earliest
// deadline is picked and re-inserted at its deadline + 1/weight, the
// weight read at that moment.
//
// Envoy's scheduler is a heap owned by one worker thread. herald's
// pickers are shared by every goroutine, so each entry's deadline is an
// atomic float64 instead: a pick scans for the earliest deadline (ties go
// to the lower index, Envoy's insertion order) and moves it with a
// compare-and-swap, scanning again when another goroutine moved it first.
// The sequence of picks is Envoy's; a pick costs O(entries) atomic loads
// instead of O(log entries), with no lock and no allocation. The one
// schedule serves least_request's weighted pick, round robin during slow
// start and the cluster's locality pick.
type EDF struct {
	deadlines []atomic.Uint64 // math.Float64bits of each entry's deadline
}

// NewEDF returns the schedule over n > 0 entries, each first due at
// w.Inverse(i). As Envoy's EdfScheduler::createWithPicks it starts
// seed % n picks in, so that processes and pickers do not move in
// lockstep.
func NewEDF(n int, w EDFWeights, seed uint64) *EDF {
	e := &EDF{deadlines: make([]atomic.Uint64, n)}
	for i := range e.deadlines {
		e.deadlines[i].Store(math.Float64bits(w.Inverse(i)))
	}
	for range seed % uint64(n) {
		e.Pick(w)
	}
	return e
}

// Pick returns the index of the entry with the earliest deadline and
// moves that deadline w.Inverse(index) later.
func (e *EDF) Pick(w EDFWeights) int {
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
		if e.deadlines[best].CompareAndSwap(bestBits, math.Float64bits(bestD+w.Inverse(best))) {
			return best
		}
	}
}
