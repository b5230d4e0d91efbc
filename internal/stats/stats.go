package stats

import (
	"sort"
	"sync"
	"sync/atomic"
)

// Counter is a monotonically increasing value. Safe for concurrent use;
// increments are lock-free.
type Counter struct {
	name string
	v    atomic.Uint64
}

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value returns the current value.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Name returns the full Envoy stat name.
func (c *Counter) Name() string { return c.name }

// Gauge is a value that goes up and down. Safe for concurrent use.
type Gauge struct {
	name string
	v    atomic.Int64
	// Accumulate is false for gauges Envoy marks NeverImport; kept for
	// parity with Envoy's hot-restart semantics, unused otherwise.
}

// Inc adds one.
func (g *Gauge) Inc() { g.v.Add(1) }

// Dec subtracts one.
func (g *Gauge) Dec() { g.v.Add(-1) }

// Add adds n (which may be negative).
func (g *Gauge) Add(n int64) { g.v.Add(n) }

// Set sets the value.
func (g *Gauge) Set(n int64) { g.v.Store(n) }

// Value returns the current value.
func (g *Gauge) Value() int64 { return g.v.Load() }

// Name returns the full Envoy stat name.
func (g *Gauge) Name() string { return g.name }

// Store holds every stat of the process by its full Envoy name
// ("cluster.backend.upstream_rq_total"). It outlives config snapshots: a
// stat looked up again after a reload is the same object, so values carry
// over as in Envoy.
//
// Look stats up when a snapshot is built and keep the pointers; the request
// path must only call Inc/Add/Set on them.
type Store struct {
	mu         sync.RWMutex
	counters   map[string]*Counter
	gauges     map[string]*Gauge
	histograms map[string]*Histogram
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if c = s.counters[name]; c == nil {
		c = &Counter{name: name}
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if g = s.gauges[name]; g == nil {
		g = &Gauge{name: name}
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if h = s.histograms[name]; h == nil {
		h = newHistogram(name, unit)
		s.histograms[name] = h
	}
	return h
}

// Counters returns every counter sorted by name.
func (s *Store) Counters() []*Counter {
	s.mu.RLock()
	out := make([]*Counter, 0, len(s.counters))
	for _, c := range s.counters {
		out = append(out, c)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// Gauges returns every gauge sorted by name.
func (s *Store) Gauges() []*Gauge {
	s.mu.RLock()
	out := make([]*Gauge, 0, len(s.gauges))
	for _, g := range s.gauges {
		out = append(out, g)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// Histograms returns every histogram sorted by name.
func (s *Store) Histograms() []*Histogram {
	s.mu.RLock()
	out := make([]*Histogram, 0, len(s.histograms))
	for _, h := range s.histograms {
		out = append(out, h)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
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
