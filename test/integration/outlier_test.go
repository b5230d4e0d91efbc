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

// statusNamedBackend answers every request with the status it holds and
// its name as the body.
func statusNamedBackend(t *testing.T, name string) (string, *atomic.Int32) {
	var status atomic.Int32
	status.Store(200)
	addr := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, _ *nethttp.Request) {
		w.WriteHeader(int(status.Load()))
		io.WriteString(w, name)
	}))
	return addr, &status
}

// TestOutlierConsecutive5xx: of two backends, the one answering 503 is
// ejected after three 5xx in a row, all traffic goes to the other, admin
// /clusters shows /failed_outlier_check and the outlier_detection stats
// count it; once base_ejection_time has passed it takes traffic again
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/outlier).
func TestOutlierConsecutive5xx(t *testing.T) {
	t.Parallel()
	good, _ := statusNamedBackend(t, "good")
	bad, badStatus := statusNamedBackend(t, "bad")
	badStatus.Store(503)
	// max_ejection_percent defaults to 10%, which never allows one of two
	// hosts (50%) out; Envoy needs it raised the same way.
	cluster := staticCluster("backend_service", good, bad) + `    outlier_detection:
      consecutive_5xx: 3
      interval: 0.1s
      base_ejection_time: 3s
      max_ejection_percent: 50
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
			out[fmt.Sprintf("%d %s", code, body)]++
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

	// Round robin sends every other request to bad: its third 503 in a row
	// ejects it, and then only good answers. (Should the host return
	// before this check runs, its next three 503s eject it again, for
	// twice as long.)
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := served(10); got["200 good"] != 10 {
			return fmt.Errorf("served %v, want only good", got)
		}
		return nil
	})
	if f := flags(); !strings.Contains(f, "backend_service::"+bad+"::health_flags::/failed_outlier_check") ||
		!strings.Contains(f, "backend_service::"+good+"::health_flags::healthy") {
		t.Errorf("/clusters flags:\n%s", f)
	}
	if got := h.Stat("cluster.backend_service.outlier_detection.ejections_enforced_consecutive_5xx"); got < 1 {
		t.Errorf("outlier_detection.ejections_enforced_consecutive_5xx = %d, want >= 1", got)
	}
	if got := h.Stat("cluster.backend_service.outlier_detection.ejections_active"); got != 1 {
		t.Errorf("outlier_detection.ejections_active = %d, want 1", got)
	}
	if got := h.Stat("cluster.backend_service.membership_healthy"); got != 1 {
		t.Errorf("membership_healthy = %d, want 1", got)
	}

	// bad recovers; after its ejection time it takes traffic again.
	badStatus.Store(200)
	testutil.Eventually(t, 15*time.Second, func() error {
		if got := served(4); got["200 bad"] == 0 {
			return fmt.Errorf("served %v, want bad back", got)
		}
		return nil
	})
	if f := flags(); !strings.Contains(f, "backend_service::"+bad+"::health_flags::healthy") {
		t.Errorf("/clusters flags after return:\n%s", f)
	}
	if got := h.Stat("cluster.backend_service.outlier_detection.ejections_active"); got != 0 {
		t.Errorf("outlier_detection.ejections_active after return = %d, want 0", got)
	}
}
