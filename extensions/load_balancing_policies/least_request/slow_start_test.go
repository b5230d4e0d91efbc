package leastrequest

import (
	"math"
	"testing"
	"time"

	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/common/v3"
	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

type ssHost struct {
	host
	since time.Time
}

func (h *ssHost) HealthySince() (time.Time, bool) { return h.since, true }

// TestSlowStart: with equal weights and no active requests, a host in its
// slow start window is weighed by Envoy's factor in the EDF schedule
// (LeastRequestLoadBalancer::hostWeight × applySlowStartFactor); out of
// the window the unweighted pick is back.
func TestSlowStart(t *testing.T) {
	t0 := time.Unix(10000, 0)
	now := t0
	cfg := &leastrequestv3.LeastRequest{SlowStartConfig: &commonv3.SlowStartConfig{SlowStartWindow: durationpb.New(10 * time.Second)}}
	p, err := Build(cfg, lbpolicy.BuildContext{Path: "p", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	hs := []lbpolicy.Host{&ssHost{host: host{w: 1}, since: t0.Add(-time.Hour)}, &ssHost{host: host{w: 1}, since: t0}}
	tests := []struct {
		name    string
		at      time.Duration
		wantNew float64
		tol     float64
	}{
		{name: "just joined", at: 0, wantNew: 0.1 / 1.1, tol: 0.005},
		{name: "half way", at: 5 * time.Second, wantNew: 0.5 / 1.5, tol: 0.005},
		// Unweighted two-choice pick between two idle hosts: random, so a
		// wider tolerance (11000 picks: σ ≈ 0.5 points).
		{name: "window over", at: 20 * time.Second, wantNew: 0.5, tol: 0.03},
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
			if share := float64(got) / n; math.Abs(share-tc.wantNew) > tc.tol {
				t.Errorf("new host share = %.4f, want %.4f", share, tc.wantNew)
			}
		})
	}
}
