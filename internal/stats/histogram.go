package stats

import (
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
type Histogram struct {
	name    string
	unit    Unit
	buckets []atomic.Uint64 // counts per bound (non-cumulative); last is +Inf
	count   atomic.Uint64
	sum     atomic.Uint64
}

func newHistogram(name string, unit Unit) *Histogram {
	return &Histogram{name: name, unit: unit, buckets: make([]atomic.Uint64, len(DefaultBuckets)+1)}
}

// Name returns the full Envoy stat name.
func (h *Histogram) Name() string { return h.name }

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
