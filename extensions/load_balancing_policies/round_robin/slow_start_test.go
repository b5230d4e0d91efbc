package roundrobin

import (
	"fmt"
	"math"
	"testing"
	"time"

	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/common/v3"
	roundrobinv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// ssHost is a host with a healthy-since time for slow start.
type ssHost struct {
	w     uint32
	since time.Time
}

func (h *ssHost) Weight() uint32                  { return h.w }
func (h *ssHost) ActiveRequests() int64           { return 0 }
func (h *ssHost) HealthySince() (time.Time, bool) { return h.since, true }

// TestSlowStart: a host that just became healthy gets its weight scaled
// by Envoy's slow start factor, and its share grows as its window passes
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/slow_start).
func TestSlowStart(t *testing.T) {
	t0 := time.Unix(10000, 0)
	now := t0
	cfg := &roundrobinv3.RoundRobin{SlowStartConfig: &commonv3.SlowStartConfig{SlowStartWindow: durationpb.New(10 * time.Second)}}
	p, err := Build(cfg, lbpolicy.BuildContext{Path: "p", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	// Host 0 has been healthy for an hour; host 1 joins at t0.
	hs := []lbpolicy.Host{&ssHost{w: 1, since: t0.Add(-time.Hour)}, &ssHost{w: 1, since: t0}}
	tests := []struct {
		name     string
		at       time.Duration
		wantNew  float64 // host 1's share
		tolerant float64
	}{
		// Factor max(0.1, ~0) = 0.1: 0.1/1.1 of the picks.
		{name: "just joined", at: 0, wantNew: 0.1 / 1.1},
		// Factor 0.5: 0.5/1.5.
		{name: "half way", at: 5 * time.Second, wantNew: 0.5 / 1.5},
		// Out of the window: plain round robin.
		{name: "window over", at: 20 * time.Second, wantNew: 0.5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now = t0.Add(tc.at)
			pk := p.NewPicker(hs)
			const n = 11000
			got := 0
			for range n {
				if pk.Pick(nil) == 1 {
					got++
				}
			}
			if share := float64(got) / n; math.Abs(share-tc.wantNew) > 0.005 {
				t.Errorf("new host share = %.4f, want %.4f", share, tc.wantNew)
			}
		})
	}
	// A picker made in the window reads the clock on every pick: once the
	// window has passed it hands over to plain round robin.
	now = t0
	pk := p.NewPicker(hs)
	now = t0.Add(time.Minute)
	got := 0
	for range 1000 {
		if pk.Pick(nil) == 1 {
			got++
		}
	}
	if got != 500 {
		t.Errorf("after the window, the new host got %d of 1000 picks, want 500", got)
	}
	if a := testing.AllocsPerRun(100, func() { pk.Pick(nil) }); a != 0 {
		t.Errorf("slow start Pick allocates %v times", a)
	}
}

// BenchmarkPickSlowStart is ns per pick while half of the hosts are in
// their slow start window (the live-weight EDF), 10 and 1,000 hosts.
func BenchmarkPickSlowStart(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			t0 := time.Now()
			cfg := &roundrobinv3.RoundRobin{SlowStartConfig: &commonv3.SlowStartConfig{SlowStartWindow: durationpb.New(time.Hour)}}
			pol, err := Build(cfg, lbpolicy.BuildContext{})
			if err != nil {
				b.Fatal(err)
			}
			hs := make([]lbpolicy.Host, n)
			for i := range hs {
				since := t0.Add(-2 * time.Hour)
				if i%2 == 0 {
					since = t0
				}
				hs[i] = &ssHost{w: 1, since: since}
			}
			p := pol.NewPicker(hs)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p.Pick(nil)
				}
			})
		})
	}
}
