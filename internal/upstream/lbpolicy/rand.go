package lbpolicy

import "sync/atomic"

// Rand is a random source a Picker may share between goroutines: lock-free,
// allocation-free, one atomic add per value. It is SplitMix64 (Steele, Lea
// and Flood, "Fast splittable pseudorandom number generators", 2014): the
// state advances by a fixed odd gamma and each value is the state mixed, so
// concurrent callers each get a distinct state and never contend on more
// than the add. It stands in for Envoy's per-worker Random::RandomGenerator;
// it is not for anything cryptographic.
//
// The zero value is usable; NewRand seeds it.
type Rand struct {
	state atomic.Uint64
}

// NewRand returns a Rand starting at seed (BuildContext.Seed, so tests are
// deterministic).
func NewRand(seed uint64) *Rand {
	r := &Rand{}
	r.state.Store(seed)
	return r
}

// Uint64 returns the next value.
func (r *Rand) Uint64() uint64 {
	z := r.state.Add(0x9e3779b97f4a7c15)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
