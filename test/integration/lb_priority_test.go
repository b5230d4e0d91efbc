package integration

import (
	"fmt"
	"math"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// lbEndpoints renders lb_endpoints entries for addrs.
func lbEndpoints(addrs ...string) string {
	var b strings.Builder
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		fmt.Fprintf(&b, "        - endpoint: { address: { socket_address: { address: %q, port_value: %s } } }\n", host, port)
	}
	return b.String()
}

// TestPriorityFailover: a STATIC cluster with two priorities, actively
// health checked. All traffic goes to P0 while it is healthy; with half of
// P0 failing its checks, P0's health is 1.4 × 50% = 70% and the rest
// spills to P1 (70/30); with P0 all down everything goes to P1; when P0
// recovers, traffic returns
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/priority).
// Admin /clusters shows each host's priority and locality.
func TestPriorityFailover(t *testing.T) {
	t.Parallel()
	// hcBackend (healthcheck_test.go): /healthz answers the status held.
	a1, a1Status := hcBackend(t, "a1")
	a2, a2Status := hcBackend(t, "a2")
	b1, _ := hcBackend(t, "b1")
	b2, _ := hcBackend(t, "b2")
	setDown := func(s *atomic.Int32, down bool) {
		if down {
			s.Store(503)
		} else {
			s.Store(200)
		}
	}
	cluster := fmt.Sprintf(`  - name: prio
    type: STATIC
    connect_timeout: 1s
    health_checks:
    - timeout: 1s
      interval: 0.1s
      no_traffic_interval: 0.1s
      unhealthy_threshold: 1
      healthy_threshold: 1
      http_health_check: { path: /healthz }
    load_assignment:
      cluster_name: prio
      endpoints:
      - locality: { region: r1, zone: z1 }
        lb_endpoints:
%s      - priority: 1
        locality: { region: r2, zone: z2, sub_zone: s2 }
        lb_endpoints:
%s`, lbEndpoints(a1, a2), lbEndpoints(b1, b2))
	cfg := adminBlock + "static_resources:\n  listeners:\n" + hcmListener("listener_0", `            - name: backend
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: prio }`, "") + "  clusters:\n" + cluster
	h := testutil.Start(t, cfg)
	url := "http://" + h.ListenerAddr("listener_0") + "/"
	c := newClient()

	_, text := h.Admin("GET", "/clusters")
	for _, want := range []string{
		"prio::" + a1 + "::priority::0", "prio::" + a1 + "::region::r1", "prio::" + a1 + "::zone::z1",
		"prio::" + b2 + "::priority::1", "prio::" + b2 + "::zone::z2", "prio::" + b2 + "::sub_zone::s2",
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("/clusters lacks %q:\n%s", want, text)
		}
	}

	// waitHealth waits until /clusters shows the P0 hosts' health.
	waitHealth := func(a1Down, a2Down bool) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, func() error {
			_, text := h.Admin("GET", "/clusters")
			for _, hs := range []struct {
				addr string
				down bool
			}{{a1, a1Down}, {a2, a2Down}, {b1, false}, {b2, false}} {
				want := "prio::" + hs.addr + "::health_flags::healthy\n"
				if hs.down {
					want = "prio::" + hs.addr + "::health_flags::/failed_active_hc\n"
				}
				if !strings.Contains(text, want) {
					return fmt.Errorf("/clusters lacks %q", strings.TrimSpace(want))
				}
			}
			return nil
		})
	}
	// shareP0 sends n requests and returns the percentage served by P0.
	shareP0 := func(n int) float64 {
		t.Helper()
		p0 := 0
		for range n {
			code, _, body := get(t, c, url, "")
			if code != 200 {
				t.Fatalf("status %d %q", code, body)
			}
			if strings.HasPrefix(body, "a") {
				p0++
			}
		}
		return 100 * float64(p0) / float64(n)
	}

	steps := []struct {
		name           string
		a1Down, a2Down bool
		wantP0         float64
		tolerance      float64
	}{
		{name: "all healthy", wantP0: 100},
		// P0 health 140 × 1/2 = 70: 70% to P0, 30% to P1. The priority is
		// drawn per request: with 1000 requests σ ≈ 1.45 points, so 8
		// points is over 5σ.
		{name: "half of P0 down", a1Down: true, wantP0: 70, tolerance: 8},
		{name: "P0 down", a1Down: true, a2Down: true, wantP0: 0},
		{name: "P0 back", wantP0: 100},
	}
	for _, s := range steps {
		setDown(a1Status, s.a1Down)
		setDown(a2Status, s.a2Down)
		waitHealth(s.a1Down, s.a2Down)
		if got := shareP0(1000); math.Abs(got-s.wantP0) > s.tolerance {
			t.Errorf("%s: P0 served %.1f%% of requests, want %.0f%% ± %.0f", s.name, got, s.wantP0, s.tolerance)
		}
	}
	if got := h.Stat("cluster.prio.membership_total"); got != 4 {
		t.Errorf("membership_total = %d, want 4 (all priorities)", got)
	}
}

// TestLocalityWeighted: with locality_weighted_lb_config, localities get
// traffic by their weights (1:3), round robin within each
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/locality_weight).
func TestLocalityWeighted(t *testing.T) {
	t.Parallel()
	x, y := nameBackend(t, "x"), nameBackend(t, "y")
	cluster := fmt.Sprintf(`  - name: loc
    type: STATIC
    connect_timeout: 1s
    common_lb_config: { locality_weighted_lb_config: {} }
    load_assignment:
      cluster_name: loc
      endpoints:
      - locality: { zone: x }
        load_balancing_weight: 1
        lb_endpoints:
%s      - locality: { zone: y }
        load_balancing_weight: 3
        lb_endpoints:
%s`, lbEndpoints(x), lbEndpoints(y))
	cfg := adminBlock + "static_resources:\n  listeners:\n" + hcmListener("listener_0", `            - name: backend
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: loc }`, "") + "  clusters:\n" + cluster
	h := testutil.Start(t, cfg)
	url := "http://" + h.ListenerAddr("listener_0") + "/"
	c := newClient()
	got := map[string]int{}
	for range 400 {
		_, _, body := get(t, c, url, "")
		got[body]++
	}
	// The locality schedule is a deterministic weighted round robin: 100
	// and 300 exactly (a pick or two of slack for the start offset).
	if got["x"] < 98 || got["x"] > 102 || got["x"]+got["y"] != 400 {
		t.Errorf("served %v, want x 100 and y 300 of 400", got)
	}
}
