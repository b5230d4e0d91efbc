package stats

import (
	"math"
	"sync"
	"sync/atomic"
)

// Unit is what a histogram measures.
type Unit int

// Histogram units, as Envoy's Histogram::Unit.
const (
	Unspecified Unit = iota
	Bytes
	Microseconds
	Milliseconds
	Percent
)

// DefaultBuckets are Envoy's default histogram bucket bounds
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/metrics/v3/stats.proto#config-metrics-v3-histogrambucketsettings).
var DefaultBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// Histogram records values into Envoy's default buckets. Record is lock-free.
//
// Simplification (documented difference from Envoy): Envoy keeps a
// circllhist (log-linear bins of two significant digits) per histogram and
// computes quantiles from it; herald keeps only the counts per bucket of
// DefaultBuckets and interpolates quantiles linearly inside a bucket, so
// herald's P-values are coarser than Envoy's (exact at bucket bounds).
type Histogram struct {
	metricMeta
	unit    Unit
	buckets []atomic.Uint64 // counts per bound (non-cumulative); last is +Inf
	count   atomic.Uint64
	sum     atomic.Uint64

	// Owned by Store.MergeHistograms, guarded by mergeMu:
	mergeMu    sync.Mutex
	lastMerged []uint64 // per-bucket counts at the last merge
	interval   []uint64 // per-bucket counts between the last two merges; nil before the first
}

func newHistogram(meta metricMeta, unit Unit) *Histogram {
	return &Histogram{metricMeta: meta, unit: unit, buckets: make([]atomic.Uint64, len(DefaultBuckets)+1)}
}

// Unit returns what the histogram measures.
func (h *Histogram) Unit() Unit { return h.unit }

// Record adds one sample.
func (h *Histogram) Record(v uint64) {
	i := 0
	f := float64(v)
	for i < len(DefaultBuckets) && f > DefaultBuckets[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.count.Add(1)
	h.sum.Add(v)
}

// Count returns the number of samples.
func (h *Histogram) Count() uint64 { return h.count.Load() }

// Sum returns the sum of samples.
func (h *Histogram) Sum() uint64 { return h.sum.Load() }

// CumulativeBuckets returns, for each of DefaultBuckets, the number of samples
// less than or equal to that bound.
func (h *Histogram) CumulativeBuckets() []uint64 {
	out := make([]uint64, len(DefaultBuckets))
	var acc uint64
	for i := range DefaultBuckets {
		acc += h.buckets[i].Load()
		out[i] = acc
	}
	return out
}

// Used reports whether a value was ever recorded (Envoy's Metric::used()).
func (h *Histogram) Used() bool { return h.count.Load() != 0 }

// snapshot returns the per-bucket (non-cumulative) counts, the last being
// +Inf. Counts are read one by one while Record may run: the snapshot is
// consistent with itself (its total is the sum of its buckets), which is
// what the outputs need, not with Count.
func (h *Histogram) snapshot() []uint64 {
	out := make([]uint64, len(h.buckets))
	for i := range h.buckets {
		out[i] = h.buckets[i].Load()
	}
	return out
}

// merge closes the current interval: the samples recorded since the last
// merge become the interval shown by /stats until the next merge (Envoy's
// ParentHistogramImpl::merge on each stats flush).
func (h *Histogram) merge() {
	now := h.snapshot()
	h.mergeMu.Lock()
	defer h.mergeMu.Unlock()
	iv := make([]uint64, len(now))
	for i := range now {
		var prev uint64
		if h.lastMerged != nil {
			prev = h.lastMerged[i]
		}
		iv[i] = now[i] - prev
	}
	h.interval, h.lastMerged = iv, now
}

// intervalSnapshot returns the counts of the last completed interval, or
// nil before the first merge.
func (h *Histogram) intervalSnapshot() []uint64 {
	h.mergeMu.Lock()
	defer h.mergeMu.Unlock()
	return h.interval
}

// SupportedQuantiles are the quantiles Envoy computes for every histogram
// (Stats::HistogramStatisticsImpl::supportedQuantiles).
var SupportedQuantiles = []float64{0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1}

// quantilePermille is SupportedQuantiles in thousandths.
var quantilePermille = []uint64{0, 250, 500, 750, 900, 950, 990, 995, 999, 1000}

// Quantiles returns SupportedQuantiles of the last completed interval and of
// all samples since start. A set without samples yields NaN for every
// quantile (Envoy prints "nan" in text and null in JSON).
//
// Simplification: Envoy's interval is the span between its last two stats
// flushes (stats_flush_interval, default 5s) and its cumulative values are
// also as of the last flush; herald's interval is the span between the last
// two Store.MergeHistograms calls and its cumulative values are live.
func (h *Histogram) Quantiles() (interval, cumulative []float64) {
	return computeQuantiles(h.intervalSnapshot(), DefaultBuckets), computeQuantiles(h.snapshot(), DefaultBuckets)
}

// computeQuantiles follows circllhist's hist_approx_quantile over the
// non-empty buckets: quantile q targets rank q*total and interpolates
// linearly inside the bucket holding it, so P0 is the lower bound of the
// first non-empty bucket and P100 the upper bound of the last. A bucket
// spans (bounds[i-1], bounds[i]], the first starts at 0; the +Inf bucket has
// no upper bound and reports its lower one.
func computeQuantiles(counts []uint64, bounds []float64) []float64 {
	out := make([]float64, len(SupportedQuantiles))
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		for i := range out {
			out[i] = math.NaN()
		}
		return out
	}
	// Ranks are kept in thousandths of a sample, in integers, so that
	// bucket edges come out exact instead of as 205.00000000000003.
	for qi, permille := range quantilePermille {
		target := permille * total // rank * 1000
		var below uint64           // samples in earlier buckets
		for i, c := range counts {
			if c == 0 {
				continue
			}
			if (below+c)*1000 < target && i != len(counts)-1 {
				below += c
				continue
			}
			lower := 0.0
			if i > 0 {
				lower = bounds[i-1]
			}
			if i >= len(bounds) { // +Inf bucket
				out[qi] = lower
				break
			}
			num := float64(min(max(target, below*1000)-below*1000, c*1000))
			out[qi] = lower + (bounds[i]-lower)*num/float64(c*1000)
			break
		}
	}
	return out
}
