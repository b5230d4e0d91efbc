package upstream

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream/clustertype"
	"github.com/herald-proxy/herald/internal/upstream/healthcheck"
)

// levels makes priority levels of 100 hosts each with the given healthy
// percentages, the default overprovisioning factor.
func levels(healthy ...int) []levelHealth {
	out := make([]levelHealth, len(healthy))
	for i, h := range healthy {
		out[i] = levelHealth{hosts: 100, healthy: h, totalWeight: 100, healthyWeight: uint64(h), factor: 140}
	}
	return out
}

// TestPriorityLoads checks Envoy's priority load arithmetic against the
// tables of
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/priority
// and, for panic, the rules of
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/panic_threshold
// (default threshold 50%).
func TestPriorityLoads(t *testing.T) {
	tests := []struct {
		name      string
		levels    []levelHealth
		threshold float64
		wantLoad  []uint32
		wantPanic []bool
	}{
		// Two priorities, P1 all healthy (the doc's first table).
		{name: "P0 100%", levels: levels(100, 100), threshold: 50, wantLoad: []uint32{100, 0}, wantPanic: []bool{false, false}},
		{name: "P0 72%", levels: levels(72, 100), threshold: 50, wantLoad: []uint32{100, 0}, wantPanic: []bool{false, false}},
		{name: "P0 71%", levels: levels(71, 100), threshold: 50, wantLoad: []uint32{99, 1}, wantPanic: []bool{false, false}},
		{name: "P0 50%", levels: levels(50, 100), threshold: 50, wantLoad: []uint32{70, 30}, wantPanic: []bool{false, false}},
		{name: "P0 25%", levels: levels(25, 100), threshold: 50, wantLoad: []uint32{35, 65}, wantPanic: []bool{false, false}},
		{name: "P0 0%", levels: levels(0, 100), threshold: 50, wantLoad: []uint32{0, 100}, wantPanic: []bool{false, false}},
		// Three priorities (the doc's second table).
		{name: "100/100/100", levels: levels(100, 100, 100), threshold: 50, wantLoad: []uint32{100, 0, 0}, wantPanic: []bool{false, false, false}},
		{name: "72/72/100", levels: levels(72, 72, 100), threshold: 50, wantLoad: []uint32{100, 0, 0}, wantPanic: []bool{false, false, false}},
		{name: "71/71/100", levels: levels(71, 71, 100), threshold: 50, wantLoad: []uint32{99, 1, 0}, wantPanic: []bool{false, false, false}},
		{name: "50/50/100", levels: levels(50, 50, 100), threshold: 50, wantLoad: []uint32{70, 30, 0}, wantPanic: []bool{false, false, false}},
		{name: "25/100/100", levels: levels(25, 100, 100), threshold: 50, wantLoad: []uint32{35, 65, 0}, wantPanic: []bool{false, false, false}},
		{name: "25/25/100", levels: levels(25, 25, 100), threshold: 50, wantLoad: []uint32{35, 35, 30}, wantPanic: []bool{false, false, false}},
		{name: "0/0/100", levels: levels(0, 0, 100), threshold: 50, wantLoad: []uint32{0, 0, 100}, wantPanic: []bool{false, false, false}},
		// Panic: normalized total health 70% < 100, both levels below 50%
		// healthy, so total panic: load by host count.
		{name: "25/25 total panic", levels: levels(25, 25), threshold: 50, wantLoad: []uint32{50, 50}, wantPanic: []bool{true, true}},
		// Normalized total health 100%: no panic even though P0 is 40% healthy.
		{name: "40/100 no panic", levels: levels(40, 100), threshold: 50, wantLoad: []uint32{56, 44}, wantPanic: []bool{false, false}},
		// Normalized total 56+28=84 < 100 and both levels below 50%
		// healthy: total panic, load by host count.
		{name: "40/20 total panic", levels: levels(40, 20), threshold: 50, wantLoad: []uint32{50, 50}, wantPanic: []bool{true, true}},
		// Normalized total min(100, 56+70) = 100: no panic.
		{name: "40/50 no panic", levels: levels(40, 50), threshold: 50, wantLoad: []uint32{56, 44}, wantPanic: []bool{false, false}},
		// Only P0 in panic: normalized 14+70=84, P0 10% < 50, P1 50% is not
		// below 50. P0 gets 14×100/84 = 16 plus the rounding remainder 1,
		// spread over all its hosts.
		{name: "10/50 P0 panic", levels: levels(10, 50), threshold: 50, wantLoad: []uint32{17, 83}, wantPanic: []bool{true, false}},
		// One level: the classic panic threshold.
		{name: "single 40%", levels: levels(40), threshold: 50, wantLoad: []uint32{100}, wantPanic: []bool{true}},
		{name: "single 60%", levels: levels(60), threshold: 50, wantLoad: []uint32{100}, wantPanic: []bool{false}},
		// Threshold 0 disables panic; with nothing healthy P0 gets the load
		// (and nothing is picked).
		{name: "threshold 0 all down", levels: levels(0, 0), threshold: 0, wantLoad: []uint32{100, 0}, wantPanic: []bool{false, false}},
		// Total panic shares follow host counts: 10 and 30 hosts.
		{name: "total panic by hosts", levels: []levelHealth{
			{hosts: 10, totalWeight: 10, factor: 140}, {hosts: 30, totalWeight: 30, factor: 140}},
			threshold: 50, wantLoad: []uint32{25, 75}, wantPanic: []bool{true, true}},
		// overprovisioning_factor 100: health is the healthy ratio itself.
		{name: "factor 100", levels: []levelHealth{
			{hosts: 10, healthy: 8, totalWeight: 10, healthyWeight: 8, factor: 100}, {hosts: 10, healthy: 10, totalWeight: 10, healthyWeight: 10, factor: 100}},
			threshold: 50, wantLoad: []uint32{80, 20}, wantPanic: []bool{false, false}},
		// weighted_priority_health: one healthy host of weight 1 and an
		// unhealthy one of weight 3 is 25% healthy → health 35.
		{name: "weighted health", levels: []levelHealth{
			{hosts: 2, healthy: 1, totalWeight: 4, healthyWeight: 1, factor: 140}, {hosts: 2, healthy: 2, totalWeight: 2, healthyWeight: 2, factor: 140}},
			threshold: 50, wantLoad: []uint32{35, 65}, wantPanic: []bool{false, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			load, panics := priorityLoads(tc.levels, tc.threshold)
			if diff := cmp.Diff(tc.wantLoad, load); diff != "" {
				t.Errorf("load (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantPanic, panics); diff != "" {
				t.Errorf("panic (-want +got):\n%s", diff)
			}
		})
	}
}

func TestChoosePriority(t *testing.T) {
	tests := []struct {
		name string
		r    uint64
		cum  []uint32
		want int
	}{
		{name: "first percent", r: 0, cum: []uint32{70, 100}, want: 0},
		{name: "last of P0", r: 69, cum: []uint32{70, 100}, want: 0},
		{name: "first of P1", r: 70, cum: []uint32{70, 100}, want: 1},
		{name: "wraps at 100", r: 170, cum: []uint32{70, 100}, want: 1},
		{name: "zero-load level skipped", r: 50, cum: []uint32{0, 0, 100}, want: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := choosePriority(tc.r, tc.cum); got != tc.want {
				t.Errorf("choosePriority(%d, %v) = %d, want %d", tc.r, tc.cum, got, tc.want)
			}
		})
	}
}

// prioSpecs makes n hosts at 10.0.<prio>.x with the given priority, the
// first unhealthy ones marked EDS unhealthy.
func prioSpecs(prio uint32, n, unhealthy int, loc clustertype.Locality, locWeight uint32) []clustertype.HostSpec {
	out := make([]clustertype.HostSpec, n)
	for i := range out {
		out[i] = clustertype.HostSpec{
			Addr:      netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(prio), byte(locWeight), byte(i + 1)}), 8080),
			Weight:    1,
			Unhealthy: i < unhealthy,
			Placement: clustertype.Placement{Priority: prio, Locality: loc, LocalityWeight: locWeight},
		}
	}
	return out
}

// shares picks n times and returns each priority's share in percent.
func prioShares(c *Cluster, n int) map[uint32]float64 {
	count := map[uint32]int{}
	for range n {
		if h := c.Pick(nil); h != nil {
			count[h.Priority()]++
		}
	}
	out := map[uint32]float64{}
	for p, k := range count {
		out[p] = 100 * float64(k) / float64(n)
	}
	return out
}

// TestClusterPriorityFailover: through the cluster, EDS-style updates
// move hosts' health; traffic follows Envoy's priority loads, and a
// host's priority survives updates that keep it.
func TestClusterPriorityFailover(t *testing.T) {
	m, st := newTestManager(t)
	if err := m.Apply(context.Background(), parseClusters(t, staticCluster("a", "10.9.9.9")), prefix); err != nil {
		t.Fatal(err)
	}
	c := m.Cluster("a")
	ms := updaterFor("a").(clustertype.MembershipSetter)
	const n = 20000
	steps := []struct {
		name        string
		p0Unhealthy int // of 10
		want        map[uint32]float64
		wantPanic   bool
	}{
		{name: "all healthy", p0Unhealthy: 0, want: map[uint32]float64{0: 100}},
		{name: "P0 80% healthy", p0Unhealthy: 2, want: map[uint32]float64{0: 100}},
		{name: "P0 50% healthy", p0Unhealthy: 5, want: map[uint32]float64{0: 70, 1: 30}},
		{name: "P0 down", p0Unhealthy: 10, want: map[uint32]float64{1: 100}},
		{name: "P0 back", p0Unhealthy: 0, want: map[uint32]float64{0: 100}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			specs := append(prioSpecs(0, 10, s.p0Unhealthy, clustertype.Locality{}, 0), prioSpecs(1, 10, 0, clustertype.Locality{}, 0)...)
			ms.SetHosts(specs)
			for _, pl := range c.HostSet().PriorityLoad() {
				if want := s.want[pl.Priority]; float64(pl.Load) != want || pl.Panic {
					t.Errorf("P%d load %d%% (panic %v), want %.0f%% without panic", pl.Priority, pl.Load, pl.Panic, want)
				}
			}
			got := prioShares(c, n)
			for p, w := range s.want {
				// The priority is chosen by a random percentile: with 20000
				// picks the share's standard deviation is below 0.4 points.
				if math.Abs(got[p]-w) > 2.5 {
					t.Errorf("P%d got %.1f%% of picks, want %.0f%% (all: %v)", p, got[p], w, got)
				}
			}
			for p, g := range got {
				if _, ok := s.want[p]; !ok && g > 0 {
					t.Errorf("P%d got %.1f%% of picks, want none", p, g)
				}
			}
		})
	}
	if got := st.Gauge("cluster.a.membership_total").Value(); got != 20 {
		t.Errorf("membership_total = %d, want 20 (all priorities)", got)
	}
	// Moving a host to another priority keeps the Host (and its pools).
	before := c.HostSet().Hosts[0]
	specs := append(prioSpecs(0, 10, 0, clustertype.Locality{}, 0), prioSpecs(1, 10, 0, clustertype.Locality{}, 0)...)
	specs[0].Priority = 3
	ms.SetHosts(specs)
	if after := c.HostSet().Hosts[0]; after != before || after.Priority() != 3 {
		t.Errorf("after moving to P3: same host %v, priority %d; want the same host at priority 3", after == before, after.Priority())
	}
}

// TestClusterLocalityWeighted: with locality_weighted_lb_config the
// locality is picked by its effective weight: the doc's table of
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/locality_weight
// (X weight 1, Y weight 2, Y all healthy).
func TestClusterLocalityWeighted(t *testing.T) {
	m, _ := newTestManager(t)
	cfg := staticCluster("a", "10.9.9.9") + "  common_lb_config: {locality_weighted_lb_config: {}}\n"
	if err := m.Apply(context.Background(), parseClusters(t, cfg), prefix); err != nil {
		t.Fatal(err)
	}
	c := m.Cluster("a")
	ms := updaterFor("a").(clustertype.MembershipSetter)
	x, y := clustertype.Locality{Zone: "x"}, clustertype.Locality{Zone: "y"}
	tests := []struct {
		name     string
		xHealthy int // of 100
		wantX    float64
	}{
		{name: "X 100%", xHealthy: 100, wantX: 33.3},
		{name: "X 70%", xHealthy: 70, wantX: 32.9},
		{name: "X 50%", xHealthy: 50, wantX: 25.9},
		{name: "X 25%", xHealthy: 25, wantX: 14.9},
		{name: "X 0%", xHealthy: 0, wantX: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			specs := append(prioSpecs(0, 100, 100-tc.xHealthy, x, 1), prioSpecs(0, 100, 0, y, 2)...)
			ms.SetHosts(specs)
			const n = 30000
			inX := 0
			for range n {
				if h := c.Pick(nil); h != nil && h.Placement().Locality == x {
					inX++
				}
			}
			// The EDF schedule is deterministic: the share is exact to
			// within a pick or two per period.
			if got := 100 * float64(inX) / n; math.Abs(got-tc.wantX) > 0.5 {
				t.Errorf("locality X got %.2f%% of picks, want %.1f%%", got, tc.wantX)
			}
		})
	}
}

func TestEffectiveLocalityWeight(t *testing.T) {
	tests := []struct {
		name           string
		weight         uint32
		healthy, total int
		factor         uint32
		want           float64
	}{
		{name: "all healthy", weight: 2, healthy: 10, total: 10, factor: 140, want: 2},
		{name: "72% keeps full weight", weight: 1, healthy: 72, total: 100, factor: 140, want: 1},
		{name: "50%", weight: 1, healthy: 50, total: 100, factor: 140, want: 0.7},
		{name: "none healthy", weight: 5, healthy: 0, total: 4, factor: 140, want: 0},
		{name: "no weight", weight: 0, healthy: 4, total: 4, factor: 140, want: 0},
		{name: "empty", weight: 3, healthy: 0, total: 0, factor: 140, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := effectiveLocalityWeight(tc.weight, tc.healthy, tc.total, tc.factor); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("effectiveLocalityWeight = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestLocalityEDF: the locality scheduler's picks follow the weights
// exactly over a period, including under concurrent picks.
func TestLocalityEDF(t *testing.T) {
	e := newLocalityEDF([]float64{1, 2, 0.5}, 0)
	count := make([]int, 3)
	for range 3500 {
		count[e.pick()]++
	}
	if diff := cmp.Diff([]int{1000, 2000, 500}, count); diff != "" {
		t.Errorf("picks per locality (-want +got):\n%s", diff)
	}
}

// TestSlowStartStamp: a host gets its healthy-since time when it first
// becomes healthy and when active health checking turns it healthy again;
// leaving EDS unhealthiness does not restart it (as Envoy's lastHcPassTime).
func TestSlowStartStamp(t *testing.T) {
	clk := newClock()
	m, _ := newTestManager(t, WithClock(clk.now))
	if err := m.Apply(context.Background(), parseClusters(t, staticCluster("a", "10.0.0.1")), prefix); err != nil {
		t.Fatal(err)
	}
	c := m.Cluster("a")
	h := c.HostSet().Hosts[0]
	since := func() time.Time {
		t.Helper()
		s, ok := h.HealthySince()
		if !ok {
			t.Fatal("no healthy-since time")
		}
		return s
	}
	start := since()
	ms := updaterFor("a").(clustertype.MembershipSetter)

	clk.advance(time.Minute)
	ms.SetHosts([]clustertype.HostSpec{{Addr: hostAP("10.0.0.1:8080"), Weight: 1, Unhealthy: true}})
	if _, ok := h.HealthySince(); ok {
		t.Error("an unhealthy host reports a healthy-since time")
	}
	ms.SetHosts([]clustertype.HostSpec{{Addr: hostAP("10.0.0.1:8080"), Weight: 1}})
	if got := since(); !got.Equal(start) {
		t.Errorf("after EDS health returned: since %v, want unchanged %v", got, start)
	}

	clk.advance(time.Minute)
	(*hcTarget)(h).SetActiveHealth(healthcheck.FailedActiveHC)
	c.rebuildHostSet()
	(*hcTarget)(h).SetActiveHealth(0)
	c.rebuildHostSet()
	if got, want := since(), clk.now(); !got.Equal(want) {
		t.Errorf("after active HC passed again: since %v, want %v", got, want)
	}
}

// BenchmarkPickPriorities: two priorities with P0 half healthy, so each
// pick chooses a priority (70/30).
func BenchmarkPickPriorities(b *testing.B) {
	benchPick(b, "", append(prioSpecs(0, 10, 5, clustertype.Locality{}, 0), prioSpecs(1, 10, 0, clustertype.Locality{}, 0)...))
}

// BenchmarkPickLocalities: one priority, three weighted localities.
func BenchmarkPickLocalities(b *testing.B) {
	var specs []clustertype.HostSpec
	for i := range 3 {
		specs = append(specs, prioSpecs(0, 10, 0, clustertype.Locality{Zone: fmt.Sprint(i)}, uint32(i+1))...)
	}
	benchPick(b, "  common_lb_config: {locality_weighted_lb_config: {}}\n", specs)
}

func benchPick(b *testing.B, extra string, specs []clustertype.HostSpec) {
	st := stats.NewStore()
	m := NewManager(st)
	defer m.Close()
	t := &testing.T{}
	if err := m.Apply(context.Background(), parseClusters(t, staticCluster("a", "10.9.9.9")+extra), prefix); err != nil {
		b.Fatal(err)
	}
	updaterFor("a").(clustertype.MembershipSetter).SetHosts(specs)
	c := m.Cluster("a")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Pick(nil)
		}
	})
}

// TestPickPrioritiesDoesNotAllocate: choosing a priority and a locality
// stays allocation-free.
func TestPickPrioritiesDoesNotAllocate(t *testing.T) {
	m, _ := newTestManager(t)
	cfg := staticCluster("a", "10.9.9.9") + "  common_lb_config: {locality_weighted_lb_config: {}}\n"
	if err := m.Apply(context.Background(), parseClusters(t, cfg), prefix); err != nil {
		t.Fatal(err)
	}
	specs := append(prioSpecs(0, 4, 2, clustertype.Locality{Zone: "x"}, 1), prioSpecs(1, 4, 0, clustertype.Locality{Zone: "y"}, 2)...)
	updaterFor("a").(clustertype.MembershipSetter).SetHosts(specs)
	c := m.Cluster("a")
	if a := testing.AllocsPerRun(1000, func() { c.Pick(nil) }); a != 0 {
		t.Errorf("Pick allocates %v times", a)
	}
}

// TestAdminPriorityLocality: admin /clusters (text and JSON) shows each
// host's priority and locality.
func TestAdminPriorityLocality(t *testing.T) {
	m, _ := newTestManager(t)
	if err := m.Apply(context.Background(), parseClusters(t, staticCluster("a", "10.9.9.9")), prefix); err != nil {
		t.Fatal(err)
	}
	loc := clustertype.Locality{Region: "r", Zone: "z", SubZone: "s"}
	updaterFor("a").(clustertype.MembershipSetter).SetHosts(prioSpecs(2, 1, 0, loc, 1))
	var b strings.Builder
	if err := m.WriteClusters(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"a::10.2.1.1:8080::priority::2\n", "a::10.2.1.1:8080::region::r\n", "a::10.2.1.1:8080::zone::z\n", "a::10.2.1.1:8080::sub_zone::s\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("/clusters lacks %q:\n%s", want, b.String())
		}
	}
	hs := m.ClustersProto().GetClusterStatuses()[0].GetHostStatuses()[0]
	if hs.GetPriority() != 2 || hs.GetLocality().GetRegion() != "r" || hs.GetLocality().GetZone() != "z" || hs.GetLocality().GetSubZone() != "s" {
		t.Errorf("/clusters?format=json host: priority %d, locality %v; want 2 and r/z/s", hs.GetPriority(), hs.GetLocality())
	}
}
