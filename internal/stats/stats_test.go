package stats

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"testing"
)

func TestUsed(t *testing.T) {
	tests := []struct {
		name string
		do   func(s *Store) bool // updates a stat, returns its Used()
		want bool
	}{
		{name: "counter_untouched", do: func(s *Store) bool { return s.Counter("c").Used() }, want: false},
		{name: "counter_inc", do: func(s *Store) bool { c := s.Counter("c"); c.Inc(); return c.Used() }, want: true},
		// Envoy marks a counter used on add(0) too.
		{name: "counter_add_zero", do: func(s *Store) bool { c := s.Counter("c"); c.Add(0); return c.Used() }, want: true},
		{name: "gauge_untouched", do: func(s *Store) bool { return s.Gauge("g").Used() }, want: false},
		// A gauge set to zero was still changed.
		{name: "gauge_set_zero", do: func(s *Store) bool { g := s.Gauge("g"); g.Set(0); return g.Used() }, want: true},
		{name: "gauge_inc_dec", do: func(s *Store) bool { g := s.Gauge("g"); g.Inc(); g.Dec(); return g.Used() }, want: true},
		{name: "histogram_untouched", do: func(s *Store) bool { return s.Histogram("h", Milliseconds).Used() }, want: false},
		{name: "histogram_record", do: func(s *Store) bool { h := s.Histogram("h", Milliseconds); h.Record(0); return h.Used() }, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.do(NewStore()); got != tc.want {
				t.Errorf("Used() = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestConcurrentInc runs increments, lookups, merges and scrapes at once;
// run it with -race.
func TestConcurrentInc(t *testing.T) {
	const goroutines, perG = 8, 2000
	s := NewStore()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := s.Counter("cluster.backend.upstream_rq_total")
			own := s.Counter(fmt.Sprintf("cluster.c%d.upstream_rq_total", g))
			gauge := s.Gauge("cluster.backend.upstream_rq_active")
			h := s.Histogram("cluster.backend.upstream_rq_time", Milliseconds)
			for i := range perG {
				c.Inc()
				own.Add(2)
				gauge.Inc()
				h.Record(uint64(i))
				gauge.Dec()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 20 {
			s.MergeHistograms()
			if err := WritePrometheus(io.Discard, s, PromOptions{}); err != nil {
				t.Error(err)
			}
			if err := WriteText(io.Discard, s, TextOptions{}); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	if got, want := s.Counter("cluster.backend.upstream_rq_total").Value(), uint64(goroutines*perG); got != want {
		t.Errorf("shared counter = %d, want %d", got, want)
	}
	if got, want := s.Counter("cluster.c3.upstream_rq_total").Value(), uint64(2*perG); got != want {
		t.Errorf("own counter = %d, want %d", got, want)
	}
	if got := s.Gauge("cluster.backend.upstream_rq_active").Value(); got != 0 {
		t.Errorf("gauge = %d, want 0", got)
	}
	if got, want := s.Histogram("cluster.backend.upstream_rq_time", Milliseconds).Count(), uint64(goroutines*perG); got != want {
		t.Errorf("histogram count = %d, want %d", got, want)
	}
}

func TestCounterIncDoesNotAllocate(t *testing.T) {
	c := NewStore().Counter("cluster.backend.upstream_rq_total")
	g := NewStore().Gauge("cluster.backend.upstream_rq_active")
	h := NewStore().Histogram("cluster.backend.upstream_rq_time", Milliseconds)
	if n := testing.AllocsPerRun(100, func() { c.Inc(); c.Add(3); g.Inc(); g.Dec(); h.Record(42) }); n != 0 {
		t.Errorf("hot-path updates allocate %v times per run, want 0", n)
	}
}

func BenchmarkCounterInc(b *testing.B) {
	c := NewStore().Counter("cluster.backend.upstream_rq_total")
	b.ReportAllocs()
	for b.Loop() {
		c.Inc()
	}
}

func BenchmarkCounterIncParallel(b *testing.B) {
	c := NewStore().Counter("cluster.backend.upstream_rq_total")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Inc()
		}
	})
}

// storeWith1000 holds 1,000 stats shaped like a proxy's: per-cluster
// counters and gauges, per-listener counters and a few histograms.
func storeWith1000() *Store {
	s := NewStore()
	n := 0
	for cl := 0; n < 1000; cl++ {
		sc := s.Scope(fmt.Sprintf("cluster.backend_%d.", cl))
		for _, name := range []string{"upstream_rq_total", "upstream_rq_200", "upstream_rq_503", "upstream_rq_2xx", "upstream_cx_total", "upstream_cx_connect_fail"} {
			sc.Counter(name).Add(uint64(cl + 1))
			n++
		}
		sc.Gauge("upstream_cx_active").Set(int64(cl))
		n++
		if cl%10 == 0 {
			sc.Histogram("upstream_rq_time", Milliseconds).Record(uint64(cl))
			n++
		}
		s.Counter(fmt.Sprintf("listener.127.0.0.%d_10000.downstream_cx_total", cl%250)).Inc()
		n++
	}
	return s
}

func BenchmarkWritePrometheus1000(b *testing.B) {
	s := storeWith1000()
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := WritePrometheus(&buf, s, PromOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(buf.Len()))
}

func BenchmarkWriteText1000(b *testing.B) {
	s := storeWith1000()
	b.ReportAllocs()
	for b.Loop() {
		if err := WriteText(io.Discard, s, TextOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExtractDefault(b *testing.B) {
	e := DefaultTagExtractor()
	b.ReportAllocs()
	for b.Loop() {
		e.Extract("listener.127.0.0.1_10000.http.ingress_http.downstream_rq_2xx")
	}
}
