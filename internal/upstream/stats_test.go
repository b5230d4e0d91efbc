package upstream

import (
	"context"
	"sync"
	"testing"

	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream/clustertype"
)

func TestRecordResponse(t *testing.T) {
	st := stats.NewStore()
	s := newStats(st.Scope("cluster.a."))
	for _, code := range []int{200, 200, 204, 503, 101, 999, 42} {
		s.RecordResponse(code)
	}
	want := map[string]uint64{
		"upstream_rq_completed": 7,
		"upstream_rq_2xx":       3,
		"upstream_rq_200":       2,
		"upstream_rq_204":       1,
		"upstream_rq_5xx":       1,
		"upstream_rq_503":       1,
		"upstream_rq_1xx":       1,
		"upstream_rq_101":       1,
		"upstream_rq_999":       1, // no class for codes outside 1xx–5xx
		"upstream_rq_42":        1,
	}
	for name, w := range want {
		if got := st.Counter("cluster.a." + name).Value(); got != w {
			t.Errorf("%s = %d, want %d", name, got, w)
		}
	}
	// Unused codes are not created (Envoy creates them dynamically).
	for _, c := range st.Counters() {
		if c.Name() == "cluster.a.upstream_rq_404" || c.Name() == "cluster.a.upstream_rq_3xx" {
			t.Errorf("%s exists without a response", c.Name())
		}
	}
	if n := testing.AllocsPerRun(100, func() { s.RecordResponse(200) }); n != 0 {
		t.Errorf("RecordResponse allocates %v times per call", n)
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	m, _ := newTestManager(t)
	if err := m.Apply(context.Background(), parseClusters(t, staticCluster("a", "10.0.0.1", "10.0.0.2")), prefix); err != nil {
		t.Fatal(err)
	}
	c := m.Cluster("a")
	lb := &LBContext{}
	if n := testing.AllocsPerRun(100, func() { c.Pick(lb); c.Pick(nil) }); n != 0 {
		t.Errorf("Pick allocates %v times per call", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = m.Cluster("a") }); n != 0 {
		t.Errorf("Manager.Cluster allocates %v times per call", n)
	}
}

// TestPickDuringUpdates runs picks while membership changes; -race checks
// the snapshot publication.
func TestPickDuringUpdates(t *testing.T) {
	m, _ := newTestManager(t)
	if err := m.Apply(context.Background(), parseClusters(t, staticCluster("a", "10.0.0.1")), prefix); err != nil {
		t.Fatal(err)
	}
	c := m.Cluster("a")
	u := updaterFor("a")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if h := c.Pick(nil); h != nil {
					_ = h.Address()
				}
			}
		})
	}
	for i := range 200 {
		specs := []clustertype.HostSpec{specFor("10.0.0.1:8080")}
		if i%2 == 0 {
			specs = append(specs, specFor("10.0.0.2:8080"))
		}
		u.Success(specs)
	}
	close(stop)
	wg.Wait()
}

func BenchmarkPick(b *testing.B) {
	st := stats.NewStore()
	m := NewManager(st)
	defer m.Close()
	t := &testing.T{}
	if err := m.Apply(context.Background(), parseClusters(t, staticCluster("a", "10.0.0.1", "10.0.0.2", "10.0.0.3")), prefix); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Cluster("a").Pick(nil)
		}
	})
}

func BenchmarkRecordResponse(b *testing.B) {
	s := newStats(stats.NewStore().Scope("cluster.a."))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.RecordResponse(200)
		}
	})
}
