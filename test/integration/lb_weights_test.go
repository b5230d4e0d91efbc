package integration

import (
	"fmt"
	"net"
	"testing"

	"github.com/herald-proxy/herald/internal/testutil"
)

// weightedCluster is a STATIC cluster whose endpoints carry
// load_balancing_weight, with lb_policy.
func weightedCluster(name, policy string, addrs []string, weights []int) string {
	eps := ""
	for i, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		eps += fmt.Sprintf("        - endpoint: { address: { socket_address: { address: %q, port_value: %s } } }\n          load_balancing_weight: %d\n", host, port, weights[i])
	}
	return fmt.Sprintf(`  - name: %s
    type: STATIC
    connect_timeout: 1s
    lb_policy: %s
    load_assignment:
      cluster_name: %s
      endpoints:
      - lb_endpoints:
%s`, name, policy, name, eps)
}

// TestWeightedLoadBalancers: the traffic distribution of ROUND_ROBIN and
// LEAST_REQUEST over hosts weighted 1:3, and of RANDOM over equal hosts,
// through the binary
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/load_balancers).
// Requests are sequential, so least request sees no active requests and
// picks by weight, as Envoy's weighted least request does then. Bounds:
// round robin's EDF order is exact over whole cycles (±2 for the seeded
// starting point); random and least request (random choices) get ±60 of
// 400, more than 5 standard deviations.
func TestWeightedLoadBalancers(t *testing.T) {
	t.Parallel()
	a, b := nameBackend(t, "a"), nameBackend(t, "b")
	tests := []struct {
		policy  string
		weights []int
		wantB   int // requests to b of 400
		tol     int
	}{
		{policy: "ROUND_ROBIN", weights: []int{1, 3}, wantB: 300, tol: 2},
		{policy: "LEAST_REQUEST", weights: []int{1, 3}, wantB: 300, tol: 60},
		{policy: "RANDOM", weights: []int{1, 1}, wantB: 200, tol: 60},
	}
	for _, tc := range tests {
		t.Run(tc.policy, func(t *testing.T) {
			t.Parallel()
			cfg := adminBlock + "static_resources:\n  listeners:\n" + hcmListener("l", catchAllVhost("w"), "") +
				"  clusters:\n" + weightedCluster("w", tc.policy, []string{a, b}, tc.weights)
			h := testutil.Start(t, cfg)
			c := newClient()
			counts := map[string]int{}
			for i := 0; i < 400; i++ {
				code, _, body := get(t, c, "http://"+h.ListenerAddr("l")+"/", "")
				if code != 200 {
					t.Fatalf("request %d: status %d", i, code)
				}
				counts[body]++
			}
			if d := counts["b"] - tc.wantB; d < -tc.tol || d > tc.tol || counts["a"]+counts["b"] != 400 {
				t.Errorf("%s: a=%d b=%d, want b=%d±%d", tc.policy, counts["a"], counts["b"], tc.wantB, tc.tol)
			}
			if got := h.Stat("cluster.w.upstream_rq_total"); got != 400 {
				t.Errorf("cluster.w.upstream_rq_total = %d, want 400", got)
			}
		})
	}
}
