package random

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/common/v3"
	randomv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/random/v3"

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

func TestDistribution(t *testing.T) {
	tests := []struct {
		name    string
		weights []uint32
	}{
		{name: "equal", weights: []uint32{1, 1, 1, 1}},
		// Envoy's random load balancer ignores weights: shares stay equal.
		{name: "weights ignored", weights: []uint32{1, 10, 100}},
		{name: "single", weights: []uint32{5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pol, err := Build(&randomv3.Random{}, lbpolicy.BuildContext{Seed: 7})
			if err != nil {
				t.Fatal(err)
			}
			p := pol.NewPicker(hosts(tc.weights...))
			const picks = 120000
			got := make([]int, len(tc.weights))
			for range picks {
				got[p.Pick(&lbpolicy.Context{})]++
			}
			want := 1 / float64(len(tc.weights))
			for i, n := range got {
				if share := float64(n) / picks; math.Abs(share-want) > 0.01 {
					t.Errorf("host %d share = %.4f, want %.4f ± 0.01 (counts %v)", i, share, want, got)
				}
			}
		})
	}
}

func TestSeedDeterminesSequence(t *testing.T) {
	seq := func(seed uint64) []int {
		pol, _ := Build(&randomv3.Random{}, lbpolicy.BuildContext{Seed: seed})
		p := pol.NewPicker(hosts(1, 1, 1, 1, 1, 1, 1, 1))
		out := make([]int, 32)
		for i := range out {
			out[i] = p.Pick(nil)
		}
		return out
	}
	a, b, c := seq(1), seq(1), seq(2)
	if !equal(a, b) {
		t.Errorf("same seed gave %v and %v", a, b)
	}
	if equal(a, c) {
		t.Errorf("seeds 1 and 2 gave the same sequence %v", a)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestConcurrentPicks(t *testing.T) {
	pol, _ := Build(&randomv3.Random{}, lbpolicy.BuildContext{Seed: 3})
	p := pol.NewPicker(hosts(1, 1, 1))
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := make([]int, 3)
	for range 8 {
		wg.Go(func() {
			local := make([]int, 3)
			for range 10000 {
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
	for i, n := range got {
		if share := float64(n) / 80000; math.Abs(share-1.0/3) > 0.02 {
			t.Errorf("host %d share = %.4f, want 1/3 (counts %v)", i, share, got)
		}
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		cfg     *randomv3.Random
		wantErr string
	}{
		{name: "empty", cfg: &randomv3.Random{}},
		{name: "zone aware", cfg: &randomv3.Random{LocalityLbConfig: &commonv3.LocalityLbConfig{
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
	e, ok := lbpolicy.Registry.ByTypeURL(registry.TypeURL(&randomv3.Random{}))
	if !ok || e.Name != Name {
		t.Fatalf("random not registered under its type URL: %v %v", e, ok)
	}
	if _, ok := lbpolicy.Registry.ByName(Name); !ok {
		t.Fatalf("random not registered under %s", Name)
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	pol, _ := Build(&randomv3.Random{}, lbpolicy.BuildContext{})
	p := pol.NewPicker(hosts(1, 2, 3))
	if n := testing.AllocsPerRun(100, func() { p.Pick(nil) }); n != 0 {
		t.Errorf("Pick allocates %v times", n)
	}
}

func BenchmarkPick(b *testing.B) {
	pol, _ := Build(&randomv3.Random{}, lbpolicy.BuildContext{})
	p := pol.NewPicker(hosts(1, 1, 1, 1))
	ctx := &lbpolicy.Context{}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Pick(ctx)
		}
	})
}

// BenchmarkPickHosts is ns per pick with 10 and 1,000 hosts.
func BenchmarkPickHosts(b *testing.B) {
	for _, n := range []int{10, 1000} {
		w := make([]uint32, n)
		for i := range w {
			w[i] = 1
		}
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			pol, _ := Build(&randomv3.Random{}, lbpolicy.BuildContext{})
			p := pol.NewPicker(hosts(w...))
			ctx := &lbpolicy.Context{}
			b.ReportAllocs()
			for b.Loop() {
				p.Pick(ctx)
			}
		})
	}
}
