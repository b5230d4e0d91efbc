package stats

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// metricMeta is what a stat knows about its name. Immutable after the stat
// is created: tag extraction and the Prometheus spelling are computed once,
// when the stat is created, never per scrape.
type metricMeta struct {
	name             string // full Envoy name: "cluster.backend.upstream_rq_total"
	tagExtractedName string // "cluster.upstream_rq_total"
	tags             []Tag  // [{envoy.cluster_name backend}]
	promName         string // "envoy_cluster_upstream_rq_total"
	promLabels       string // `envoy_cluster_name="backend"` (no braces)
}

func newMeta(e *TagExtractor, name string) metricMeta {
	ten, tags := e.Extract(name)
	return metricMeta{
		name:             name,
		tagExtractedName: ten,
		tags:             tags,
		promName:         prometheusName(ten),
		promLabels:       prometheusLabels(tags),
	}
}

// Name returns the full Envoy stat name.
func (m *metricMeta) Name() string { return m.name }

// TagExtractedName returns the name with the tag values removed
// ("cluster.upstream_rq_total" for "cluster.backend.upstream_rq_total").
func (m *metricMeta) TagExtractedName() string { return m.tagExtractedName }

// Tags returns the tags extracted from the name, in Envoy's order. The
// slice is shared; do not modify it.
func (m *metricMeta) Tags() []Tag { return m.tags }

// Counter is a monotonically increasing value. Safe for concurrent use;
// increments are lock-free and allocation-free.
type Counter struct {
	metricMeta
	v atomic.Uint64
	// used is only written on the rare paths that leave the value at zero
	// (Add(0)); otherwise a non-zero value means used.
	used atomic.Bool
}

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) {
	if n == 0 {
		// Envoy: CounterImpl::add sets the Used flag even for 0.
		c.used.Store(true)
		return
	}
	c.v.Add(n)
}

// Value returns the current value.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Used reports whether the counter was ever added to (Envoy's
// Metric::used(), which /stats?usedonly filters on).
func (c *Counter) Used() bool { return c.v.Load() != 0 || c.used.Load() }

// Gauge is a value that goes up and down. Safe for concurrent use.
type Gauge struct {
	metricMeta
	v    atomic.Int64
	used atomic.Bool
}

// markUsed sets the used flag; after the first call it is one shared load.
func (g *Gauge) markUsed() {
	if !g.used.Load() {
		g.used.Store(true)
	}
}

// Inc adds one.
func (g *Gauge) Inc() { g.v.Add(1); g.markUsed() }

// Dec subtracts one.
func (g *Gauge) Dec() { g.v.Add(-1); g.markUsed() }

// Add adds n (which may be negative).
func (g *Gauge) Add(n int64) { g.v.Add(n); g.markUsed() }

// Set sets the value.
func (g *Gauge) Set(n int64) { g.v.Store(n); g.markUsed() }

// Value returns the current value.
func (g *Gauge) Value() int64 { return g.v.Load() }

// Used reports whether the gauge was ever set or changed (Envoy's
// Metric::used()).
func (g *Gauge) Used() bool { return g.used.Load() }

// Store holds every stat of the process by its full Envoy name
// ("cluster.backend.upstream_rq_total"). It outlives config snapshots: a
// stat looked up again after a reload is the same object, so values carry
// over as in Envoy.
//
// Look stats up when a snapshot is built and keep the pointers; the request
// path must only call Inc/Add/Set on them.
type Store struct {
	extractor *TagExtractor // immutable

	mu         sync.RWMutex
	counters   map[string]*Counter
	gauges     map[string]*Gauge
	histograms map[string]*Histogram
}

// NewStore returns an empty store that tags stats with Envoy's default tag
// extractors.
func NewStore() *Store { return NewStoreWith(DefaultTagExtractor()) }

// NewStoreWith returns an empty store that tags stats with e (built from the
// bootstrap's stats_config by NewTagExtractor). A nil e extracts no tags.
func NewStoreWith(e *TagExtractor) *Store {
	return &Store{
		extractor:  e,
		counters:   map[string]*Counter{},
		gauges:     map[string]*Gauge{},
		histograms: map[string]*Histogram{},
	}
}

// Counter returns the counter called name, creating it at zero.
func (s *Store) Counter(name string) *Counter {
	s.mu.RLock()
	c := s.counters[name]
	s.mu.RUnlock()
	if c != nil {
		return c
	}
	meta := newMeta(s.extractor, name) // outside the lock: regexes run here
	s.mu.Lock()
	defer s.mu.Unlock()
	if c = s.counters[name]; c == nil {
		c = &Counter{metricMeta: meta}
		s.counters[name] = c
	}
	return c
}

// Gauge returns the gauge called name, creating it at zero.
func (s *Store) Gauge(name string) *Gauge {
	s.mu.RLock()
	g := s.gauges[name]
	s.mu.RUnlock()
	if g != nil {
		return g
	}
	meta := newMeta(s.extractor, name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if g = s.gauges[name]; g == nil {
		g = &Gauge{metricMeta: meta}
		s.gauges[name] = g
	}
	return g
}

// Histogram returns the histogram called name, creating it empty.
func (s *Store) Histogram(name string, unit Unit) *Histogram {
	s.mu.RLock()
	h := s.histograms[name]
	s.mu.RUnlock()
	if h != nil {
		return h
	}
	meta := newMeta(s.extractor, name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if h = s.histograms[name]; h == nil {
		h = newHistogram(meta, unit)
		s.histograms[name] = h
	}
	return h
}

// Counters returns every counter sorted by name.
func (s *Store) Counters() []*Counter {
	out := s.unsortedCounters()
	slices.SortFunc(out, func(a, b *Counter) int { return strings.Compare(a.name, b.name) })
	return out
}

func (s *Store) unsortedCounters() []*Counter {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Counter, 0, len(s.counters))
	for _, m := range s.counters {
		out = append(out, m)
	}
	return out
}

// Gauges returns every gauge sorted by name.
func (s *Store) Gauges() []*Gauge {
	out := s.unsortedGauges()
	slices.SortFunc(out, func(a, b *Gauge) int { return strings.Compare(a.name, b.name) })
	return out
}

func (s *Store) unsortedGauges() []*Gauge {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Gauge, 0, len(s.gauges))
	for _, m := range s.gauges {
		out = append(out, m)
	}
	return out
}

// Histograms returns every histogram sorted by name.
func (s *Store) Histograms() []*Histogram {
	out := s.unsortedHistograms()
	slices.SortFunc(out, func(a, b *Histogram) int { return strings.Compare(a.name, b.name) })
	return out
}

func (s *Store) unsortedHistograms() []*Histogram {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Histogram, 0, len(s.histograms))
	for _, m := range s.histograms {
		out = append(out, m)
	}
	return out
}

// Scope prefixes names: Scope("cluster.backend.").Counter("upstream_rq_total").
type Scope struct {
	store  *Store
	prefix string
}

// Scope returns a scope whose stats are named prefix+name.
func (s *Store) Scope(prefix string) Scope { return Scope{store: s, prefix: prefix} }

// Counter returns the counter prefix+name.
func (sc Scope) Counter(name string) *Counter { return sc.store.Counter(sc.prefix + name) }

// Gauge returns the gauge prefix+name.
func (sc Scope) Gauge(name string) *Gauge { return sc.store.Gauge(sc.prefix + name) }

// Histogram returns the histogram prefix+name.
func (sc Scope) Histogram(name string, unit Unit) *Histogram {
	return sc.store.Histogram(sc.prefix+name, unit)
}

// Scope returns a nested scope.
func (sc Scope) Scope(prefix string) Scope { return Scope{store: sc.store, prefix: sc.prefix + prefix} }

// Store returns the underlying store.
func (sc Scope) Store() *Store { return sc.store }

// TagExtractor returns the extractor the store tags stats with.
func (s *Store) TagExtractor() *TagExtractor { return s.extractor }

// MergeHistograms closes the current histogram interval of every histogram:
// the samples recorded since the previous call become the "interval" values
// of /stats. Envoy merges on every stats flush; the server calls this every
// stats_flush_interval (Envoy default 5s,
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/bootstrap/v3/bootstrap.proto#envoy-v3-api-field-config-bootstrap-v3-bootstrap-stats-flush-interval).
func (s *Store) MergeHistograms() {
	for _, h := range s.Histograms() {
		h.merge()
	}
}

// JoinPrefix is Envoy's Stats::Utility statPrefixJoin: prefix and name
// joined by exactly one '.' (an empty prefix adds nothing).
func JoinPrefix(prefix, name string) string {
	if prefix == "" || prefix[len(prefix)-1] == '.' {
		return prefix + name
	}
	return prefix + "." + name
}
