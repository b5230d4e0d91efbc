package roundrobin

import (
	"container/heap"
	"math/bits"
	"sync"
	"sync/atomic"

	roundrobinv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// Name is the Envoy name of the policy.
const Name = "envoy.load_balancing_policies.round_robin"

func init() {
	lbpolicy.Register(lbpolicy.Extension[*roundrobinv3.RoundRobin]{
		Name:   Name,
		Config: &roundrobinv3.RoundRobin{},
		Build:  Build,
	})
}

// Build checks cfg. slow_start_config ramps new and recovered hosts up
// (lbpolicy.SlowStart); locality_lb_config.locality_weighted_lb_config
// turns on locality weighted load balancing, which the cluster applies
// before this policy picks within the locality; zone_aware_lb_config is
// refused by name.
func Build(cfg *roundrobinv3.RoundRobin, ctx lbpolicy.BuildContext) (lbpolicy.Policy, error) {
	errs := configerr.CheckFields(cfg, ctx.Path, "slow_start_config", "locality_lb_config")
	ss, serrs := lbpolicy.ParseSlowStart(cfg.GetSlowStartConfig(), ctx.Path+".slow_start_config", ctx.Now)
	errs = append(errs, serrs...)
	lw, lerrs := lbpolicy.ParseLocalityLB(cfg.GetLocalityLbConfig(), ctx.Path+".locality_lb_config")
	errs = append(errs, lerrs...)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return &Policy{seed: ctx.Seed, slowStart: ss, localityWeighted: lw}, nil
}

// Policy is a built round robin policy. Immutable after Build.
type Policy struct {
	seed             uint64
	slowStart        *lbpolicy.SlowStart // nil: no slow start
	localityWeighted bool
}

var _ lbpolicy.LocalityWeighted = (*Policy)(nil)

// LocalityWeighted implements lbpolicy.LocalityWeighted.
func (p *Policy) LocalityWeighted() bool { return p.localityWeighted }

// maxTable bounds the precomputed weighted schedule: with a total weight
// (after dividing by the weights' GCD) up to this, one whole EDF period is
// precomputed and picks are lock-free; above it, a live EDF schedule under
// a mutex is used.
const maxTable = 1 << 16

// NewPicker implements lbpolicy.Policy. With equal weights it rotates through
// the hosts starting at the seed (Envoy's unweighted pick: hosts[rr_index++ %
// n], rr_index starting at a random seed). With different weights it follows
// Envoy's EDF scheduler: each host's k-th pick has deadline k/weight, the
// earliest deadline goes first, ties in insertion order; the schedule starts
// seed % total-weight picks in, as Envoy's createWithPicks does.
//
// With slow start, when some host is in its window at this moment (Envoy's
// !noHostsAreInSlowStart), the picker is slowStartEDF: Envoy's EDF with
// each host's weight recomputed, slow start factor included, each time it
// is picked and re-inserted; once the last window has ended it hands over
// to the plain picker (lbpolicy.SlowStartPicker).
func (p *Policy) NewPicker(hosts []lbpolicy.Host) lbpolicy.Picker {
	if p.slowStart != nil && len(hosts) > 1 && p.slowStart.AnyInWindow(hosts, p.slowStart.Now()) {
		return &lbpolicy.SlowStartPicker{
			During: newSlowStartEDF(hosts, p.slowStart, p.seed),
			After:  p.newPicker(hosts),
			End:    p.slowStart.WindowsEnd(hosts),
			Now:    p.slowStart.Now,
		}
	}
	return p.newPicker(hosts)
}

// newPicker is the picker without slow start.
func (p *Policy) newPicker(hosts []lbpolicy.Host) lbpolicy.Picker {
	weights := make([]uint64, len(hosts))
	equal := true
	for i, h := range hosts {
		weights[i] = uint64(max(h.Weight(), 1))
		if weights[i] != weights[0] {
			equal = false
		}
	}
	if equal {
		rp := &rotation{n: uint64(len(hosts))}
		rp.next.Store(p.seed)
		return rp
	}
	g := weights[0]
	for _, w := range weights[1:] {
		g = gcd(g, w)
	}
	var total uint64
	for i := range weights {
		weights[i] /= g
		total += weights[i]
	}
	if total <= maxTable {
		s := newSchedule(weights)
		tp := &table{order: make([]uint32, total)}
		for i := range tp.order {
			tp.order[i] = uint32(s.pick())
		}
		tp.next.Store(p.seed % total)
		return tp
	}
	s := newSchedule(weights)
	for range p.seed % maxTable {
		s.pick()
	}
	return &live{s: s}
}

// rotation is the equal-weight picker: one atomic add per pick.
type rotation struct {
	n    uint64
	next atomic.Uint64
}

// Pick implements lbpolicy.Picker.
func (r *rotation) Pick(*lbpolicy.Context) int {
	return int((r.next.Add(1) - 1) % r.n)
}

// table replays one precomputed EDF period. In one period (deadlines up to
// 1) host i is picked exactly weight_i times, deadlines being compared as
// rationals, so every period has the exact weighted distribution; only the
// order of hosts tied on a deadline may differ from a never-ending live
// schedule after the first period.
type table struct {
	order []uint32
	next  atomic.Uint64
}

// Pick implements lbpolicy.Picker.
func (t *table) Pick(*lbpolicy.Context) int {
	return int(t.order[(t.next.Add(1)-1)%uint64(len(t.order))])
}

// live is the EDF schedule for very large total weights.
type live struct {
	mu sync.Mutex
	s  *schedule
}

// Pick implements lbpolicy.Picker.
func (l *live) Pick(*lbpolicy.Context) int {
	l.mu.Lock()
	i := l.s.pick()
	l.mu.Unlock()
	return i
}

// schedule is Envoy's EdfScheduler with exact arithmetic: entry i's next
// deadline is picks_i/weight_i (Envoy adds 1/weight in floating point, the
// same sequence up to rounding), ties broken by insertion order.
type schedule struct {
	entries edfHeap
	seq     uint64
}

type edfEntry struct {
	host   int
	weight uint64
	k      uint64 // deadline is k/weight
	order  uint64
}

func newSchedule(weights []uint64) *schedule {
	s := &schedule{}
	for i, w := range weights {
		s.entries = append(s.entries, edfEntry{host: i, weight: w, k: 1, order: s.seq})
		s.seq++
	}
	heap.Init(&s.entries)
	return s
}

func (s *schedule) pick() int {
	e := &s.entries[0]
	h := e.host
	e.k++
	e.order = s.seq
	s.seq++
	heap.Fix(&s.entries, 0)
	return h
}

type edfHeap []edfEntry

func (h edfHeap) Len() int { return len(h) }
func (h edfHeap) Less(i, j int) bool {
	// a.k/a.w < b.k/b.w  ⇔  a.k*b.w < b.k*a.w, in 128 bits.
	a, b := h[i], h[j]
	ahi, alo := bits.Mul64(a.k, b.weight)
	bhi, blo := bits.Mul64(b.k, a.weight)
	if ahi != bhi {
		return ahi < bhi
	}
	if alo != blo {
		return alo < blo
	}
	return a.order < b.order
}
func (h edfHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *edfHeap) Push(x any)   { *h = append(*h, x.(edfEntry)) }
func (h *edfHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
