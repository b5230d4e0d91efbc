package leastrequest

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/common/v3"
	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// host is a fake lbpolicy.Host whose active requests a test sets.
type host struct {
	w      uint32
	active atomic.Int64
}

func (h *host) Weight() uint32        { return h.w }
func (h *host) ActiveRequests() int64 { return h.active.Load() }

// hostsWith makes hosts with the given weights and active requests.
func hostsWith(weights []uint32, active []int64) []lbpolicy.Host {
	out := make([]lbpolicy.Host, len(weights))
	for i, w := range weights {
		h := &host{w: w}
		if i < len(active) {
			h.active.Store(active[i])
		}
		out[i] = h
	}
	return out
}

func bias(v float64) *corev3.RuntimeDouble {
	return &corev3.RuntimeDouble{DefaultValue: v, RuntimeKey: "lb.bias"}
}

func shares(p lbpolicy.Picker, n, picks int) []float64 {
	counts := make([]int, n)
	for range picks {
		counts[p.Pick(nil)]++
	}
	out := make([]float64, n)
	for i, c := range counts {
		out[i] = float64(c) / float64(picks)
	}
	return out
}

func TestShares(t *testing.T) {
	tests := []struct {
		name    string
		cfg     *leastrequestv3.LeastRequest
		weights []uint32
		active  []int64
		want    []float64
		tol     float64
	}{
		// Two choices over two hosts: the busy host wins only when both
		// samples are it, 1/4 of the time.
		{name: "p2c prefers idle", cfg: &leastrequestv3.LeastRequest{}, weights: []uint32{1, 1}, active: []int64{10, 0}, want: []float64{0.25, 0.75}, tol: 0.01},
		// Three choices: the busy host needs all three samples, 1/8.
		{name: "choice_count 3", cfg: &leastrequestv3.LeastRequest{ChoiceCount: wrapperspb.UInt32(3)}, weights: []uint32{1, 1}, active: []int64{10, 0}, want: []float64{0.125, 0.875}, tol: 0.01},
		// No active requests anywhere: uniform.
		{name: "p2c idle cluster", cfg: &leastrequestv3.LeastRequest{}, weights: []uint32{2, 2, 2, 2}, want: []float64{0.25, 0.25, 0.25, 0.25}, tol: 0.01},
		// FULL_SCAN always finds the least loaded host, ties spread evenly.
		{name: "full scan", cfg: &leastrequestv3.LeastRequest{SelectionMethod: leastrequestv3.LeastRequest_FULL_SCAN}, weights: []uint32{1, 1, 1}, active: []int64{0, 5, 0}, want: []float64{0.5, 0, 0.5}, tol: 0.01},
		// Different weights: EDF over weight/(active+1). Idle: the weights.
		{name: "weighted idle", cfg: &leastrequestv3.LeastRequest{}, weights: []uint32{3, 1}, want: []float64{0.75, 0.25}, tol: 0.001},
		// Host 0: 3/(2+1) = 1; host 1: 1/(0+1) = 1: even.
		{name: "weighted with load", cfg: &leastrequestv3.LeastRequest{}, weights: []uint32{3, 1}, active: []int64{2, 0}, want: []float64{0.5, 0.5}, tol: 0.001},
		// bias 2: 4/(1+1)^2 = 1 against 1/(0+1)^2 = 1.
		{name: "bias 2", cfg: &leastrequestv3.LeastRequest{ActiveRequestBias: bias(2)}, weights: []uint32{4, 1}, active: []int64{1, 0}, want: []float64{0.5, 0.5}, tol: 0.001},
		// bias 0: plain weighted round robin, active requests ignored.
		{name: "bias 0", cfg: &leastrequestv3.LeastRequest{ActiveRequestBias: bias(0)}, weights: []uint32{3, 1}, active: []int64{100, 0}, want: []float64{0.75, 0.25}, tol: 0.001},
		// An explicit bias forces EDF with equal weights (Envoy's
		// least_request_lb_active_request_bias_forces_weighted):
		// 1/(1+1) against 1/(0+1) is exactly 1:2.
		{name: "explicit bias forces weighted", cfg: &leastrequestv3.LeastRequest{ActiveRequestBias: bias(1)}, weights: []uint32{1, 1}, active: []int64{1, 0}, want: []float64{1.0 / 3, 2.0 / 3}, tol: 0.001},
		// bias 0.5: 4/sqrt(3+1) = 2 against 1.
		{name: "bias fractional", cfg: &leastrequestv3.LeastRequest{ActiveRequestBias: bias(0.5)}, weights: []uint32{4, 1}, active: []int64{3, 0}, want: []float64{2.0 / 3, 1.0 / 3}, tol: 0.001},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pol, err := Build(tc.cfg, lbpolicy.BuildContext{Seed: 11})
			if err != nil {
				t.Fatal(err)
			}
			p := pol.NewPicker(hostsWith(tc.weights, tc.active))
			got := shares(p, len(tc.weights), 60000)
			for i := range got {
				if math.Abs(got[i]-tc.want[i]) > tc.tol {
					t.Errorf("shares = %.4f, want %.4f ± %v", got, tc.want, tc.tol)
					break
				}
			}
		})
	}
}

func TestEDFSequence(t *testing.T) {
	// Envoy's EDF: deadlines start at 1/w (3 → 1/3, 1 → 1); each pick moves
	// the picked host's deadline by 1/w. Ties go to the lower index.
	pol, _ := Build(&leastrequestv3.LeastRequest{}, lbpolicy.BuildContext{})
	p := pol.NewPicker(hostsWith([]uint32{3, 1}, nil))
	want := []int{0, 0, 0, 1, 0, 0, 0, 1}
	for i, w := range want {
		if got := p.Pick(nil); got != w {
			t.Fatalf("pick %d = %d, want %d (sequence %v)", i, got, w, want)
		}
	}
}

func TestWeightFollowsLoad(t *testing.T) {
	// The weight is read at each pick: when host 0 becomes busy it is
	// picked less from then on.
	hs := hostsWith([]uint32{2, 1}, nil)
	pol, _ := Build(&leastrequestv3.LeastRequest{}, lbpolicy.BuildContext{})
	p := pol.NewPicker(hs)
	before := shares(p, 2, 3000)
	hs[0].(*host).active.Store(7) // 2/8 against 1/1
	after := shares(p, 2, 5000)
	if before[0] < 0.6 || after[0] > 0.25 {
		t.Errorf("host 0 share before %.3f (want ~2/3), after %.3f (want ~1/5)", before[0], after[0])
	}
}

func TestConcurrentPicks(t *testing.T) {
	for _, weights := range [][]uint32{{1, 1, 1}, {3, 1}} {
		pol, _ := Build(&leastrequestv3.LeastRequest{}, lbpolicy.BuildContext{Seed: 5})
		p := pol.NewPicker(hostsWith(weights, nil))
		var wg sync.WaitGroup
		var total atomic.Int64
		for range 8 {
			wg.Go(func() {
				for range 5000 {
					if i := p.Pick(nil); i < 0 || i >= len(weights) {
						t.Errorf("pick %d out of range", i)
						return
					}
					total.Add(1)
				}
			})
		}
		wg.Wait()
		if total.Load() != 40000 {
			t.Errorf("weights %v: %d picks, want 40000", weights, total.Load())
		}
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		cfg     *leastrequestv3.LeastRequest
		wantErr string
	}{
		{name: "empty", cfg: &leastrequestv3.LeastRequest{}},
		{name: "all supported", cfg: &leastrequestv3.LeastRequest{ChoiceCount: wrapperspb.UInt32(4), ActiveRequestBias: bias(1.5),
			SelectionMethod: leastrequestv3.LeastRequest_FULL_SCAN, EnableFullScan: wrapperspb.Bool(true)}},
		{name: "slow start aggression", cfg: &leastrequestv3.LeastRequest{SlowStartConfig: &commonv3.SlowStartConfig{
			SlowStartWindow: durationpb.New(time.Second), Aggression: &corev3.RuntimeDouble{DefaultValue: -1, RuntimeKey: "k"}}},
			wantErr: "p.slow_start_config.aggression.default_value: must be greater than 0.0, got -1"},
		{name: "zone aware", cfg: &leastrequestv3.LeastRequest{LocalityLbConfig: &commonv3.LocalityLbConfig{
			LocalityConfigSpecifier: &commonv3.LocalityLbConfig_ZoneAwareLbConfig_{ZoneAwareLbConfig: &commonv3.LocalityLbConfig_ZoneAwareLbConfig{}}}},
			wantErr: "p.locality_lb_config.zone_aware_lb_config: zone aware routing is not supported by herald yet"},
		{name: "negative bias", cfg: &leastrequestv3.LeastRequest{ActiveRequestBias: bias(-1)}, wantErr: "p.active_request_bias.default_value: must be greater than or equal to 0.0"},
		{name: "NaN bias", cfg: &leastrequestv3.LeastRequest{ActiveRequestBias: bias(math.NaN())}, wantErr: "p.active_request_bias.default_value"},
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
	e, ok := lbpolicy.Registry.ByTypeURL(registry.TypeURL(&leastrequestv3.LeastRequest{}))
	if !ok || e.Name != Name {
		t.Fatalf("least request not registered under its type URL: %v %v", e, ok)
	}
}

var pickCases = []struct {
	name    string
	cfg     *leastrequestv3.LeastRequest
	weights []uint32
}{
	{name: "p2c", cfg: &leastrequestv3.LeastRequest{}, weights: []uint32{1, 1, 1, 1, 1, 1, 1, 1}},
	{name: "full scan", cfg: &leastrequestv3.LeastRequest{SelectionMethod: leastrequestv3.LeastRequest_FULL_SCAN}, weights: []uint32{1, 1, 1, 1, 1, 1, 1, 1}},
	{name: "weighted", cfg: &leastrequestv3.LeastRequest{}, weights: []uint32{1, 2, 3, 4, 5, 6, 7, 8}},
	{name: "weighted bias", cfg: &leastrequestv3.LeastRequest{ActiveRequestBias: bias(1.5)}, weights: []uint32{1, 2, 3, 4, 5, 6, 7, 8}},
}

func TestPickDoesNotAllocate(t *testing.T) {
	for _, tc := range pickCases {
		pol, _ := Build(tc.cfg, lbpolicy.BuildContext{})
		p := pol.NewPicker(hostsWith(tc.weights, []int64{3, 1, 4, 1, 5, 9, 2, 6}))
		if n := testing.AllocsPerRun(100, func() { p.Pick(nil) }); n != 0 {
			t.Errorf("%s: Pick allocates %v times", tc.name, n)
		}
	}
}

func BenchmarkPick(b *testing.B) {
	for _, tc := range pickCases {
		b.Run(tc.name, func(b *testing.B) {
			pol, _ := Build(tc.cfg, lbpolicy.BuildContext{})
			p := pol.NewPicker(hostsWith(tc.weights, []int64{3, 1, 4, 1, 5, 9, 2, 6}))
			ctx := &lbpolicy.Context{}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p.Pick(ctx)
				}
			})
		})
	}
}

// BenchmarkPickHosts is ns per pick with 10 and 1,000 hosts: power of two
// choices (equal weights) and the weighted EDF path, which scans every
// host.
func BenchmarkPickHosts(b *testing.B) {
	for _, n := range []int{10, 1000} {
		for _, weighted := range []bool{false, true} {
			w := make([]uint32, n)
			active := make([]int64, n)
			for i := range w {
				w[i] = 1
				if weighted {
					w[i] = uint32(i%7 + 1)
				}
				active[i] = int64(i % 5)
			}
			b.Run(fmt.Sprintf("hosts=%d/weighted=%v", n, weighted), func(b *testing.B) {
				pol, _ := Build(&leastrequestv3.LeastRequest{}, lbpolicy.BuildContext{})
				p := pol.NewPicker(hostsWith(w, active))
				ctx := &lbpolicy.Context{}
				b.ReportAllocs()
				for b.Loop() {
					p.Pick(ctx)
				}
			})
		}
	}
}
