package integration

import (
	"fmt"
	"io"
	nethttp "net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// hcBackend answers /healthz with the status it holds and anything else
// with its name.
func hcBackend(t *testing.T, name string) (string, *atomic.Int32) {
	var status atomic.Int32
	status.Store(200)
	addr := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.URL.Path == "/healthz" {
			if r.Header.Get("user-agent") != "Envoy/HC" {
				w.WriteHeader(400)
				return
			}
			w.WriteHeader(int(status.Load()))
			return
		}
		io.WriteString(w, name)
	}))
	return addr, &status
}

// TestActiveHealthCheckRotation: a backend failing its http_health_check
// leaves the rotation, shows /failed_active_hc in /clusters, and comes back
// when it passes again
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/health_checking).
func TestActiveHealthCheckRotation(t *testing.T) {
	t.Parallel()
	a, _ := hcBackend(t, "a")
	b, bStatus := hcBackend(t, "b")
	cluster := staticCluster("backend_service", a, b) + `    health_checks:
    - timeout: 1s
      interval: 0.05s
      no_traffic_interval: 0.05s
      unhealthy_threshold: 2
      healthy_threshold: 1
      http_health_check: { path: /healthz }
`
	cfg := adminBlock + "static_resources:\n  listeners:\n" + hcmListener("listener_0", `            - name: backend
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: backend_service }`, "") +
		"  clusters:\n" + cluster
	h := testutil.Start(t, cfg)
	url := "http://" + h.ListenerAddr("listener_0") + "/"
	c := newClient()
	served := func(n int) map[string]int {
		out := map[string]int{}
		for range n {
			code, _, body := get(t, c, url, "")
			if code != 200 {
				out[fmt.Sprint(code)]++
				continue
			}
			out[body]++
		}
		return out
	}
	flags := func() string {
		_, text := h.Admin("GET", "/clusters")
		var lines []string
		for _, l := range strings.Split(text, "\n") {
			if strings.Contains(l, "::health_flags::") {
				lines = append(lines, l)
			}
		}
		return strings.Join(lines, "\n")
	}

	testutil.Eventually(t, 10*time.Second, func() error {
		if got := served(6); got["a"] == 0 || got["b"] == 0 {
			return fmt.Errorf("served %v, want both backends", got)
		}
		return nil
	})

	// b fails its health check (503 is not retriable: out at once).
	bStatus.Store(503)
	testutil.Eventually(t, 10*time.Second, func() error {
		if f := flags(); !strings.Contains(f, "backend_service::"+b+"::health_flags::/failed_active_hc") {
			return fmt.Errorf("/clusters flags:\n%s", f)
		}
		return nil
	})
	if got := served(10); got["a"] != 10 {
		t.Errorf("with b failing, served %v, want only a", got)
	}
	if f := flags(); !strings.Contains(f, "backend_service::"+a+"::health_flags::healthy") {
		t.Errorf("/clusters flags:\n%s", f)
	}
	if got := h.Stat("cluster.backend_service.membership_healthy"); got != 1 {
		t.Errorf("membership_healthy = %d, want 1", got)
	}
	if got := h.Stat("cluster.backend_service.health_check.failure"); got < 1 {
		t.Errorf("health_check.failure = %d, want >= 1", got)
	}

	// b passes again and comes back.
	bStatus.Store(200)
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := served(6); got["b"] == 0 {
			return fmt.Errorf("served %v, want b back", got)
		}
		return nil
	})
	if got := h.Stat("cluster.backend_service.health_check.healthy"); got != 2 {
		t.Errorf("health_check.healthy = %d, want 2", got)
	}
}
