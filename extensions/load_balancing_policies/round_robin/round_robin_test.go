package roundrobin

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/common/v3"
	roundrobinv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

type host struct{ w uint32 }

func (h host) Weight() uint32        { return h.w }
func (h host) ActiveRequests() int64 { return 0 }

func hosts(weights ...uint32) []lbpolicy.Host {
	out := make([]lbpolicy.Host, len(weights))
	for i, w := range weights {
		out[i] = host{w}
	}
	return out
}

func picks(p lbpolicy.Picker, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = p.Pick(nil)
	}
	return out
}

func TestPickSequence(t *testing.T) {
	tests := []struct {
		name    string
		weights []uint32
		seed    uint64
		want    []int
	}{
		{name: "equal weights rotate", weights: []uint32{1, 1}, want: []int{0, 1, 0, 1, 0, 1}},
		{name: "equal weights start at the seed", weights: []uint32{1, 1, 1}, seed: 4, want: []int{1, 2, 0, 1, 2, 0}},
		{name: "single host", weights: []uint32{7}, want: []int{0, 0, 0}},
		// EDF: A's deadlines 1/3, 2/3, 1; B's 1. At the tie at 1, B was
		// inserted first, so B goes before A's third pick.
		{name: "weights 3 and 1", weights: []uint32{3, 1}, want: []int{0, 0, 1, 0, 0, 0, 1, 0}},
		// Scaling all weights changes nothing (GCD reduction is exact).
		{name: "weights 300 and 100", weights: []uint32{300, 100}, want: []int{0, 0, 1, 0, 0, 0, 1, 0}},
		{name: "weights 1 2 3", weights: []uint32{1, 2, 3}, want: []int{2, 1, 2, 0, 1, 2, 2, 1, 2, 0, 1, 2}},
		// seed % total weight picks are skipped, like Envoy's createWithPicks.
		{name: "weighted with seed", weights: []uint32{3, 1}, seed: 6, want: []int{1, 0, 0, 0, 1, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pol, err := Build(&roundrobinv3.RoundRobin{}, lbpolicy.BuildContext{Seed: tc.seed})
			if err != nil {
				t.Fatal(err)
			}
			got := picks(pol.NewPicker(hosts(tc.weights...)), len(tc.want))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("picks (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDistribution(t *testing.T) {
	tests := []struct {
		name    string
		weights []uint32
		rounds  int
	}{
		{name: "table", weights: []uint32{5, 3, 2}, rounds: 100},
		// Total weight above maxTable uses the live schedule.
		{name: "live schedule", weights: []uint32{maxTable, 3, 1}, rounds: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pol, _ := Build(&roundrobinv3.RoundRobin{}, lbpolicy.BuildContext{})
			p := pol.NewPicker(hosts(tc.weights...))
			var total int
			for _, w := range tc.weights {
				total += int(w)
			}
			got := make([]int, len(tc.weights))
			for range total * tc.rounds {
				got[p.Pick(nil)]++
			}
			want := make([]int, len(tc.weights))
			for i, w := range tc.weights {
				want[i] = int(w) * tc.rounds
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("pick counts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConcurrentPicks(t *testing.T) {
	for _, weights := range [][]uint32{{1, 1, 1, 1}, {3, 1}} {
		pol, _ := Build(&roundrobinv3.RoundRobin{}, lbpolicy.BuildContext{Seed: 12345})
		p := pol.NewPicker(hosts(weights...))
		const goroutines, per = 8, 1000
		var total int
		for _, w := range weights {
			total += int(w)
		}
		var mu sync.Mutex
		got := make([]int, len(weights))
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				local := make([]int, len(weights))
				for range per * total {
					local[p.Pick(nil)]++
				}
				mu.Lock()
				for i, n := range local {
					got[i] += n
				}
				mu.Unlock()
			})
		}
		wg.Wait()
		for i, w := range weights {
			if want := int(w) * per * goroutines; got[i] != want {
				t.Errorf("weights %v: host %d picked %d times, want %d", weights, i, got[i], want)
			}
		}
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		cfg     *roundrobinv3.RoundRobin
		wantErr string
	}{
		{name: "empty", cfg: &roundrobinv3.RoundRobin{}},
		{name: "slow start aggression", cfg: &roundrobinv3.RoundRobin{SlowStartConfig: &commonv3.SlowStartConfig{
			SlowStartWindow: durationpb.New(time.Second), Aggression: &corev3.RuntimeDouble{DefaultValue: 0, RuntimeKey: "k"}}},
			wantErr: "p.slow_start_config.aggression.default_value: must be greater than 0.0, got 0"},
		{name: "zone aware", cfg: &roundrobinv3.RoundRobin{LocalityLbConfig: &commonv3.LocalityLbConfig{
			LocalityConfigSpecifier: &commonv3.LocalityLbConfig_ZoneAwareLbConfig_{ZoneAwareLbConfig: &commonv3.LocalityLbConfig_ZoneAwareLbConfig{}}}},
			wantErr: "p.locality_lb_config.zone_aware_lb_config: zone aware routing is not supported by herald yet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(tc.cfg, lbpolicy.BuildContext{Path: "p"})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Build: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Build error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestRegistered(t *testing.T) {
	e, ok := lbpolicy.Registry.ByTypeURL(registry.TypeURL(&roundrobinv3.RoundRobin{}))
	if !ok || e.Name != Name {
		t.Fatalf("round robin not registered under its type URL: %v %v", e, ok)
	}
	if _, ok := lbpolicy.Registry.ByName(Name); !ok {
		t.Fatalf("round robin not registered under %s", Name)
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	for _, weights := range [][]uint32{{1, 1}, {3, 1}} {
		pol, _ := Build(&roundrobinv3.RoundRobin{}, lbpolicy.BuildContext{})
		p := pol.NewPicker(hosts(weights...))
		if n := testing.AllocsPerRun(100, func() { p.Pick(nil) }); n != 0 {
			t.Errorf("weights %v: Pick allocates %v times", weights, n)
		}
	}
}

func BenchmarkPick(b *testing.B) {
	for _, bc := range []struct {
		name    string
		weights []uint32
	}{
		{name: "equal", weights: []uint32{1, 1, 1, 1}},
		{name: "weighted", weights: []uint32{3, 1, 2, 5}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			pol, _ := Build(&roundrobinv3.RoundRobin{}, lbpolicy.BuildContext{})
			p := pol.NewPicker(hosts(bc.weights...))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p.Pick(nil)
				}
			})
		})
	}
}

// BenchmarkPickHosts is ns per pick with 10 and 1,000 hosts, equal and
// mixed weights (issue #4: a benchmark per load balancer at both sizes).
func BenchmarkPickHosts(b *testing.B) {
	for _, n := range []int{10, 1000} {
		for _, weighted := range []bool{false, true} {
			w := make([]uint32, n)
			for i := range w {
				w[i] = 1
				if weighted {
					w[i] = uint32(i%7 + 1)
				}
			}
			b.Run(fmt.Sprintf("hosts=%d/weighted=%v", n, weighted), func(b *testing.B) {
				pol, _ := Build(&roundrobinv3.RoundRobin{}, lbpolicy.BuildContext{})
				p := pol.NewPicker(hosts(w...))
				b.ReportAllocs()
				for b.Loop() {
					p.Pick(nil)
				}
			})
		}
	}
}
